"""Silero VAD (ONNX Runtime): a streaming model, so per-chunk latency is what matters."""

from __future__ import annotations

import pytest

PEAK_RSS_BUDGET_MB = 512
# One 512-sample chunk at 16 kHz is 32 ms of audio: a VAD slower than that falls behind.
REALTIME_CHUNK_MS = 32.0


@pytest.mark.edge(model="silero_vad")
def test_latency_and_memory(edge):
    result = edge.benchmark()
    assert result.latency_ms.samples >= result.protocol.min_iters
    assert 0 < result.latency_ms.median <= result.latency_ms.p90 <= result.latency_ms.p99
    assert result.latency_ms.p90 < REALTIME_CHUNK_MS, "the VAD cannot keep up with live audio"
    assert result.peak_rss_mb is not None and 0 < result.peak_rss_mb < PEAK_RSS_BUDGET_MB
