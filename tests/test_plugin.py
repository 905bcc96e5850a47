"""The pytest plugin end to end, through pytester: real agent, real model, real results.json."""

from __future__ import annotations

import json
import socket
import xml.etree.ElementTree as ET

import pytest

FAST = [
    "--warmup-iters=1",
    "--warmup-s=0",
    "--min-iters=5",
    "--min-s=0",
    "--max-s=10",
    "-p",
    "no:cacheprovider",
]

BENCH_TEST = """
import pytest

@pytest.mark.edge(model="silero_vad", precisions=["fp32"])
def test_latency(edge):
    result = edge.benchmark()
    assert result.latency_ms.samples >= 5
"""


def results_of(pytester) -> dict:
    latest = pytester.path / "reports" / "latest"
    assert latest.is_symlink()
    return json.loads((latest / "results.json").read_text())


def test_end_to_end_writes_results_and_junit_properties(pytester):
    pytester.makepyfile(test_edge=BENCH_TEST)
    junit = pytester.path / "junit.xml"
    run = pytester.runpytest(*FAST, f"--junitxml={junit}")
    run.assert_outcomes(passed=1)
    document = results_of(pytester)
    assert document["schema_version"] == 2
    assert document["run"]["devices"] == ["local"]
    assert document["run"]["harness_version"]
    (record,) = document["results"]
    assert record["test"] == "test_edge.py::test_latency[local-silero_vad-onnxruntime-fp32]"
    assert record["test_id"] == "test_edge.py::test_latency[silero_vad-onnxruntime-fp32]"
    assert record["kind"] == "latency"
    assert (record["device"], record["model"], record["format"], record["runtime"], record["precision"]) == (
        "local",
        "silero_vad",
        "onnx",
        "onnxruntime",
        "fp32",
    )
    assert record["status"] == "passed"
    assert record["latency_ms"]["samples"] == len(record["latency_samples_ms"]) >= 5
    assert 0 < record["latency_ms"]["median"] <= record["latency_ms"]["p99"]
    assert record["memory"]["peak_rss_mb"] > record["memory"]["baseline_mb"] > 0
    assert record["runtime_version"] and record["device_fingerprint"]["system"] == "Linux"
    assert len(record["model_sha256"]) == 64
    assert record["run"]["id"] == document["run"]["id"]
    reference = record["speed_reference"]  # the device's speed, timed when the run connected
    assert reference["device"] == "local" and len(reference["times_ms"]) == 7 and reference["median_ms"] > 0
    ends = document["run"]["speed_references"]["local"]
    assert ends["start"] == reference and ends["end"]["median_ms"] > 0  # and when it closed
    assert record["threads"] == 1 and record["cpus"]["threads"] == 1  # explicit, never the runtime's
    properties = {p.get("name"): p.get("value") for p in ET.parse(junit).iter("property")}
    assert float(properties["edgelab.latency_median_ms"]) == pytest.approx(
        record["latency_ms"]["median"], rel=1e-3
    )
    assert properties["edgelab.variant"] == "silero_vad-onnxruntime-fp32"
    assert float(properties["edgelab.peak_rss_mb"]) == pytest.approx(
        record["memory"]["peak_rss_mb"], abs=0.05
    )
    # not measured on the host: said so, never left out or 0
    assert properties["edgelab.energy_mj_per_inference"] == "not measured"
    assert properties["edgelab.pss_mb"] == (
        "not measured" if record["memory"]["pss_mb"] is None else f"{record['memory']['pss_mb']:.1f}"
    )
    # every file of the run folder is readable by the group and others
    run_dir = (pytester.path / "reports" / "latest").resolve()
    modes = {path.name: path.stat().st_mode & 0o777 for path in run_dir.iterdir() if path.is_file()}
    assert {"results.json", "index.html", "summary.md"} <= set(modes)
    assert set(modes.values()) == {0o644}, modes
    # the run's start is the session's, before the test's own record
    assert document["run"]["started_at"] <= record["finished_at"]


