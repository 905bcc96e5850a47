"""No password, token or key reaches results, the database, reports or error messages."""

from __future__ import annotations

import json

from harness.secrets import redact, redact_argv

SECRET = "s3cr3t-Pa55"


def test_redaction_of_urls_key_values_and_tokens():
    assert redact(f"postgresql://edgelab:{SECRET}@db:5432/x") == "postgresql://edgelab:***@db:5432/x"
    assert redact(f"password={SECRET} user=x") == "password=*** user=x"
    assert redact(f"GH_TOKEN: {SECRET}") == "GH_TOKEN: ***"
    assert redact("Authorization: Bearer abcdefghijklmnopqrstuvwxyz") == "Authorization: Bearer ***"
    assert redact("use ghp_" + "A" * 36 + " now") == "use *** now"
    assert redact("plain text stays") == "plain text stays"
    assert redact_argv(["pytest", f"--results-db=postgresql://u:{SECRET}@h/db"]) == [
        "pytest",
        "--results-db=postgresql://u:***@h/db",
    ]


def test_a_run_with_a_secret_on_its_command_line_stores_none_of_it(pytester):
    pytester.makepyfile(
        test_edge="""
import pytest

@pytest.mark.edge(model="silero_vad", precisions=["fp32"])
def test_latency(edge):
    edge.benchmark()
    raise AssertionError("token="""
        + SECRET
        + """ leaked into an error")
"""
    )
    db = pytester.path / "r.db"
    run = pytester.runpytest_subprocess(
        "--warmup-iters=1", "--min-iters=5", "--min-s=0", "--warmup-s=0", "-p", "no:cacheprovider",
        f"--results-db=sqlite:///{db}", "--run-id=x", "-o", f"junit_suite_name=password={SECRET}",
    )  # fmt: skip
    run.assert_outcomes(failed=1)
    written = [
        (pytester.path / "reports" / "x" / name).read_text(errors="replace")
        for name in ("results.json", "index.html", "summary.md")
    ]
    written.append(db.read_bytes().decode("latin-1"))
    assert all(SECRET not in text for text in written)
    record = json.loads(written[0])["results"][0]
    assert "token=***" in record["error"]
    assert any("password=***" in argument for argument in json.loads(written[0])["run"]["command"])


def test_free_form_fields_are_redacted_like_command_lines():
    from harness.secrets import redact_fields

    labels = {
        "soc": "bcm2712",
        "ci_token": SECRET,
        "DB-Password": SECRET,
        "meter": f"https://lab:{SECRET}@meter.lab/read",
        "note": f"uses api_key={SECRET} for the relay",
        "owner": "ghp_" + "A" * 36,
    }
    assert redact_fields(labels) == {
        "soc": "bcm2712",
        "ci_token": "***",
        "DB-Password": "***",
        "meter": "https://lab:***@meter.lab/read",
        "note": "uses api_key=*** for the relay",
        "owner": "***",
    }
