"""Free-form values of the fleet file that reach results (labels) carry no secret: a token or a
password in devices.yaml is masked in results.json and the database, like one on a command line."""

from __future__ import annotations

import json

SECRET = "s3cr3t-Pa55-label"


def test_secrets_in_labels_reach_neither_results_json_nor_the_database(pytester):
    pytester.makefile(
        ".yaml",
        devices=f"""
devices:
  local:
    kind: local
    labels:
      soc: host-cpu
      ci_token: {SECRET}
      relay: "https://lab:{SECRET}@relay.lab/x"
""",
    )
    pytester.makepyfile(
        test_edge="""
import pytest

@pytest.mark.edge(model="silero_vad", precisions=["fp32"])
def test_latency(edge):
    edge.benchmark()
"""
    )
    db = pytester.path / "r.db"
    run = pytester.runpytest_subprocess(
        "--warmup-iters=1", "--min-iters=3", "--min-s=0", "--warmup-s=0", "-p", "no:cacheprovider",
        f"--devices-file={pytester.path / 'devices.yaml'}", f"--results-db=sqlite:///{db}", "--run-id=x",
        "--no-report",
    )  # fmt: skip
    run.assert_outcomes(passed=1)
    results = (pytester.path / "reports" / "x" / "results.json").read_text()
    assert SECRET not in results and SECRET not in db.read_bytes().decode("latin-1")
    labels = json.loads(results)["results"][0]["device_fingerprint"]["labels"]
    assert labels == {"soc": "host-cpu", "ci_token": "***", "relay": "https://lab:***@relay.lab/x"}