def test_second_run_pushes_no_model_bytes(pytester):
    pytester.makepyfile(test_edge=BENCH_TEST)
    workdir = pytester.path / "device"
    pytester.makefile(".yaml", devices=f"devices:\n  local: {{kind: local, workdir: '{workdir}'}}\n")
    pytester.runpytest(*FAST).assert_outcomes(passed=1)
    first = results_of(pytester)["results"][0]["deploy"]
    pytester.runpytest(*FAST).assert_outcomes(passed=1)
    second = results_of(pytester)["results"][0]["deploy"]
    assert first["bytes_pushed"] > 0 and "silero_vad.onnx" in first["pushed"]
    assert second["bytes_pushed"] == 0 and second["pushed"] == []


def test_unknown_device_fails_before_any_test_and_lists_known(pytester):
    pytester.makepyfile(test_edge=BENCH_TEST)
    run = pytester.runpytest("--device=pixel9")
    assert run.ret == pytest.ExitCode.USAGE_ERROR
    run.stderr.fnmatch_lines(["*unknown device 'pixel9' (known in devices.yaml: local)*"])
    assert not (pytester.path / "reports").exists()


def test_unknown_runtime_is_a_usage_error(pytester):
    run = pytester.runpytest("--runtime=tensorrt")
    assert run.ret == pytest.ExitCode.USAGE_ERROR
    run.stderr.fnmatch_lines(["*--runtime: unknown value(s) tensorrt (known: onnxruntime, litert, all)*"])


def test_help_shows_one_group_with_defaults(pytester):
    run = pytester.runpytest("--help")
    text = run.stdout.str()
    group = text[text.index("EdgeLab: on-device ML benchmarks") :]
    for option, default in (
        ("--device", "(default: local)"),
        ("--runtime", "(default: all)"),
        ("--precision", "(default: all)"),
        ("--reports-dir", "(default: reports)"),
        ("--min-iters", "(default: 50)"),
    ):
        assert option in group
        assert default in " ".join(group.split())


def test_ids_are_device_model_runtime_precision(pytester):
    pytester.makepyfile(
        test_edge="""
import pytest

@pytest.mark.edge(model=["silero_vad", "face_detection"])
def test_latency(edge):
    pass
"""
    )
    run = pytester.runpytest("--collect-only", "-q")
    collected = [line for line in run.stdout.lines if line.startswith("test_edge.py::")]
    assert collected == [
        "test_edge.py::test_latency[local-silero_vad-onnxruntime-fp32]",
        "test_edge.py::test_latency[local-silero_vad-onnxruntime-fp16]",
        "test_edge.py::test_latency[local-silero_vad-onnxruntime-int8-dynamic]",
        "test_edge.py::test_latency[local-silero_vad-onnxruntime-int8-static]",
        "test_edge.py::test_latency[local-face_detection-litert-fp16]",
        "test_edge.py::test_latency[local-face_detection-onnxruntime-fp16]",
        "test_edge.py::test_latency[local-face_detection-litert-fp32]",
        "test_edge.py::test_latency[local-face_detection-litert-int8-dynamic]",
        "test_edge.py::test_latency[local-face_detection-litert-int8-static]",
    ]


def test_filtered_out_variants_are_skipped_with_the_reason(pytester):
    pytester.makepyfile(test_edge=BENCH_TEST)
    run = pytester.runpytest("--precision=int8-static", "-rs")
    run.assert_outcomes(skipped=1)
    run.stdout.fnmatch_lines(
        ["*the marker's precisions fp32 and --precision int8-static have none in common*"]
    )
    pytester.makepyfile(test_edge=BENCH_TEST.replace('precisions=["fp32"]', 'runtimes=["onnxruntime"]'))
    run = pytester.runpytest("--runtime=litert", "-rs")
    run.assert_outcomes(skipped=1)
    run.stdout.fnmatch_lines(["*the marker's runtimes onnxruntime and --runtime litert have none in common*"])


