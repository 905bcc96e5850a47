"""The runtimes' device tools: ABI mapping, configured paths, fetch-and-pin from a local server,
the `edgelab tools` command."""

from __future__ import annotations

import hashlib
import importlib.metadata
import json
import os
import platform

import pytest

from harness import download as download_module
from harness import native_tools
from harness.cli import main
from harness.config import NATIVE_TOOL_ALIASES, NATIVE_TOOL_KEYS
from harness.errors import ConfigError, DownloadError, HostOffline, ParseError
from harness.native_tools import (
    device_abi,
    device_tools,
    litert_platform,
    parse_abi_probe,
    resolve,
    resolve_tool,
)
from harness.transport.local import LocalTransport
from tests.fixtures.http_server import closed_port

VERSION = "2.3.0"
BENCHMARK = b"\x7fELF benchmark_model for arm64 " + os.urandom(200_000)
RUN_MODEL = b"\x7fELF run_model " + os.urandom(50_000)
LIBLITERT = b"\x7fELF libLiteRt.so " + os.urandom(80_000)
X86_BENCHMARK = b"\x7fELF benchmark_model for x86_64 " + os.urandom(90_000)


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


@pytest.fixture
def litert_mirror(file_server):
    """A local server laid out as LiteRT's binaries location: <base>/<version>/<platform>/<tool>."""
    file_server.files.update(
        {
            f"/litert/{VERSION}/android_arm64/benchmark_model": BENCHMARK,
            f"/litert/{VERSION}/android_arm64/run_model": RUN_MODEL,
            f"/litert/{VERSION}/android_arm64/libLiteRt.so": LIBLITERT,
            f"/litert/{VERSION}/linux_x86_64/benchmark_model": X86_BENCHMARK,
        }
    )
    return file_server


@pytest.fixture
def cache(tmp_path, monkeypatch):
    root = tmp_path / "cache"
    monkeypatch.setenv("EDGELAB_CACHE", str(root))
    monkeypatch.delenv(native_tools.BASE_URL_ENV, raising=False)
    monkeypatch.setattr(download_module, "RETRY_PAUSE_S", 0.0)
    return root


# -- the device's ABI -> LiteRT's folder ---------------------------------------------------------


@pytest.mark.parametrize(
    ("abi", "system", "expected"),
    [
        ("arm64-v8a", None, "android_arm64"),
        ("arm64-v8a", "android", "android_arm64"),
        ("aarch64", None, "linux_arm64"),
        ("arm64", "linux", "linux_arm64"),
        ("x86_64", None, "linux_x86_64"),
        ("x86_64", "linux", "linux_x86_64"),
        ("amd64", None, "linux_x86_64"),
        (" aarch64\n", None, "linux_arm64"),
        ("android_arm64", None, "android_arm64"),
        ("linux_x86_64", "android", "linux_x86_64"),
    ],
)
def test_litert_platform_maps_getprop_and_uname_names(abi, system, expected):
    assert litert_platform(abi, system) == expected


@pytest.mark.parametrize(
    ("abi", "system", "described"),
    [
        ("armeabi-v7a", None, "the android ABI 'armeabi-v7a'"),
        ("x86", None, "the android ABI 'x86'"),
        ("x86_64", "android", "the android ABI 'x86_64'"),  # an emulator: the Linux build would not run
        ("armv7l", None, "the linux ABI 'armv7l'"),
        ("riscv64", "linux", "the linux ABI 'riscv64'"),
    ],
)
def test_an_abi_without_a_litert_build_says_what_to_set(abi, system, described):
    with pytest.raises(ConfigError) as failed:
        litert_platform(abi, system, device="pixel2")
    assert str(failed.value) == (
        f"device 'pixel2': LiteRT publishes no tools for {described} (only android_arm64, linux_arm64, "
        "linux_x86_64); build benchmark_model for it and set native_tools: {benchmark_model: PATH} for the "
        "device in devices.yaml"
    )


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("android arm64-v8a\n", ("android", "arm64-v8a")),
        ("linux aarch64\n", ("linux", "aarch64")),
        ("WARNING: linker: something\nandroid x86_64\n", ("android", "x86_64")),
    ],
)
def test_parse_abi_probe(text, expected):
    assert parse_abi_probe(text) == expected


