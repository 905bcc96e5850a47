"""What a phone without Python prints back to the native runner (its probe, the run script's
marked output) driven by hypothesis with the formats' own tokens, cut and shuffled: each call
returns a typed result or raises ParseError, nothing else; and a hostile model path reaches the
tool through the run script as one argument, never as shell."""

from __future__ import annotations

from datetime import timedelta

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from harness.errors import ParseError
from harness.runners.native import parse_native_probe
from harness.runners.native_script import ScriptArgs, parse_script_output, run_script
from harness.transport.local import LocalTransport

TOKEN = "0123456789ab"
FUZZ = settings(
    max_examples=60,
    deadline=timedelta(seconds=20),
    database=None,
    suppress_health_check=[HealthCheck.too_slow],
)

SCRIPT_PIECES = [
    f"{TOKEN} ",
    "mark ",
    "idle-start ",
    "tool-end ",
    "pid ",
    "rc ",
    "failed perfetto 1",
    "begin tool.out",
    "end tool.out",
    "begin meminfo.1",
    "end meminfo.1",
    "governor /sys/devices/system/cpu/cpufreq/policy0 schedutil",
    "battery 81 Discharging",
    "stat idle-start 1 2 3 4 5 6 7 8",
    "samples-done ",
    "sample 0",
    "done",
    "12345.67",
    "-1",
    "9" * 40,
    "nan",
    "1e999",
    "\n",
    " ",
    "\x00",
    "é",
]
PROBE_PIECES = [
    "uname Linux 6.1 aarch64",
    "abi android arm64-v8a",
    "abi linux x86_64",
    "abi android",
    "abi ",
    "sdk 34",
    "sdk -1",
    "sdk " + "9" * 40,
    "traced 1",
    "has perfetto",
    "has dumpsys",
    "has battery",
    "cores 8",
    "cores x",
    "memtotal 99999999999999999999",
    "model Pixel 8",
    "\n",
    " ",
    "\x00",
]


@FUZZ
@given(st.lists(st.sampled_from(SCRIPT_PIECES), max_size=80))
def test_the_script_output_reader_returns_a_result_or_a_parse_error(pieces):
    text = "".join(pieces)
    try:
        output = parse_script_output(text, TOKEN)
    except ParseError as exc:
        assert str(exc).startswith("native-run: ")
        return
    assert all(isinstance(value, int) for value in output.marks.values())
    assert all(isinstance(value, str) for value in output.sections.values())
    output.idle_busy_pct()
    output.samples_output()


@FUZZ
@given(st.lists(st.sampled_from(PROBE_PIECES), max_size=40).map("\n".join))
def test_the_probe_reader_returns_a_device_or_a_parse_error(text):
    try:
        device = parse_native_probe(text, "phone")
    except ParseError:
        return
    assert device.system in ("android", "linux") and device.abi and device.tracing in ("perfetto", "sysfs")


@pytest.mark.parametrize("name", ["m $(touch PWNED).tflite", "m;touch PWNED`x`.tflite", "m'\"*?.tflite"])
def test_a_hostile_argument_reaches_the_tool_as_one_argument(tmp_path, name):
    script = tmp_path / "run.sh"
    script.write_text(run_script())
    tool = tmp_path / "tool.sh"
    tool.write_text('#!/bin/sh\nprintf "%s\\n" "$#" "$1"\n')
    tool.chmod(0o755)
    args = ScriptArgs(
        TOKEN,
        str(tmp_path / "run"),
        "once",
        0.0,
        "none",
        None,
        0.25,
        False,
        False,
        (str(tool), f"--graph={name}"),
    )
    result = LocalTransport("phone").run(args.argv(str(script)), timeout=60, cwd=str(tmp_path))
    output = parse_script_output(result.stdout, TOKEN)
    assert output.exit_code == 0 and output.section("tool.out") == f"1\n--graph={name}\n"
    assert not list(tmp_path.glob("PWNED")) and not list((tmp_path / "run").glob("PWNED"))
