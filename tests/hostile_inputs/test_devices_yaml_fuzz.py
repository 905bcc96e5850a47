"""Fuzzed devices.yaml: random documents and mutations of real ones. Loading either gives a Fleet
or raises ConfigError, never another exception, and its traced memory stays within a multiple of
the input's size (an alias bomb or a quadratic path would break the bound)."""

from __future__ import annotations

import tracemalloc
from pathlib import Path

import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from harness.config import Fleet, load_fleet
from harness.errors import ConfigError

ROOT = Path(__file__).resolve().parents[2]
NO_LAB = "/nonexistent/lab-devices.yaml"
# Peak traced memory of one load: this many times the input, plus the fixed cost of a fleet.
MEMORY_PER_INPUT_BYTE = 200
MEMORY_FIXED = 8 << 20

LAB_FLEET = """devices:
  virtual-pixel8:
    kind: adb
    serial: 127.0.0.1:40123
    adb_port: 40037
    workdir: /data/local/tmp/edgelab
    python: /data/local/tmp/edgelab/python/bin/python3
    tags: [virtual, android]
    virtual: true
    labels: {profile: pixel8}
  virtual-rpi5:
    kind: ssh
    host: 127.0.0.1
    port: 40022
    user: edgelab
    key_file: /tmp/lab/id_ed25519
    known_hosts: /tmp/lab/known_hosts
    tags: [virtual, linux]
    virtual: true
    warm_agent: false
    energy: none
    cooldown_below_c: 50.0
    native_tools: {tflite: /tmp/benchmark_model}
"""
REAL_DOCUMENTS = [(ROOT / "devices.yaml").read_text(encoding="utf-8"), LAB_FLEET]

# What turns a fleet file hostile: anchors and aliases, merges, tags, flow, odd scalars and bytes.
PIECES = [
    "&a ",
    "*a",
    "&b [*a, *a, *a, *a]",
    "<<: *a",
    "!!python/object:os.system ",
    "!!binary ",
    "? ",
    ": ",
    "- ",
    "{",
    "}",
    "[",
    "]",
    ",",
    "\n",
    "\n  ",
    "\t",
    "'",
    '"',
    "#",
    "---\n",
    "...\n",
    "%YAML 1.1\n",
    "null",
    "true",
    "1",
    "1e400",
    "local",
    "all",
    "tag:x",
    "kind: ssh",
    "kind: adb",
    "workdir: ",
    "\x00",
    "\xff",
    "\u2028",
    "~",
]

scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-(2**70), 2**70),
    st.floats(allow_nan=True),
    st.text(max_size=20),
)
values = st.recursive(
    scalars,
    lambda children: (
        st.lists(children, max_size=5) | st.dictionaries(st.text(max_size=10), children, max_size=5)
    ),
    max_leaves=30,
)
device_fields = st.dictionaries(
    st.sampled_from(
        [
            "kind",
            "host",
            "user",
            "serial",
            "port",
            "tags",
            "labels",
            "workdir",
            "python",
            "threads",
            "warm_agent",
            "runner",
            "energy",
            "noise_floor",
            "cache_max_mb",
            "native_tools",
            "name",
            "bogus",
        ]
    ),
    st.one_of(st.sampled_from(["local", "ssh", "adb", "agent", "native", "auto"]), values),
    max_size=8,
)
documents = st.one_of(
    st.dictionaries(st.sampled_from(["devices", "device", "x"]), values, max_size=2),
    st.fixed_dictionaries(
        {"devices": st.dictionaries(st.one_of(st.text(max_size=12), scalars), device_fields, max_size=6)}
    ),
    values,
)


def load_within_bounds(tmp_path: Path, data: bytes) -> None:
    path = tmp_path / "devices.yaml"
    path.write_bytes(data)
    tracemalloc.start()
    try:
        try:
            fleet = load_fleet(path, lab_file=NO_LAB)
        except ConfigError as exc:
            assert str(path) in str(exc)
        else:
            assert isinstance(fleet, Fleet) and "local" in fleet
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak <= MEMORY_FIXED + MEMORY_PER_INPUT_BYTE * len(data), (peak, len(data))


FUZZ = settings(
    max_examples=150,
    deadline=None,  # the machine is shared: no wall-clock bound, memory is the bound
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)


@FUZZ
@given(document=documents)
def test_random_documents(tmp_path, document):
    load_within_bounds(tmp_path, yaml.safe_dump(document, allow_unicode=True).encode("utf-8"))


def edits_of(pieces: list[str]) -> st.SearchStrategy[list[tuple[float, str, str]]]:
    """Up to 8 edits of a document: where (a fraction of its length), what, and which piece."""
    return st.lists(
        st.tuples(
            st.floats(0, 1),
            st.sampled_from(["insert", "delete", "replace", "repeat"]),
            st.sampled_from(pieces),
        ),
        min_size=1,
        max_size=8,
    )


def mutate(text: str, edits: list[tuple[float, str, str]]) -> bytes:
    for where, action, piece in edits:
        at = int(where * len(text))
        if action == "insert":
            text = text[:at] + piece + text[at:]
        elif action == "delete":
            text = text[:at] + text[at + len(piece) :]
        elif action == "replace":
            text = text[:at] + piece + text[at + len(piece) :]
        else:  # a slice written again: duplicate keys, entries and anchors
            line_start = text.rfind("\n", 0, at) + 1
            text = text[:line_start] + text[line_start:at] * 2 + text[at:]
    return text.encode("utf-8", errors="surrogatepass")


@FUZZ
@given(base=st.sampled_from(REAL_DOCUMENTS), edits=edits_of(PIECES))
def test_mutated_real_documents(tmp_path, base, edits):
    load_within_bounds(tmp_path, mutate(base, edits))


@FUZZ
@given(data=st.binary(max_size=400))
def test_random_bytes(tmp_path, data):
    load_within_bounds(tmp_path, data)


def test_the_bomb_and_its_mutations_stay_bounded(tmp_path):
    from tests.hostile_inputs.test_devices_yaml import bomb

    for levels in range(2, 10):
        load_within_bounds(tmp_path, bomb(levels).encode())