def test_failed_budget_is_recorded_with_the_measurement(pytester):
    pytester.makepyfile(
        test_edge="""
import pytest

@pytest.mark.edge(model="silero_vad", precisions=["fp32"])
def test_budget(edge):
    result = edge.benchmark()
    assert result.latency_ms.median < 0, "over budget"
"""
    )
    pytester.runpytest(*FAST).assert_outcomes(failed=1)
    (record,) = results_of(pytester)["results"]
    assert record["status"] == "failed"
    assert "over budget" in record["error"]
    assert record["latency_ms"]["median"] > 0


def test_finished_tests_survive_a_killed_pytest(pytester):
    pytester.makepyfile(
        test_edge="""
import os
import pytest

@pytest.mark.edge(model="silero_vad", precisions=["fp32"])
def test_a_measured(edge):
    edge.benchmark()

def test_b_crash():
    os._exit(137)
"""
    )
    run = pytester.runpytest_subprocess(*FAST)
    assert run.ret == 137
    document = results_of(pytester)
    (record,) = document["results"]
    assert record["test"].startswith("test_edge.py::test_a_measured[") and record["status"] == "passed"
    assert "complete" not in document["run"]  # the run never finished
    from harness.store.db import ResultsStore

    store = ResultsStore(f"sqlite:///{pytester.path / 'reports' / 'results.db'}")
    (stored,) = store.runs()
    assert not stored.complete and len(store.records(stored.id)) == 1
    store.close()


def test_unreachable_device_errors_in_setup_naming_it(pytester):
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        closed_port = probe.getsockname()[1]
    pytester.makefile(
        ".yaml",
        devices=(
            "devices:\n"
            f"  board: {{kind: ssh, host: 127.0.0.1, port: {closed_port}, user: pi, connect_timeout_s: 3}}\n"
        ),
    )
    pytester.makepyfile(test_edge=BENCH_TEST + BENCH_TEST.replace("test_latency", "test_again"))
    run = pytester.runpytest(*FAST, "--device=board", "-ra")
    # one error for the device, in one line without a traceback; its other test is skipped, saying why
    run.assert_outcomes(errors=1, skipped=1)
    output = run.stdout.str()
    # the error and the UNREACHED DEVICE line; pytest's -ra summary line repeats it when the
    # terminal is wide enough not to cut it (CI's is)
    assert output.count("ConnectError: device 'board'") in (2, 3)
    assert "Traceback" not in output and "harness/transport" not in output
    run.stdout.fnmatch_lines(
        ["UNREACHED DEVICE board: ConnectError: device 'board'*", "*was not reached (see the error of*"]
    )
    # the run measured nothing: reports/latest is not moved to it
    assert not (pytester.path / "reports" / "latest").exists()
    (folder,) = [p for p in (pytester.path / "reports").iterdir() if p.is_dir()]
    records = json.loads((folder / "results.json").read_text())["results"]
    assert [r["status"] for r in records] == ["error", "skipped"]
    assert "device 'board'" in records[0]["error"] and f"127.0.0.1:{closed_port}" in records[0]["error"]


def test_edge_fixture_without_marker_is_a_collection_error(pytester):
    pytester.makepyfile(test_edge="def test_x(edge):\n    pass\n")
    run = pytester.runpytest()
    run.stdout.fnmatch_lines(["*uses the 'edge' fixture without @pytest.mark.edge(model=...)*"])
    assert run.ret == pytest.ExitCode.INTERRUPTED


