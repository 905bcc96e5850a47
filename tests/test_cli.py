"""The `edgelab` command: devices and doctor against real transports."""

from __future__ import annotations

import json
import os
import socket
import sys

import onnxruntime

from harness.cli import main


def fleet_file(tmp_path, body: str):
    path = tmp_path / "devices.yaml"
    path.write_text("devices:\n" + body)
    return str(path)


def test_devices_lists_the_fleet(tmp_path, capsys):
    path = fleet_file(
        tmp_path,
        "  pixel8: {kind: adb, serial: 38101FDJH00ABC, tags: [android]}\n"
        "  rpi5: {kind: ssh, host: rpi5.lab, user: pi, tags: [board]}\n"
        "  bench3: {kind: labgrid, coordinator: 'lab:20408', place: rpi5-bench3}\n",
    )
    assert main(["--devices-file", path, "devices"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].split() == ["NAME", "KIND", "ADDRESS", "TAGS", "WORKDIR"]
    assert lines[1].split()[:2] == ["local", "local"]
    assert "38101FDJH00ABC (adb server 127.0.0.1:5037)" in lines[2]
    assert lines[3].split()[:3] == ["rpi5", "ssh", "pi@rpi5.lab:22"]
    assert lines[4].split()[:2] == ["bench3", "labgrid"]
    assert "labgrid place rpi5-bench3 (coordinator lab:20408)" in lines[4]
    assert lines[4].rstrip().endswith("(by what the place turns out to be)")
    assert lines[-1] == f"4 device(s) in {path}"


def test_doctor_local_reports_runtimes(capsys):
    assert main(["doctor", "local"]) == 0
    out = capsys.readouterr().out
    assert f"runtime:  onnxruntime {onnxruntime.__version__} (module onnxruntime)" in out
    assert "runtime:  litert " in out and "(module ai_edge_litert.interpreter)" in out
    assert f"python:   {sys.version.split()[0]} at {sys.executable}" in out


def test_doctor_over_ssh_runs_the_agent_on_the_board(sshd, tmp_path, capsys):
    path = fleet_file(
        tmp_path,
        f"  board: {{kind: ssh, host: 127.0.0.1, port: {sshd.port}, user: {sshd.user}, "
        f"key_file: '{sshd.client_key}', known_hosts: '{sshd.known_hosts}', python: '{sys.executable}', "
        f"workdir: '{tmp_path / 'board'}'}}\n",
    )
    assert main(["--devices-file", path, "doctor", "board"]) == 0
    out = capsys.readouterr().out
    assert "device:   board" in out and f"workdir:  {tmp_path / 'board'}" in out
    assert f"runtime:  onnxruntime {onnxruntime.__version__}" in out
    assert list((tmp_path / "board" / "cas").glob("*/edgelab_agent.py"))


def test_doctor_says_exactly_why_it_cannot(tmp_path, capsys):
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    path = fleet_file(tmp_path, f"  board: {{kind: ssh, host: 127.0.0.1, port: {port}, user: pi}}\n")
    assert main(["--devices-file", path, "doctor", "board"]) == 1
    err = capsys.readouterr().err
    assert err.startswith(f"edgelab: error: device 'board': cannot connect to pi@127.0.0.1:{port}")


def test_doctor_unknown_device_lists_known(capsys):
    assert main(["doctor", "pixel9"]) == 1
    assert "unknown device 'pixel9'" in capsys.readouterr().err


def test_doctor_with_a_broken_python_names_it(tmp_path, capsys):
    path = fleet_file(
        tmp_path, f"  oldbox: {{kind: local, python: /nonexistent/python3, workdir: '{tmp_path}/w'}}\n"
    )
    assert main(["--devices-file", path, "doctor", "oldbox"]) == 1
    err = capsys.readouterr().err
    assert "device 'oldbox'" in err and "/nonexistent/python3" in err


def test_parse_prints_json_with_units_in_the_keys(tmp_path, capsys):
    from pathlib import Path

    capture = Path(__file__).parent / "fixtures/real-outputs/ort_perf_test/spacemit_k1_yolov8n_int8.txt"
    assert main(["parse", "ort-perf-test", str(capture)]) == 0
    document = json.loads(capsys.readouterr().out)
    assert document["avg_ms"] == 82.3382 and document["peak_working_set_bytes"] == 78946304
    wrong = tmp_path / "wrong.txt"
    wrong.write_text("hello\n")
    assert main(["parse", "tegrastats", str(wrong)]) == 1
    assert "edgelab: error: tegrastats: no line with 'RAM" in capsys.readouterr().err
    assert main(["parse", "tegrastats", str(tmp_path / "missing.txt")]) == 1
    assert "missing.txt: cannot read (No such file or directory)" in capsys.readouterr().err


def test_a_closed_pipe_ends_quietly(tmp_path):
    """`edgelab devices | head -1`: the reader leaves early; no BrokenPipeError traceback."""
    import subprocess

    read, write = os.pipe()
    os.close(read)  # the reader is gone before edgelab writes a line
    try:
        done = subprocess.run(
            [sys.executable, "-m", "harness.cli", "devices"],
            check=False,
            stdout=write,
            stderr=subprocess.PIPE,
            text=True,
            timeout=120,
        )
    finally:
        os.close(write)
    assert done.returncode == 141 and done.stderr == ""


def _run_folder(reports, run_id, median, branch="main"):
    from harness.record import RunInfo
    from harness.store.db import ResultsStore, default_url
    from tests.factories import make_record, write_results

    record = make_record(
        run_id, model="silero_vad", median_ms=median, n=200, test="t.py::x[local-silero_vad]"
    )
    write_results(reports, run_id, [record], started_at=run_id)
    store = ResultsStore(default_url(reports))
    store.write_run(
        RunInfo(id=run_id, git_branch=branch, git_commit="abc", started_at=run_id, devices=("local",))
    )
    store.write_record(record)
    store.finish_run(run_id)
    store.close()


def test_report_and_history_and_pr_comment(tmp_path, capsys, monkeypatch):
    reports = tmp_path / "reports"
    _run_folder(reports, "2026-01", 1.0)
    _run_folder(reports, "2026-02", 1.5)
    for name, value in (
        ("GITHUB_SERVER_URL", "https://github.com"),
        ("GITHUB_REPOSITORY", "acme/edge"),
        ("GITHUB_RUN_ID", "99"),
    ):
        monkeypatch.setenv(name, value)
    assert main(["report", "2026-02", "--reports-dir", str(reports), "--baseline", "2026-01"]) == 0
    assert (reports / "2026-02" / "index.html").exists()
    assert "regressed" in (reports / "2026-02" / "summary.md").read_text()
    repo = "https://github.com/acme/edge"
    assert (
        main(["report", "--history", "--reports-dir", str(reports), "--branch", "main", "--repo-url", repo])
        == 0
    )
    history = (reports / "history.html").read_text()
    assert "2026-01" in history and "2026-02" in history and f"{repo}/commit/abc" in history
    step_summary = tmp_path / "step.md"
    monkeypatch.setenv("GITHUB_STEP_SUMMARY", str(step_summary))
    capsys.readouterr()
    assert main(["pr-comment", "2026-02", "--reports-dir", str(reports)]) == 0
    out = capsys.readouterr().out
    assert "#### 🔺 Regressions (1 result(s))" in out and "| `x[silero_vad]` | local |" in out
    assert "[HTML report](https://github.com/acme/edge/actions/runs/99)" in out  # the run's artifacts
    assert "<!-- edgelab-summary -->" in step_summary.read_text()
    url = ["--report-url", "https://r.example/x"]
    assert main(["pr-comment", "2026-02", "--reports-dir", str(reports), "--baseline", "2026-01", *url]) == 0
    out = capsys.readouterr().out
    assert "[HTML report](https://r.example/x)" in out and "🔺 1 regressed" in out
    assert main(["report", "nope", "--reports-dir", str(reports)]) == 1
    assert "run nope: no " in capsys.readouterr().err


def test_pr_comment_post_updates_the_marked_comment(tmp_path, capsys, monkeypatch):
    # GitHub is not reachable here: a stand-in `gh` on PATH answers the comment lookup with the id
    # of an existing EdgeLab comment and records every call.
    reports = tmp_path / "reports"
    _run_folder(reports, "2026-03", 1.0)
    calls = tmp_path / "calls.txt"
    stand_in = tmp_path / "bin" / "gh"
    stand_in.parent.mkdir()
    stand_in.write_text(
        f'#!/bin/sh\necho "$*" >> {calls}\ncat >> {calls}\ncase "$*" in *--jq*) echo 4242 ;; esac\n'
    )
    stand_in.chmod(0o755)
    monkeypatch.setenv("PATH", f"{stand_in.parent}:{os.environ['PATH']}")
    assert (
        main(["pr-comment", "2026-03", "--reports-dir", str(reports), "--post", "--pr", "7", "--repo", "o/r"])
        == 0
    )
    assert "pr-comment: updated comment 4242 on o/r#7" in capsys.readouterr().err
    logged = calls.read_text()
    assert "api repos/o/r/issues/7/comments --paginate --jq" in logged
    assert "api --method PATCH repos/o/r/issues/comments/4242 --input -" in logged
    assert '"body": "<!-- edgelab-summary -->' in logged
    monkeypatch.setenv("PATH", "/nonexistent")
    assert main(["pr-comment", "2026-03", "--reports-dir", str(reports), "--post"]) == 1
    assert "--post needs the GitHub CLI" in capsys.readouterr().err


def test_models_list_shows_the_zoo_and_the_project_with_source_format_inputs_and_sha256(tmp_path, capsys):
    import shutil

    from tests.fixtures.project_models import wakeword_file, write_classifier

    (tmp_path / "models").mkdir()
    shutil.copyfile(wakeword_file(), tmp_path / "models" / "okay_nabu.tflite")
    write_classifier(tmp_path / "models" / "classifier.onnx")
    (tmp_path / "models.yaml").write_text(
        "models:\n"
        "  wake: {path: models/okay_nabu.tflite, description: third-party wake word}\n"
        "  classifier: {path: models/classifier.onnx}\n"
        "  remote: {url: 'http://127.0.0.1:9/remote.onnx', sha256: '" + "ab" * 32 + "'}\n"
    )
    assert main(["models", "list", "--rootdir", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert "silero_vad  (zoo): Silero VAD v5" in out and "  source  wheel silero-vad==6.2.3:" in out
    assert (
        "wake  (models.yaml): third-party wake word\n"
        f"  source  file {tmp_path}/models/okay_nabu.tflite\n"
        "  format  tflite, int8 as shipped\n"
        "  sha256  d89128c4d16a72de429119fb2254ce46649553c2a24f5dd840175c80d7b9d094\n"
        "  input   serving_default_input_audio:0 [1, 3, 40] int8, quantized: scale 0.101961, zero point -128\n"
    ) in out
    assert "  input   features [?, 16] float32 (runs at [1, 16])" in out
    assert "remote  (models.yaml)\n  source  url http://127.0.0.1:9/remote.onnx\n" in out
    assert "  inputs  not fetched yet (edgelab models check fetches it)" in out  # list never downloads
    assert out.rstrip().endswith(f"3 project model(s) in {tmp_path}/models.yaml")


def test_models_check_runs_every_model_once_and_fails_on_the_first_bad_one(tmp_path, capsys, monkeypatch):
    from tests.fixtures.project_models import write_project

    monkeypatch.setenv("EDGELAB_CACHE", str(tmp_path / "cache"))
    project = write_project(tmp_path / "project", samples=6)
    assert main(["models", "check", "--rootdir", str(project)]) == 0
    out = capsys.readouterr().out
    assert "ok    wakeword: tflite int8, runs on the host (1 output(s)); variants wakeword-litert-int8; dataset npz " in out
    assert "metrics:detection_rate 1 on the first 6" in out
    assert "ok    classifier: onnx fp32, runs on the host" in out and "top1 1 on the first 6" in out
    assert out.rstrip().endswith(f"2 of 2 model(s) ok in {project}/models.yaml")
    (project / "metrics.py").write_text("def detection_rate(outputs, labels):\n    raise KeyError('probability')\n")
    monkeypatch.delitem(sys.modules, "metrics")  # a new process would import the new file
    assert main(["models", "check", "--rootdir", str(project)]) == 1
    out = capsys.readouterr().out
    assert (
        f"FAIL  wakeword: {project}/models.yaml: model 'wakeword': metric 'metrics:detection_rate' raised KeyError: "
        "'probability'"
    ) in out
    assert "1 of 2 model(s) ok" in out


def test_models_check_without_models_yaml_and_with_a_bad_one_says_so(tmp_path, capsys):
    assert main(["models", "check", "--rootdir", str(tmp_path)]) == 1
    assert f"no models.yaml in {tmp_path}; pass --models-file" in capsys.readouterr().err
    (tmp_path / "models.yaml").write_text("models:\n  m: {path: m.onnx, precisons: [fp32]}\n")
    assert main(["models", "list", "--rootdir", str(tmp_path)]) == 1
    assert "unknown field 'precisons' (did you mean 'precisions'?)" in capsys.readouterr().err
