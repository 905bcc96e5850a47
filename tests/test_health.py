"""Pre-use health checks and quarantine, on a real condition: a device whose workdir sits on a
16 MB tmpfs (less free disk than a run needs)."""

from __future__ import annotations

import os
import subprocess

import pytest

from harness import health
from harness.cli import main
from harness.config import parse_device
from harness.transport.local import LocalTransport

TEST = """
import pytest

@pytest.mark.edge(model="silero_vad", precisions=["fp32"])
def test_latency(edge):
    edge.benchmark()
"""


@pytest.fixture
def small_disk(tmp_path):
    if os.geteuid() != 0:
        pytest.skip("mounting a tmpfs needs root")
    folder = tmp_path / "small"
    folder.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=16m", "tmpfs", str(folder)], check=True)
    yield folder
    subprocess.run(["umount", str(folder)], check=False)


def test_check_reports_facts_and_problems(small_disk, tmp_path):
    transport = LocalTransport(parse_device("local", {"kind": "local"}, "test"))
    good = health.check(transport, str(tmp_path))
    assert good.ok and good.facts["free_kb"] > 200 * 1024 and "hottest_mc" in good.facts
    bad = health.check(transport, str(small_disk))
    assert not bad.ok and bad.problems == [f"only 16 MB free in {small_disk} (< 200 MB)"]


def test_unhealthy_device_is_skipped_then_quarantined_then_released(
    pytester, small_disk, monkeypatch, capsys
):
    monkeypatch.setenv("EDGELAB_HEALTH_DIR", str(pytester.path / "health"))
    pytester.makefile(".yaml", devices=f"devices:\n  tiny: {{kind: local, workdir: {small_disk}}}\n")
    pytester.makepyfile(test_edge=TEST)
    for _attempt in range(1, 4):
        run = pytester.runpytest_subprocess("--device=tiny", "-rs", "-p", "no:cacheprovider")
        run.assert_outcomes(skipped=1)
        run.stdout.fnmatch_lines(["*device 'tiny' failed its health check: only 16 MB free*"])
    run.stdout.fnmatch_lines(["*(now quarantined)*"])
    run = pytester.runpytest_subprocess("--device=tiny", "-rs", "-p", "no:cacheprovider")
    run.assert_outcomes(skipped=1)
    run.stdout.fnmatch_lines(
        ["*device 'tiny' is quarantined after 3 failed health checks (last: only 16 MB free*"]
    )
    assert main(["--devices-file", str(pytester.path / "devices.yaml"), "devices"]) == 0
    assert "QUARANTINED" in capsys.readouterr().out
    assert main(["devices", "--release", "tiny"]) == 0
    assert "tiny: released from quarantine" in capsys.readouterr().out
    assert not health.status("tiny")["quarantined"]