def test_benchmark_over_ssh_on_a_real_sshd(pytester, sshd):
    """The same suite through the ssh transport: deploy over SFTP, agent over an exec channel."""
    import sys

    workdir = pytester.path / "board-workdir"
    pytester.makefile(
        ".yaml",
        devices=(
            "devices:\n"
            f"  board: {{kind: ssh, host: 127.0.0.1, port: {sshd.port}, user: {sshd.user}, "
            f"key_file: '{sshd.client_key}', known_hosts: '{sshd.known_hosts}', python: '{sys.executable}', "
            f"workdir: '{workdir}', tags: [board]}}\n"
        ),
    )
    pytester.makepyfile(test_edge=BENCH_TEST)
    pytester.runpytest(*FAST, "--device=tag:board").assert_outcomes(passed=1)
    (record,) = results_of(pytester)["results"]
    assert (record["device"], record["device_kind"], record["status"]) == ("board", "ssh", "passed")
    assert record["latency_ms"]["median"] > 0 and record["memory"]["peak_rss_mb"] > 0
    assert list(workdir.glob("cas/*/silero_vad.onnx"))


INTERLEAVED_TEST = """
import pytest

@pytest.mark.edge(model="silero_vad", precisions=["fp32"])
def test_against_face_detection(edge):
    results = edge.interleaved(["face_detection"], rounds=4, min_iters=40)
    assert set(results) == {"silero_vad-onnxruntime-fp32", "face_detection-litert-fp16"}
    assert edge.result is results["silero_vad-onnxruntime-fp32"]
"""


def test_interleaved_rounds_are_merged_and_every_variant_recorded(pytester):
    pytester.makepyfile(test_edge=INTERLEAVED_TEST)
    run = pytester.runpytest(*FAST)
    run.assert_outcomes(passed=1)
    records = {r["model"]: r for r in results_of(pytester)["results"]}
    assert set(records) == {"silero_vad", "face_detection"}
    for record in records.values():
        assert record["rounds"] == 4 and record["status"] == "passed" and record["kind"] == "interleaved"
        assert record["iterations"] == record["latency_ms"]["samples"] >= 40  # 4 rounds of >= 10
        assert record["protocol"]["min_iters"] == 40
    assert records["face_detection"]["test"].endswith("::interleaved[face_detection-litert-fp16]")
    assert records["face_detection"]["latency_ms"]["median"] > records["silero_vad"]["latency_ms"]["median"]


def test_two_runs_in_a_row_are_judged_by_the_run_policy_and_the_store_has_both(pytester):
    from harness.stats import compare
    from harness.store.db import ResultsStore

    pytester.makepyfile(test_edge=BENCH_TEST)
    slow = [
        "--min-iters=2000",
        "--min-s=1",
        "--warmup-s=0.5",
        "--threads=1",
    ]  # 2 spinning threads are bimodal here
    pytester.runpytest(*FAST, *slow, "--run-id=first").assert_outcomes(passed=1)
    run = pytester.runpytest(*FAST, *slow, "--run-id=second", "--baseline=first", "--noise-floor=0.08")
    run.assert_outcomes(passed=1)
    (record,) = results_of(pytester)["results"]
    comparison = record["comparison"]
    assert comparison["baseline_run"] == "first"
    (baseline,) = json.loads((pytester.path / "reports" / "first" / "results.json").read_text())["results"]
    expected = compare(baseline["latency_samples_ms"], record["latency_samples_ms"], noise_floor=0.08)
    latency = comparison["metrics"][0]
    assert latency["metric"] == "latency_median_ms"
    assert latency["ratio"] == pytest.approx(expected.ratio)
    assert (latency["ci_low"], latency["ci_high"]) == (
        pytest.approx(expected.ci_low),
        pytest.approx(expected.ci_high),
    )
    # The verdict is the run's policy applied to the two stored records, whatever the host did
    # between them: two runs seconds apart on a shared CI host once differed by 20% with neither
    # flagged, which no floor tells from a change. Interleaved rounds are the answer to that
    # (tests/test_session.py); here the plumbing must say the same as the policy.
    from harness.compare import VerdictPolicy, compare_runs
    from harness.record import ResultRecord

    again = compare_runs(
        ResultRecord.from_json(record), ResultRecord.from_json(baseline), VerdictPolicy(noise_floor=0.08)
    )
    assert latency["verdict"] == again.metrics[0].verdict, (latency["evidence"], again.metrics[0].evidence)
    assert latency["evidence"] == again.metrics[0].evidence
    if latency["verdict"] in ("regressed", "improved"):  # only past the floor with the whole CI
        assert min(abs(latency["ci_low"] - 1), abs(latency["ci_high"] - 1)) > 0.08
    flagged = [r for r in (baseline, record) if (r["throttle"] or {}).get("throttled")]
    for side in flagged:
        assert "; ".join(side["throttle"]["reasons"]) in latency["evidence"]
    summary = (pytester.path / "reports" / "second" / "summary.md").read_text()
    assert latency["verdict"] in summary and (pytester.path / "reports" / "second" / "index.html").exists()
    store = ResultsStore(f"sqlite:///{pytester.path / 'reports' / 'results.db'}")
    assert sorted(r.id for r in store.runs()) == ["first", "second"] and all(r.complete for r in store.runs())
    store.close()


