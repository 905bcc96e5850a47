"""devices.yaml as an attacker or an unlucky user writes it: alias bombs, huge files, duplicate
and unselectable names, non-string keys, non-UTF-8 files and directories. Each is refused with
one line naming the file (and the device and field where there is one), never a traceback."""

from __future__ import annotations

import contextlib
import subprocess
import sys
import time
import tracemalloc
from pathlib import Path

import pytest
import yaml

from harness import yamlfile
from harness.config import DEVICES_FILE_LIMITS, MAX_DEVICES, load_fleet
from harness.errors import ConfigError

NO_LAB = "/nonexistent/lab-devices.yaml"


def bomb(levels: int = 9) -> str:
    """The 9^9 'billion laughs' inside a device entry (365 bytes)."""
    body, previous = ["a: &a [l,l,l,l,l,l,l,l,l]"], "a"
    for level in "bcdefghi"[: levels - 1]:
        body.append(f"{level}: &{level} [" + ",".join(f"*{previous}" for _ in range(9)) + "]")
        previous = level
    return "devices:\n b:\n  kind: local\n  labels:\n" + "".join(f"   {line}\n" for line in body)


def write(tmp_path: Path, text: str | bytes, name: str = "devices.yaml") -> Path:
    path = tmp_path / name
    if isinstance(text, bytes):
        path.write_bytes(text)
    else:
        path.write_text(text, encoding="utf-8")
    return path


def refused(path: Path) -> str:
    with pytest.raises(ConfigError) as caught:
        load_fleet(path, lab_file=NO_LAB)
    message = str(caught.value)
    assert str(path) in message
    assert "\n" not in message
    return message


def test_the_alias_bomb_is_refused_without_expanding_it(tmp_path):
    path = write(tmp_path, bomb())
    assert len(path.read_bytes()) < 400
    tracemalloc.start()
    try:
        message = refused(path)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert "more than 200000 values" in message and "line 10" in message
    assert "lol" not in message and "'l', 'l'" not in message  # the message expands nothing
    assert peak < 5 << 20  # the expansion would be 387 million strings


def test_aliases_that_stay_small_still_work(tmp_path):
    text = """
devices:
  a: &board {kind: ssh, host: a.lab, user: pi, tags: &tags [linux, board]}
  b: {<<: *board, host: b.lab}
  c: {kind: ssh, host: c.lab, user: pi, tags: *tags}
"""
    fleet = load_fleet(write(tmp_path, text), lab_file=NO_LAB)
    assert [fleet[n].host for n in ("a", "b", "c")] == ["a.lab", "b.lab", "c.lab"]  # type: ignore[union-attr]
    assert fleet["c"].tags == ("linux", "board")


def test_a_recursive_anchor_is_refused(tmp_path):
    message = refused(write(tmp_path, "devices:\n  a: {kind: local, tags: &t [x, *t]}\n"))
    assert "recursive" in message


def test_a_file_over_the_size_limit_is_refused_before_it_is_read(tmp_path):
    path = tmp_path / "devices.yaml"
    with path.open("wb") as handle:
        handle.truncate(DEVICES_FILE_LIMITS.max_bytes + 1)  # sparse: nothing to read, only the size
    assert "more than the 4.0 MB" in refused(path)


def test_more_devices_than_the_limit_are_refused(tmp_path):
    lines = ["devices:"] + [f"  d{i}: {{kind: local}}" for i in range(MAX_DEVICES + 1)]
    message = refused(write(tmp_path, "\n".join(lines)))
    assert f"{MAX_DEVICES + 1} devices" in message and "--devices-file" in message


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("devices:\n  pi: {kind: local}\n  pi: {kind: local, threads: 2}\n", "key 'pi' under 'devices' is given twice (first at line 2)"),
        ("devices:\n  pi:\n    kind: local\n    threads: 1\n    threads: 2\n", "key 'threads' under 'pi' is given twice"),
        ("devices:\n  local: {kind: ssh, host: h, user: u}\n", "device 'local': field 'kind' must be local (got 'ssh')"),
        ("devices:\n  1: {kind: local}\n", "device name 1 is not a string"),
        ("devices:\n  null: {kind: local}\n", "device name None is not a string"),
        ("devices:\n  true: {kind: local}\n", "device name True is not a string"),
        ("devices:\n  yes: {kind: local}\n", "device name True is not a string"),
        ("devices:\n  'a,b': {kind: local}\n", "contains ','"),
        ("devices:\n  all: {kind: local}\n", "is 'all'"),
        ("devices:\n  'tag:x': {kind: local}\n", "starts with 'tag:'"),
        ("devices:\n  ' pi': {kind: local}\n", "white space"),
        ("devices:\n  \"p\\ni\": {kind: local}\n", "control characters"),
        ("devices:\n  pi: {kind: local, 7: x}\n", "device 'pi': field name 7 is not a string"),
        ("devices:\n  pi: {kind: local, workdir: \"/tmp/a\\nb\"}\n", "device 'pi': field 'workdir': "),
        ("devices:\n  pi: {kind: ssh, host: h, user: u, python: \"py\\x00\"}\n", "field 'python'"),
    ],
)
def test_what_devices_yaml_refuses(tmp_path, text, expected):
    assert expected in refused(write(tmp_path, text))


def test_non_utf8_file_is_refused_with_its_name_and_line(tmp_path):
    message = refused(write(tmp_path, b"devices:\n  caf\xe9: {kind: local}\n"))
    assert "line 2: not UTF-8 text (byte 0xe9" in message