@pytest.mark.parametrize("text", ["", "sh: getprop: not found\n", "android \n", "linux x86 64\n"])
def test_parse_abi_probe_refuses_what_it_does_not_know(text):
    with pytest.raises(ParseError) as failed:
        parse_abi_probe(text, device="rpi5")
    assert str(failed.value) == f"abi: device 'rpi5': unexpected answer to the ABI probe: {text!r}"


def test_device_abi_of_the_host_is_its_uname():
    assert device_abi(LocalTransport("local")) == ("linux", platform.machine())


def test_device_tools_per_platform():
    assert device_tools("android_arm64", {}) == ["benchmark_model", "run_model", "libLiteRt.so"]
    assert device_tools("linux_x86_64", {"onnx": "/x"}) == ["benchmark_model", "onnxruntime_perf_test"]
    assert device_tools(None, {"benchmark_model": "/x"}) == ["benchmark_model"]


def test_devices_yaml_accepts_every_tool_name_and_alias():
    assert set(native_tools.TOOLS) | set(NATIVE_TOOL_ALIASES) == set(NATIVE_TOOL_KEYS)


def test_the_default_location_is_litert_clis(monkeypatch):
    monkeypatch.delenv(native_tools.BASE_URL_ENV, raising=False)
    url = native_tools.litert_url(
        "benchmark_model", "android_arm64", version=VERSION, base_url=native_tools.litert_base_url()
    )
    assert url == "https://storage.googleapis.com/litert/binaries/2.3.0/android_arm64/benchmark_model"
    assert native_tools.litert_version() == importlib.metadata.version("ai-edge-litert")


# -- resolve_tool ---------------------------------------------------------------------------------


def test_a_configured_path_wins_and_asks_no_server(tmp_path, cache):
    tool = tmp_path / "benchmark_model"
    tool.write_bytes(BENCHMARK)
    offline = f"http://127.0.0.1:{closed_port()}"
    for key in ("benchmark_model", "tflite"):
        found = resolve_tool(
            "benchmark_model", "arm64-v8a", {key: str(tool)}, base_url=offline, version=VERSION
        )
        assert found == tool
    assert not cache.exists()


def test_a_configured_path_that_is_missing_names_the_field(tmp_path, cache):
    with pytest.raises(ConfigError) as failed:
        resolve_tool("benchmark_model", "arm64-v8a", {"tflite": str(tmp_path / "nope")}, device="pixel8")
    assert str(failed.value) == (
        f"device 'pixel8': native_tools.tflite: {tmp_path / 'nope'} does not exist; fix the path in "
        "devices.yaml or remove it to use LiteRT's build"
    )


def test_litert_tool_is_fetched_pinned_and_then_served_from_the_cache(litert_mirror, cache):
    base = litert_mirror.url("/litert")
    first = resolve("benchmark_model", "arm64-v8a", {}, base_url=base, version=VERSION, device="pixel8")
    assert first.path == cache / "tools" / sha(BENCHMARK) / "benchmark_model"
    assert (first.origin, first.fetched, first.path.read_bytes() == BENCHMARK) == ("litert", True, True)
    assert [seen.path for seen in litert_mirror.seen] == [f"/litert/{VERSION}/android_arm64/benchmark_model"]
    pins = json.loads((cache / "tools" / "pins.json").read_text())["pins"]
    assert pins[f"{base}/{VERSION}/android_arm64/benchmark_model"]["sha256"] == sha(BENCHMARK)

    again = resolve_tool("benchmark_model", "arm64-v8a", {}, base_url=base, version=VERSION)
    assert again == first.path
    assert len(litert_mirror.seen) == 1  # pinned and cached: no request

    # the mirror's file changes; a fresh cache (same pins) refuses it
    litert_mirror.files[f"/litert/{VERSION}/android_arm64/benchmark_model"] = b"something else"
    first.path.unlink()
    with pytest.raises(DownloadError) as failed:
        resolve_tool("benchmark_model", "arm64-v8a", {}, base_url=base, version=VERSION)
    assert f"expected {sha(BENCHMARK)}, got {sha(b'something else')}" in str(failed.value)
    assert "changed since it was pinned" in str(failed.value)


def test_the_host_abi_gets_the_linux_build(litert_mirror, cache):
    found = resolve_tool(
        "benchmark_model",
        "x86_64",
        {},
        system="linux",
        base_url=litert_mirror.url("/litert"),
        version=VERSION,
    )
    assert found.read_bytes() == X86_BENCHMARK


