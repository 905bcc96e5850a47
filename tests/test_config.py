"""devices.yaml schema errors and --device selection."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from harness.config import AdbDevice, LabgridDevice, LocalDevice, SshDevice, load_fleet, parse_device
from harness.errors import ConfigError, SelectionError

FLEET = """
devices:
  pixel8:
    kind: adb
    serial: 38101FDJH00ABC
    tags: [android, phone]
  rpi5:
    kind: ssh
    host: rpi5.lab
    user: pi
    tags: [linux, board]
    threads: 4
    labels: {soc: bcm2712}
  jetson:
    kind: ssh
    host: 10.0.0.7
    port: 2222
    user: nvidia
    tags: [linux, board, gpu]
"""


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "devices.yaml"
    path.write_text(text, encoding="utf-8")
    return path


def test_valid_fleet_has_typed_devices_and_implicit_local(tmp_path):
    fleet = load_fleet(write(tmp_path, FLEET))
    assert fleet.names() == ["local", "pixel8", "rpi5", "jetson"]
    assert isinstance(fleet["local"], LocalDevice)
    assert fleet["local"].python == sys.executable
    pixel = fleet["pixel8"]
    assert isinstance(pixel, AdbDevice)
    assert (pixel.serial, pixel.adb_host, pixel.adb_port) == ("38101FDJH00ABC", "127.0.0.1", 5037)
    assert pixel.workdir == "/data/local/tmp/edgelab"
    rpi = fleet["rpi5"]
    assert isinstance(rpi, SshDevice)
    assert (rpi.port, rpi.threads, rpi.labels, rpi.trust_on_first_use) == (22, 4, {"soc": "bcm2712"}, False)
    assert rpi.workdir == "~/.cache/edgelab/device"


def test_missing_default_file_gives_local_only(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert load_fleet().names() == ["local"]


def test_missing_explicit_file_is_an_error(tmp_path):
    with pytest.raises(ConfigError, match=r"nope\.yaml: file not found"):
        load_fleet(tmp_path / "nope.yaml")


def test_missing_required_field_names_file_device_field_and_kind(tmp_path):
    path = write(tmp_path, "devices:\n  pixel8: {kind: adb, tags: [android]}\n")
    with pytest.raises(ConfigError) as error:
        load_fleet(path)
    assert str(error.value) == f"{path}: device 'pixel8': field 'serial' is required for kind adb"


def test_unknown_field_suggests_the_close_name(tmp_path):
    path = write(tmp_path, "devices:\n  rpi5: {kind: ssh, host: h, user: u, prot: 22}\n")
    with pytest.raises(
        ConfigError, match=r"device 'rpi5': unknown field 'prot' for kind ssh \(did you mean 'port'\?\)"
    ):
        load_fleet(path)


def test_bad_kind_lists_the_kinds(tmp_path):
    path = write(tmp_path, "devices:\n  board: {kind: serial}\n")
    with pytest.raises(
        ConfigError,
        match=r"device 'board': field 'kind' must be one of local, ssh, adb, labgrid \(got 'serial'\)",
    ):
        load_fleet(path)


def test_wrong_type_names_field_and_value(tmp_path):
    path = write(tmp_path, "devices:\n  rpi5: {kind: ssh, host: h, user: u, port: 70000}\n")
    with pytest.raises(ConfigError, match=r"device 'rpi5': field 'port': .*65535.*got 70000"):
        load_fleet(path)


def test_malformed_yaml_reports_line_and_column(tmp_path):
    path = write(tmp_path, "devices:\n  pixel8: {kind: adb, serial: [unclosed\n")
    with pytest.raises(ConfigError, match=r"devices\.yaml: line \d+, column \d+: not valid YAML"):
        load_fleet(path)


def test_top_level_must_be_devices_mapping(tmp_path):
    with pytest.raises(ConfigError, match="expected a top-level mapping"):
        load_fleet(write(tmp_path, "- pixel8\n- rpi5\n"))
    with pytest.raises(ConfigError, match=r"unknown top-level key\(s\) \['device'\]"):
        load_fleet(write(tmp_path, "device:\n  x: {kind: local}\n"))


def test_device_entry_must_be_mapping():
    with pytest.raises(ConfigError, match="device 'x': expected a mapping of fields, got str"):
        parse_device("x", "adb")


def test_selection_by_name_list_tag_and_all(tmp_path):
    fleet = load_fleet(write(tmp_path, FLEET))
    assert [d.name for d in fleet.select("pixel8")] == ["pixel8"]
    assert [d.name for d in fleet.select("rpi5, pixel8,rpi5")] == ["rpi5", "pixel8"]
    assert [d.name for d in fleet.select("tag:board")] == ["rpi5", "jetson"]
    assert [d.name for d in fleet.select("tag:gpu,local")] == ["jetson", "local"]
    assert [d.name for d in fleet.select("all")] == ["local", "pixel8", "rpi5", "jetson"]


def test_unknown_device_lists_known_and_suggests(tmp_path):
    fleet = load_fleet(write(tmp_path, FLEET))
    with pytest.raises(SelectionError) as error:
        fleet.select("pixel9")
    message = str(error.value)
    assert "unknown device 'pixel9'" in message
    assert "local, pixel8, rpi5, jetson" in message
    assert "Did you mean 'pixel8'?" in message


def test_unknown_tag_lists_known_tags(tmp_path):
    fleet = load_fleet(write(tmp_path, FLEET))
    with pytest.raises(
        SelectionError,
        match=r"no device .* has tag 'ios' \(known tags: android, board, gpu, host, linux, phone\)",
    ):
        fleet.select("tag:ios")


def test_empty_selection_is_an_error(tmp_path):
    with pytest.raises(SelectionError, match="--device is empty"):
        load_fleet(write(tmp_path, FLEET)).select(" , ")


def test_native_tools_take_tool_names_aliases_paths_and_hashed_urls():
    url = "https://artifacts.example.com/ort/onnxruntime_perf_test#sha256=" + "A" * 64
    device = parse_device(
        "pixel8",
        {"kind": "adb", "serial": "X", "native_tools": {"tflite": "/t/bm", "onnxruntime_perf_test": url}},
    )
    assert device.native_tools == {"tflite": "/t/bm", "onnxruntime_perf_test": url}


@pytest.mark.parametrize(
    ("tools", "message"),
    [
        (
            {"onnx": "https://example.com/onnxruntime_perf_test"},
            "field 'native_tools.onnx': a URL must end in #sha256=<64 hex digits> (the tool's hash, checked after "
            "download), got 'https://example.com/onnxruntime_perf_test'",
        ),
        (
            {"benchmark_modle": "/x"},
            "field 'native_tools': unknown tool 'benchmark_modle' (did you mean 'benchmark_model'?)",
        ),
        (
            {"tflite": "/a", "benchmark_model": "/b"},
            "field 'native_tools': 'tflite' and 'benchmark_model' name the same tool; keep one",
        ),
        ({"run_model": " "}, "field 'native_tools.run_model' is empty; give a host path or 'URL#sha256=HEX'"),
    ],
)
def test_native_tools_errors_name_the_field_and_the_fix(tools, message):
    with pytest.raises(ConfigError) as failed:
        parse_device("pixel8", {"kind": "adb", "serial": "X", "native_tools": tools})
    assert str(failed.value) == f"devices.yaml: device 'pixel8': {message}"


# -- threads and cpus ------------------------------------------------------------------------------


def test_threads_default_to_one_explicit_thread_and_cpus_to_unpinned():
    device = parse_device("board", {"kind": "local"})
    assert (device.threads, device.cpus) == (1, None)


@pytest.mark.parametrize(
    ("given", "expected"),
    [([4, 5, 6, 7], (4, 5, 6, 7)), ("4-7", (4, 5, 6, 7)), ("0,2-3", (0, 2, 3)), (5, (5,)), ([7, 6], (6, 7))],
)
def test_cpus_take_a_list_a_range_string_or_one_cpu(given, expected):
    device = parse_device("phone", {"kind": "adb", "serial": "X", "cpus": given})
    assert device.cpus == expected


def test_cpus_load_from_yaml_with_threads(tmp_path):
    fleet = load_fleet(
        write(
            tmp_path, 'devices:\n  pixel8:\n    kind: adb\n    serial: S\n    cpus: "4-7"\n    threads: 4\n'
        )
    )
    assert (fleet["pixel8"].cpus, fleet["pixel8"].threads) == ((4, 5, 6, 7), 4)


@pytest.mark.parametrize(
    ("given", "message"),
    [
        ([4, 5, 5], "field 'cpus': cpu 5 listed more than once (got [4, 5, 5])"),
        ([-1, 2], "field 'cpus': -1 is not a cpu number (an integer >= 0) (got [-1, 2])"),
        ("-1", "field 'cpus': '-1' is not a cpu number or range such as 4 or 4-7 (cpus are >= 0)"),
        ("7-4", "field 'cpus': range '7-4' runs backwards (got '7-4')"),
        ("4-7,6", "field 'cpus': cpu 6 listed more than once (got '4-7,6')"),
        ([], "field 'cpus': the cpu list is empty (got [])"),
        ("4,,5", "field 'cpus': empty item in cpu list '4,,5'"),
        ([True], "field 'cpus': True is not a cpu number"),
        (
            {"big": [4, 5]},
            "field 'cpus': must be a list of cpu numbers such as [4, 5, 6, 7] or a range string",
        ),
    ],
)
def test_bad_cpus_name_the_device_the_field_and_the_problem(given, message):
    with pytest.raises(ConfigError) as error:
        parse_device("pixel8", {"kind": "adb", "serial": "X", "cpus": given})
    assert str(error.value).startswith(f"devices.yaml: device 'pixel8': {message}")
    assert "\n" not in str(error.value) and "Value error" not in str(error.value)


@pytest.mark.parametrize("threads", [0, -2])
def test_zero_threads_the_runtimes_own_default_is_refused_with_the_fix(threads):
    with pytest.raises(ConfigError) as error:
        parse_device("rpi5", {"kind": "local", "threads": threads})
    message = str(error.value)
    assert message.startswith(
        f"devices.yaml: device 'rpi5': field 'threads': must be a thread count >= 1 (got {threads})"
    )
    assert "Use 1 (the default) or the number of cores in cpus" in message


def test_more_threads_than_cpus_is_refused():
    with pytest.raises(ConfigError) as error:
        parse_device("pixel8", {"kind": "adb", "serial": "X", "cpus": "6-7", "threads": 4})
    assert str(error.value) == (
        "devices.yaml: device 'pixel8': threads (4) is more than the 2 cpus it may run on (6-7): "
        "threads would share cores; lower threads or add cpus"
    )


def test_a_labgrid_place_is_a_device_with_its_own_fields_and_no_edgelab_lease(tmp_path):
    path = write(
        tmp_path,
        "devices:\n"
        "  bench3: {kind: labgrid, coordinator: 'lab.example:20408', place: rpi5-bench3, "
        "key_file: ~/.ssh/lab, python: /usr/bin/python3, tags: [board]}\n",
    )
    bench = load_fleet(path)["bench3"]
    assert isinstance(bench, LabgridDevice)
    assert (bench.coordinator, bench.place, bench.user, bench.resource) == (
        "lab.example:20408",
        "rpi5-bench3",
        None,
        None,
    )
    assert bench.workdir == ""  # a board or a phone: known once the place is acquired
    assert not bench.leased_by_edgelab and parse_device("local", {"kind": "local"}).leased_by_edgelab
    board = bench.over_ssh("10.0.0.5", 22, "pi")
    assert (board.kind, board.name, board.key_file, board.python, board.tags) == (
        "ssh",
        "bench3",
        "~/.ssh/lab",
        "/usr/bin/python3",
        ("board",),
    )


def test_a_labgrid_place_needs_its_coordinator_and_names_unknown_fields(tmp_path):
    with pytest.raises(
        ConfigError, match="device 'bench3': field 'coordinator' is required for kind labgrid"
    ):
        load_fleet(write(tmp_path, "devices:\n  bench3: {kind: labgrid, place: p}\n"))
    with pytest.raises(
        ConfigError, match=r"unknown field 'plac' for kind labgrid \(did you mean 'place'\?\)"
    ):
        load_fleet(write(tmp_path, "devices:\n  bench3: {kind: labgrid, coordinator: c, plac: p}\n"))
