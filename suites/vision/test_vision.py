"""Vision models (MediaPipe, LiteRT): latency and memory on every selected device."""

from __future__ import annotations

import pytest

# The host-side budget a phone-class model must fit in: generous enough for a Raspberry Pi.
PEAK_RSS_BUDGET_MB = 1024


@pytest.mark.edge(model=["face_detection", "hand_landmark"])
def test_latency_and_memory(edge):
    result = edge.benchmark()
    assert result.latency_ms.samples >= result.protocol.min_iters
    assert 0 < result.latency_ms.median <= result.latency_ms.p90 <= result.latency_ms.p99
    assert result.peak_rss_mb is not None and 0 < result.peak_rss_mb < PEAK_RSS_BUDGET_MB