def test_fail_on_regression_fails_the_test_with_the_evidence(pytester):
    pytester.makepyfile(test_edge=BENCH_TEST)
    # warmed up and long enough that a busy host rarely makes a run drift much (a drift that could
    # explain the change makes the comparison inconclusive; 1 warm-up and 60 iterations drifted)
    steady = [*FAST, "--warmup-iters=30", "--min-iters=300"]
    pytester.runpytest(*steady, "--run-id=base").assert_outcomes(passed=1)
    base = pytester.path / "reports" / "base" / "results.json"
    document = json.loads(base.read_text())
    fast = document["results"][0]
    fast["latency_samples_ms"] = [v / 10 for v in fast["latency_samples_ms"]]  # a baseline 10x faster
    fast["speed_reference"] = None  # the fabricated baseline says nothing of the host's speed then
    fast["modes"] = None  # nor of its latency modes
    fast["throttle"] = None  # nor of drift or throttling
    base.write_text(json.dumps(document))
    run = pytester.runpytest(*steady, "--run-id=cand", f"--baseline={base}", "--fail-on-regression")
    run.assert_outcomes(failed=1)
    run.stdout.fnmatch_lines(["*EdgeLab regression vs base: median * ms (+*%, 99% CI*Mann-Whitney*"])
    (record,) = results_of(pytester)["results"]
    assert record["status"] == "failed" and record["comparison"]["verdict"] == "regressed"


def test_fail_on_regression_without_a_baseline_is_a_usage_error(pytester):
    pytester.makepyfile(test_edge=BENCH_TEST)
    run = pytester.runpytest(*FAST, "--fail-on-regression")
    assert run.ret == pytest.ExitCode.USAGE_ERROR
    run.stderr.fnmatch_lines(["*--fail-on-regression needs --baseline*"])


def test_precisions_are_parametrized_and_refused_recipes_skip_with_the_reason(pytester):
    pytester.makepyfile(
        test_edge="""
import pytest

@pytest.mark.edge(model=["ppocr_cls", "face_detection"], precisions=["fp32", "int8-dynamic"])
def test_latency(edge):
    edge.benchmark()
"""
    )
    run = pytester.runpytest(*FAST, "-rs")
    run.assert_outcomes(passed=2, skipped=2)
    run.stdout.fnmatch_lines(
        ["*face_detection: int8-dynamic is not available*ai-edge-quantizer needs a signature*"]
    )
    records = results_of(pytester)["results"]
    assert sorted(r["precision"] for r in records) == ["fp32", "int8-dynamic"]


