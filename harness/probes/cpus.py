"""Which cores a run may use and what kind they are: cpu lists, affinity masks, core types.

Pure functions and records: the agent (Python) and CPU_REPORT_SCRIPT (POSIX sh, for the native
tools) read sysfs on the device; this module parses and groups what they report.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

# Printed by the native runner's wrapper before it execs the tool (stderr, one line each), so the
# record says where the tool was allowed to run without another round trip. Reads
# /proc/self/status of the wrapper shell: the tool inherits its affinity through exec.
CPU_REPORT_PREFIX = "edgelab-cpu:"
CPU_REPORT_SCRIPT = r"""
p=edgelab-cpu:
while read -r k v; do
  [ "$k" = "Cpus_allowed_list:" ] && echo "$p allowed $v" >&2
done < /proc/self/status
for d in /sys/devices/system/cpu/cpu[0-9]*; do
  [ -d "$d" ] || continue
  c= f=
  { read -r c < "$d/cpu_capacity"; } 2>/dev/null
  { read -r f < "$d/cpufreq/cpuinfo_max_freq"; } 2>/dev/null
  echo "$p core ${d##*/cpu} ${c:--} ${f:--}" >&2
done
exec "$@"
"""


def parse_cpu_list(text: str) -> tuple[int, ...]:
    """The kernel's cpu-list syntax ("0-3,6", as in Cpus_allowed_list) -> sorted cpu numbers.
    Raises ValueError saying what is wrong (negative, reversed range, repeated cpu)."""
    found: list[int] = []
    for part in (piece.strip() for piece in str(text).split(",")):
        if not part:
            raise ValueError(f"empty item in cpu list {text!r}")
        first, dash, last = part.partition("-")
        if not first.strip().isdigit() or (dash and not last.strip().isdigit()):
            raise ValueError(f"{part!r} is not a cpu number or range such as 4 or 4-7 (cpus are >= 0)")
        low = int(first)
        high = int(last) if dash else low
        if high < low:
            raise ValueError(f"range {part!r} runs backwards")
        found.extend(range(low, high + 1))
    return check_cpus(found)


def check_cpus(cpus: Iterable[int]) -> tuple[int, ...]:
    """Non-negative, no repeats, at least one: sorted."""
    values = list(cpus)
    if not values:
        raise ValueError("the cpu list is empty")
    for value in values:
        if isinstance(value, bool) or not isinstance(value, int) or value < 0:
            raise ValueError(f"{value!r} is not a cpu number (an integer >= 0)")
    repeated = sorted({value for value in values if values.count(value) > 1})
    if repeated:
        raise ValueError(f"cpu {format_cpu_list(repeated)} listed more than once")
    return tuple(sorted(values))


def format_cpu_list(cpus: Iterable[int]) -> str:
    """Sorted cpus in the kernel's syntax: (0, 1, 2, 3, 6) -> "0-3,6"."""
    ordered = sorted(set(cpus))
    ranges: list[str] = []
    start = previous = None
    for cpu in [*ordered, None]:
        if cpu is not None and previous is not None and cpu == previous + 1:
            previous = cpu
            continue
        if start is not None and previous is not None:
            ranges.append(str(start) if start == previous else f"{start}-{previous}")
        start = previous = cpu
    return ",".join(ranges)


def affinity_mask(cpus: Iterable[int]) -> str:
    """The hex mask that util-linux and toybox ``taskset`` both take (toybox has no ``-c``)."""
    mask = 0
    for cpu in cpus:
        mask |= 1 << cpu
    return format(mask, "x")


def taskset_prefix(cpus: Sequence[int] | None) -> list[str]:
    """``taskset MASK`` to put in front of a command, or nothing when the run is not pinned."""
    return ["taskset", affinity_mask(cpus)] if cpus else []


@dataclass(frozen=True)
class CoreType:
    """The kind of some of the cores a run was allowed on (big, little, ...)."""

    capacity: int | None  # /sys/devices/system/cpu/cpuN/cpu_capacity (1024 = the biggest)
    max_khz: int | None  # cpufreq/cpuinfo_max_freq