def test_a_directory_is_refused_with_its_name(tmp_path):
    folder = tmp_path / "fleet"
    folder.mkdir()
    assert "is a directory" in refused(folder)


def test_the_cli_says_one_line_without_a_traceback(tmp_path):
    for path in (write(tmp_path, b"devices:\n  \xff: {}\n"), tmp_path, write(tmp_path, bomb(), "bomb.yaml")):
        completed = subprocess.run(
            [sys.executable, "-m", "harness.cli", "--devices-file", str(path), "devices"],
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )
        assert completed.returncode == 1
        assert completed.stderr.startswith(f"edgelab: error: {path}")
        assert completed.stderr.count("\n") == 1 and "Traceback" not in completed.stderr


@pytest.mark.parametrize("case", ["non-utf8", "directory", "bomb", "duplicate"])
def test_pytest_gives_a_usage_error_never_an_internal_error(pytester, case):
    path = {
        "non-utf8": lambda: write(pytester.path, b"devices:\n  \xff: {kind: local}\n"),
        "directory": lambda: pytester.mkdir("fleet"),
        "bomb": lambda: write(pytester.path, bomb()),
        "duplicate": lambda: write(pytester.path, "devices:\n  a: {kind: local}\n  a: {kind: local}\n"),
    }[case]()
    pytester.makepyfile("def test_nothing():\n    pass\n")
    result = pytester.runpytest_subprocess(f"--devices-file={path}", "-p", "no:cacheprovider")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    errors = "\n".join(result.errlines)
    assert f"edgelab: {path}" in errors
    assert "INTERNALERROR" not in errors and "Traceback" not in errors


def test_the_bomb_costs_a_fraction_of_loading_a_normal_fleet_in_memory(tmp_path):
    """The refusal's peak memory is about that of reading a small fleet (no expansion)."""
    small = write(tmp_path, "devices:\n  pi: {kind: local, labels: {a: b}}\n", "small.yaml")
    hostile = write(tmp_path, bomb(), "bomb.yaml")
    peaks = {}
    for name, path in (("small", small), ("bomb", hostile)):
        tracemalloc.start()
        try:
            with contextlib.suppress(ConfigError):
                load_fleet(path, lab_file=NO_LAB)
            peaks[name] = tracemalloc.get_traced_memory()[1]
        finally:
            tracemalloc.stop()
    assert peaks["bomb"] < 4 * peaks["small"]


def test_loads_bounds_text_given_directly():
    limits = yamlfile.Limits(max_bytes=64, max_values=10)
    with pytest.raises(ConfigError, match="models.yaml: more than the 64 bytes"):
        yamlfile.loads("x: " + "a" * 100, "models.yaml", limits)
    with pytest.raises(ConfigError, match="models.yaml: line 1: more than 10 values"):
        yamlfile.loads("[a, b, c, d, e, f, g, h, i, j, k]", "models.yaml", limits)
    assert yamlfile.loads("[a, b]", "models.yaml", limits) == ["a", "b"]
    assert yamlfile.loads("", "models.yaml", limits) is None


def test_nesting_deeper_than_libyaml_allows_is_a_config_error():
    limits = yamlfile.Limits(max_bytes=1 << 20, max_values=1 << 20)
    with pytest.raises(ConfigError, match="not valid YAML"):
        yamlfile.loads("[" * 5000 + "]" * 5000, "deep.yaml", limits)


def test_the_pure_python_parser_is_bounded_the_same_way(monkeypatch):
    """Where PyYAML has no libyaml, the same limits hold (and deep nesting is a ConfigError)."""
    monkeypatch.setattr(yamlfile, "_BaseLoader", yaml.SafeLoader)
    limits = yamlfile.Limits(max_bytes=1 << 20, max_values=200_000)
    with pytest.raises(ConfigError, match="more than 200000 values"):
        yamlfile.loads(bomb(), "devices.yaml", limits)
    with pytest.raises(ConfigError, match="deep.yaml: "):
        yamlfile.loads("[" * 3000 + "]" * 3000, "deep.yaml", limits)


def test_the_refusal_of_the_bomb_takes_less_than_reading_the_real_fleet_file_ten_times(tmp_path):
    """Time as a ratio within one run (no wall-clock bound): the bomb costs about what a
    small valid file does, not the minutes its expansion would."""
    real = Path(__file__).resolve().parents[2] / "devices.yaml"
    hostile = write(tmp_path, bomb(), "bomb.yaml")

    def cost(path: Path) -> float:
        started = time.perf_counter()
        for _ in range(5):
            with contextlib.suppress(ConfigError):
                load_fleet(path, lab_file=NO_LAB)
        return time.perf_counter() - started

    cost(real)  # warm the imports
    assert cost(hostile) < 10 * cost(real)


def test_a_file_of_many_tiny_values_is_refused_from_the_parser_events(tmp_path):
    """Under the size limit, a million one-letter values: counted event by event, stopping at the
    limit, without building a node for each (that took minutes and 0.9 GB)."""
    path = write(tmp_path, "devices: [" + "a," * 1_000_000 + "]\n")
    assert f"more than {DEVICES_FILE_LIMITS.max_values} values" in refused(path)
    text = path.read_text()
    tracemalloc.start()
    try:
        with pytest.raises(ConfigError, match="line 1: more than 1000 values"):
            yamlfile.loads(text, "devices.yaml", yamlfile.Limits(max_bytes=4 << 20, max_values=1000))
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 2 * len(text) + (1 << 20)  # the text's copies, no node per value