def test_xdist_auto_gives_one_worker_per_device_and_one_run(pytester, tmp_path):
    pytester.makefile(
        ".yaml",
        devices=(
            "devices:\n"
            f"  host-a: {{kind: local, workdir: {tmp_path / 'a'}}}\n"
            f"  host-b: {{kind: local, workdir: {tmp_path / 'b'}}}\n"
            f"  host-c: {{kind: local, workdir: {tmp_path / 'c'}}}\n"
        ),
    )
    log = tmp_path / "workers.log"
    pytester.makepyfile(
        test_edge=f"""
import os
import pytest

@pytest.mark.edge(model=["silero_vad", "ppocr_cls"], precisions=["fp32"])
def test_latency(edge):
    edge.benchmark()
    with open({str(log)!r}, "a") as handle:
        handle.write(edge.device + " " + os.environ["PYTEST_XDIST_WORKER"] + "\\n")
"""
    )
    run = pytester.runpytest_subprocess(*FAST, "--device=host-a,host-b,host-c", "-n", "auto")
    run.assert_outcomes(passed=6)
    run.stdout.fnmatch_lines(["*3 workers*"])  # sized by the selected devices, not the 2 CPUs
    workers: dict[str, set[str]] = {}
    for line in log.read_text().splitlines():
        device, worker = line.split()
        workers.setdefault(device, set()).add(worker)
    assert set(workers) == {"host-a", "host-b", "host-c"}
    assert all(len(w) == 1 for w in workers.values())  # a device's tests never split across workers
    assert len(set.union(*workers.values())) == 3  # and the devices ran on different workers
    document = results_of(pytester)
    assert len(document["results"]) == 6 and len({r["run_id"] for r in document["results"]}) == 1


def test_the_worker_count_is_the_devices_whichever_plugin_registered_last(pytester, tmp_path, monkeypatch):
    """xdist's own answer (the CPU count) must not win when pytest registers xdist after this
    plugin: a lab of 8 phones on a 2-core host ran two at a time, 3.7x one phone's wall time."""
    import xdist.plugin

    from harness import plugin

    monkeypatch.delenv("PYTEST_XDIST_AUTO_NUM_WORKERS", raising=False)
    pytester.makefile(
        ".yaml",
        devices="devices:\n"
        + "".join(f"  d{i}: {{kind: local, workdir: {tmp_path / str(i)}}}\n" for i in range(5)),
    )
    config = pytester.parseconfig("--device=d0,d1,d2,d3,d4", "-n", "auto")
    hook = config.hook.pytest_xdist_auto_num_workers
    order = [impl.plugin for impl in reversed(hook.get_hookimpls())]  # the order pluggy calls them
    assert order.index(plugin) < order.index(xdist.plugin)  # tryfirst: before xdist, registered when it may
    assert hook(config=config) == 5
    monkeypatch.setenv("PYTEST_XDIST_AUTO_NUM_WORKERS", "3")  # the user's override still decides
    assert hook(config=config) == 3


def test_loading_the_plugin_leaves_scipy_for_when_it_is_needed():
    # pytest loads the plugin in every run and in every xdist worker: scipy's signal and ndimage
    # (1.3 s to import here) wait until a corruption is applied, scipy.stats until a comparison.
    import subprocess
    import sys

    probe = "import sys, harness.plugin; print(sorted(m for m in sys.modules if m.startswith('scipy')))"
    shown = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True).stdout
    assert shown.strip() == "[]"


def _verdicts_in_html(path) -> list[str]:
    import re

    text = path.read_text()
    results = text[text.index('id="results"') :]
    return re.findall(
        r'<td class="evidence"><span class="(regressed|improved|unchanged|inconclusive|new)">', results
    )


def test_a_run_compared_with_itself_is_unchanged_everywhere(pytester, monkeypatch):
    from harness.cli import main

    pytester.makepyfile(
        test_edge="""
import pytest

@pytest.mark.edge(model=["silero_vad", "ppocr_cls"], precisions=["fp32"])
def test_latency(edge):
    edge.benchmark()

@pytest.mark.edge(model="silero_vad", precisions=["fp32"])
def test_sustained(edge):
    edge.sustained(0.5)
"""
    )
    pytester.runpytest(*FAST, "--run-id=once").assert_outcomes(passed=3)
    monkeypatch.chdir(pytester.path)
    assert main(["report", "once", "--baseline", "once"]) == 0
    records = json.loads((pytester.path / "reports" / "once" / "results.json").read_text())["results"]
    assert {r["kind"] for r in records} == {"latency", "sustained"}
    assert _verdicts_in_html(pytester.path / "reports" / "once" / "index.html") == ["unchanged"] * 3
    summary = (pytester.path / "reports" / "once" / "summary.md").read_text()
    assert (
        "### EdgeLab: ⚪ 3 unchanged" in summary and "regressed" not in summary and "improved" not in summary
    )
    assert main(["pr-comment", "once", "--baseline", "reports/once/results.json"]) == 0
    assert "### EdgeLab: ⚪ 3 unchanged" in (pytester.path / "reports" / "once" / "summary.md").read_text()