@dataclass(frozen=True)
class CpuPlacement:
    """The thread count and the cores one run was allowed on, and what kind those cores are.
    Cpu lists are in the kernel's syntax ("4-7"), as in ``Cpus_allowed_list``."""

    threads: int
    requested: str | None  # devices.yaml ``cpus:``; None: not pinned by EdgeLab
    pinned_by: str | None  # "sched_setaffinity" (agent), "taskset" (native tools), None
    allowed: str | None  # the inference process's affinity at the end of the run
    allowed_count: int | None = None
    allowed_reason: str | None = None  # why ``allowed`` is None
    core_types: dict[str, CoreType] | None = None  # cpu list -> kind, e.g. {"4-7": big}
    core_types_reason: str | None = None  # why ``core_types`` is None


def placement(
    threads: int,
    *,
    requested: Sequence[int] | None,
    pinned_by: str | None,
    allowed: Sequence[int] | None,
    per_cpu: Mapping[int, tuple[int | None, int | None]],
    allowed_reason: str | None = None,
) -> CpuPlacement:
    """A CpuPlacement from cpu numbers and each cpu's (capacity, max kHz)."""
    wanted = format_cpu_list(requested) if requested else None
    if allowed is None:
        return CpuPlacement(
            threads,
            wanted,
            pinned_by,
            None,
            allowed_reason=allowed_reason or "the device did not report the allowed cpus",
            core_types_reason="the allowed cpus are unknown",
        )
    core_types, reason = group_core_types(allowed, per_cpu)
    return CpuPlacement(
        threads,
        wanted,
        pinned_by,
        format_cpu_list(allowed),
        allowed_count=len(set(allowed)),
        core_types=core_types,
        core_types_reason=reason,
    )


def group_core_types(
    allowed: Sequence[int], per_cpu: Mapping[int, tuple[int | None, int | None]]
) -> tuple[dict[str, CoreType] | None, str | None]:
    """Group the allowed cores by (capacity, max kHz), keyed by their cpu list; (None, reason)
    where sysfs had neither for any of them."""
    if not allowed:
        return None, "no allowed cores were reported"
    kinds: dict[tuple[int | None, int | None], list[int]] = {}
    for cpu in sorted(set(allowed)):
        kinds.setdefault(per_cpu.get(cpu, (None, None)), []).append(cpu)
    if set(kinds) == {(None, None)}:
        return None, (
            f"sysfs has neither cpu_capacity nor cpufreq/cpuinfo_max_freq for cpus {format_cpu_list(allowed)}"
        )
    ordered = sorted(kinds.items(), key=lambda item: item[1])
    return {format_cpu_list(cpus): CoreType(capacity, max_khz) for (capacity, max_khz), cpus in ordered}, None


def _optional_int(text: str) -> int | None:
    return int(text) if text.isdigit() else None


def parse_cpu_report(text: str) -> tuple[tuple[int, ...] | None, dict[int, tuple[int | None, int | None]]]:
    """The ``edgelab-cpu:`` lines of CPU_REPORT_SCRIPT -> (allowed cpus, per-cpu capacity and
    max kHz). Other lines are ignored; a malformed report line is a ValueError."""
    allowed: tuple[int, ...] | None = None
    per_cpu: dict[int, tuple[int | None, int | None]] = {}
    for line in text.splitlines():
        if not line.startswith(CPU_REPORT_PREFIX):
            continue
        fields = line[len(CPU_REPORT_PREFIX) :].split()
        if fields[:1] == ["allowed"] and len(fields) == 2:
            allowed = parse_cpu_list(fields[1])
        elif fields[:1] == ["core"] and len(fields) == 4 and fields[1].isdigit():
            per_cpu[int(fields[1])] = (_optional_int(fields[2]), _optional_int(fields[3]))
        else:
            raise ValueError(f"malformed cpu report line {line!r}")
    return allowed, per_cpu


def strip_cpu_report(text: str) -> str:
    """``text`` without the report lines (what the native tool itself printed)."""
    return "\n".join(line for line in text.splitlines() if not line.startswith(CPU_REPORT_PREFIX))