def test_run_model_exists_only_for_android_arm64(litert_mirror, cache):
    with pytest.raises(ConfigError) as failed:
        resolve_tool(
            "run_model", "aarch64", {}, base_url=litert_mirror.url("/litert"), version=VERSION, device="rpi5"
        )
    assert str(failed.value) == (
        "device 'rpi5': LiteRT publishes run_model for android_arm64 only, not linux_arm64; build it for the "
        "device and set native_tools: {run_model: PATH} in devices.yaml"
    )
    assert litert_mirror.seen == []


def test_an_offline_host_says_how_to_run_an_offline_lab(cache):
    base = f"http://127.0.0.1:{closed_port()}/litert"
    with pytest.raises(HostOffline) as failed:
        resolve_tool("benchmark_model", "arm64-v8a", {}, base_url=base, version=VERSION, device="pixel8")
    assert str(failed.value) == (
        f"{base}/{VERSION}/android_arm64/benchmark_model: host is offline or the URL is unreachable: "
        "connection refused; set native_tools: {benchmark_model: PATH} for device 'pixel8' in devices.yaml "
        "for an offline lab, or point --base-url ($EDGELAB_LITERT_BASE_URL) at a mirror"
    )


def test_the_base_url_comes_from_the_environment(litert_mirror, cache, monkeypatch):
    monkeypatch.setenv(native_tools.BASE_URL_ENV, litert_mirror.url("/litert") + "/")
    assert resolve_tool("libLiteRt.so", "arm64-v8a", {}, version=VERSION).read_bytes() == LIBLITERT


def test_onnxruntime_perf_test_unconfigured_names_the_field(cache):
    with pytest.raises(ConfigError) as failed:
        resolve_tool("onnxruntime_perf_test", "arm64-v8a", {}, device="pixel8")
    assert str(failed.value) == (
        "device 'pixel8': no onnxruntime_perf_test: ONNX Runtime publishes no prebuilt onnxruntime_perf_test "
        "for devices; build it for ABI arm64-v8a (docs/native-tools.md) and set native_tools: "
        "{onnxruntime_perf_test: PATH} or {onnxruntime_perf_test: 'URL#sha256=HEX'} for the device in "
        "devices.yaml"
    )


def test_onnxruntime_perf_test_from_a_team_url_is_checked_by_its_hash(file_server, cache):
    tool = b"\x7fELF onnxruntime_perf_test " + os.urandom(30_000)
    file_server.files["/ort/onnxruntime_perf_test"] = tool
    url = file_server.url("/ort/onnxruntime_perf_test")
    found = resolve_tool("onnxruntime_perf_test", "arm64-v8a", {"onnx": f"{url}#sha256={sha(tool)}"})
    assert found == cache / "tools" / sha(tool) / "onnxruntime_perf_test"
    assert found.read_bytes() == tool

    wrong = "0" * 64
    with pytest.raises(DownloadError) as failed:
        resolve_tool("onnxruntime_perf_test", "arm64-v8a", {"onnxruntime_perf_test": f"{url}#sha256={wrong}"})
    assert str(failed.value).startswith(f"{url}: sha256 mismatch: expected {wrong}, got {sha(tool)}; ")
    assert not (cache / "tools" / wrong / "onnxruntime_perf_test").exists()


def test_an_unknown_tool_lists_the_known_ones():
    with pytest.raises(ConfigError) as failed:
        resolve_tool("perf_test", "arm64-v8a", {})
    assert str(failed.value) == (
        "unknown native tool 'perf_test' (known: benchmark_model, run_model, libLiteRt.so, onnxruntime_perf_test)"
    )


# -- edgelab tools --------------------------------------------------------------------------------


def fleet_file(tmp_path, body: str = "") -> str:
    path = tmp_path / "devices.yaml"
    path.write_text("devices:\n" + (body or "  local: {kind: local}\n"))
    return str(path)