def test_the_same_pair_of_runs_gets_the_same_verdicts_through_every_entry_point(pytester, monkeypatch):
    """The device's noise_floor (devices.yaml) holds in the pytest run, `edgelab report --baseline`
    and `edgelab pr-comment --baseline` alike: the policy is recorded with the run."""
    from harness.cli import main

    pytester.makefile(".yaml", devices="devices:\n  local: {kind: local, noise_floor: 0.6}\n")
    pytester.makepyfile(test_edge=BENCH_TEST)
    pytester.runpytest(*FAST, "--min-iters=200", "--run-id=first").assert_outcomes(passed=1)
    base = pytester.path / "reports" / "first" / "results.json"
    document = json.loads(base.read_text())
    slow = document["results"][0]
    slow["latency_samples_ms"] = [v * 1.4 for v in slow["latency_samples_ms"]]  # 40% slower baseline
    base.write_text(json.dumps(document))
    run = pytester.runpytest(*FAST, "--min-iters=200", "--run-id=second", f"--baseline={base}")
    run.assert_outcomes(passed=1)
    (record,) = json.loads((pytester.path / "reports" / "second" / "results.json").read_text())["results"]
    pytest_verdict = record["comparison"]["metrics"][0]["verdict"]
    assert (
        pytest_verdict in ("unchanged", "inconclusive")
        and "floor 60%" in record["comparison"]["metrics"][0]["evidence"]
    )
    monkeypatch.chdir(pytester.path)
    # devices.yaml is gone: the policy comes from the run, not from the folder the command runs in
    (pytester.path / "devices.yaml").unlink()
    assert main(["report", "second", "--baseline", str(base)]) == 0
    html_verdicts = _verdicts_in_html(pytester.path / "reports" / "second" / "index.html")
    assert html_verdicts == [record["comparison"]["verdict"]]
    assert main(["pr-comment", "second", "--baseline", str(base)]) == 0
    summary = (pytester.path / "reports" / "second" / "summary.md").read_text()
    assert "| latency |" in summary and pytest_verdict in summary
    # and a floor given on the command line is the one exception, applied to every device
    from harness.compare import VerdictPolicy, compare_runs
    from harness.record import ResultRecord

    assert main(["report", "second", "--baseline", str(base), "--noise-floor", "0.03"]) == 0
    compared = compare_runs(
        ResultRecord.from_json(record), ResultRecord.from_json(slow), VerdictPolicy(noise_floor=0.03)
    )
    expected = compared.verdict
    # against a baseline made 40% slower this is "improved", unless the host itself moved more
    # than that between the two runs (a CI host once made the second run >40% slower: regressed);
    # whatever it is, it follows the measured ratio, and every entry point says the same
    latency = compared.metrics[0]
    assert (expected != "improved" or latency.ratio < 1) and (expected != "regressed" or latency.ratio > 1)
    assert _verdicts_in_html(pytester.path / "reports" / "second" / "index.html") == [expected]


def test_loading_the_plugin_leaves_the_downloader_and_trace_protos_unimported():
    """Every xdist worker imports the plugin: a module only a download or a phone's trace needs
    (requests, the protobuf runtime) is imported when that work starts, not by every worker."""
    import subprocess
    import sys

    code = "import sys, harness.plugin; print(sorted(m for m in ('requests', 'google.protobuf') if m in sys.modules))"
    shown = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert shown.stdout.strip() == "[]", shown.stdout