def test_tools_list_then_fetch_then_list(litert_mirror, cache, tmp_path, capsys):
    devices = fleet_file(tmp_path)
    base = litert_mirror.url("/litert")
    common = ["--abi", "arm64-v8a", "--base-url", base, "--litert-version", VERSION]
    assert main(["--devices-file", devices, "tools", "list", *common]) == 0
    before = capsys.readouterr().out.splitlines()
    assert before[0].split() == ["benchmark_model", "android_arm64", "not", "fetched"]
    assert before[1] == f"  source  {base}/{VERSION}/android_arm64/benchmark_model"
    assert before[2] == "  sha256  not pinned yet (the first fetch pins it)"
    assert [line.split()[0] for line in before if not line.startswith(" ")] == [
        "benchmark_model",
        "run_model",
        "libLiteRt.so",
    ]

    assert main(["--devices-file", devices, "tools", "fetch", *common]) == 0
    fetched = capsys.readouterr().out.splitlines()
    assert [line.split()[:3] for line in fetched] == [
        ["benchmark_model", "android_arm64", "fetched"],
        ["run_model", "android_arm64", "fetched"],
        ["libLiteRt.so", "android_arm64", "fetched"],
    ]
    assert fetched[0].split()[3] == str(cache / "tools" / sha(BENCHMARK) / "benchmark_model")

    assert main(["--devices-file", devices, "tools", "list", *common]) == 0
    after = capsys.readouterr().out.splitlines()
    assert after[0].split() == ["benchmark_model", "android_arm64", "cached"]
    assert after[2].startswith(f"  sha256  {sha(BENCHMARK)} (pinned 20")
    assert after[3] == f"  file    {cache / 'tools' / sha(BENCHMARK) / 'benchmark_model'}"

    assert main(["--devices-file", devices, "tools", "fetch", *common]) == 0
    assert [line.split()[2] for line in capsys.readouterr().out.splitlines()] == ["cached"] * 3


def test_tools_list_shows_the_devices_own_tools(tmp_path, cache, capsys):
    tool = tmp_path / "onnxruntime_perf_test"
    tool.write_bytes(b"perf test")
    url = "https://artifacts.example.com/ort/onnxruntime_perf_test"
    devices = fleet_file(
        tmp_path,
        f"  pixel8: {{kind: adb, serial: X1, native_tools: {{onnx: {tool}, run_model: '{url}#sha256={'a' * 64}'}}}}\n"
        f"  pixel7: {{kind: adb, serial: X2, native_tools: {{tflite: {tmp_path / 'missing'}}}}}\n",
    )
    assert (
        main(
            ["--devices-file", devices, "tools", "list", "--abi", "linux_x86_64", "--litert-version", VERSION]
        )
        == 0
    )
    out = capsys.readouterr().out
    assert (
        f"onnxruntime_perf_test  device pixel8    path\n  source  {tool}\n  sha256  {sha(b'perf test')}\n"
    ) in out
    assert (
        f"run_model              device pixel8    not fetched\n  source  {url}\n  sha256  {'a' * 64}\n" in out
    )
    assert (
        f"benchmark_model        device pixel7    path missing\n  source  {tmp_path / 'missing'}\n"
        "  sha256  - (no file at that path)\n"
    ) in out


def test_tools_fetch_for_a_device_asks_its_abi(litert_mirror, cache, tmp_path, capsys):
    if platform.machine() != "x86_64":
        pytest.skip("the mirror serves the linux_x86_64 build only")
    devices = fleet_file(tmp_path)
    args = ["tools", "fetch", "--device", "local", "--base-url", litert_mirror.url("/litert")]
    assert main(["--devices-file", devices, *args, "--litert-version", VERSION]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert [line.split()[:3] for line in lines] == [["benchmark_model", "local", "fetched"]]
    assert [seen.path for seen in litert_mirror.seen] == [f"/litert/{VERSION}/linux_x86_64/benchmark_model"]


def test_tools_fetch_offline_is_one_line(tmp_path, cache, capsys):
    base = f"http://127.0.0.1:{closed_port()}"
    devices = fleet_file(tmp_path)
    assert (
        main(["--devices-file", devices, "tools", "fetch", "--base-url", base, "--litert-version", VERSION])
        == 1
    )
    err = capsys.readouterr().err
    assert err.count("\n") == 1
    assert err.startswith(
        f"edgelab: error: {base}/{VERSION}/android_arm64/benchmark_model: host is offline or the URL is "
        "unreachable: connection refused; set native_tools: {benchmark_model: PATH} in devices.yaml"
    )


def test_tools_fetch_refuses_an_abi_without_builds(tmp_path, cache, capsys):
    assert main(["--devices-file", fleet_file(tmp_path), "tools", "fetch", "--abi", "armeabi-v7a"]) == 1
    assert "LiteRT publishes no tools for the android ABI 'armeabi-v7a'" in capsys.readouterr().err
