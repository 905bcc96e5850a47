"""A device speed reference: a fixed shell arithmetic loop timed on the device, to tell a device
that got slower (heat, load, a governor) from a model that did.

Runs on anything with a POSIX sh (a stock phone's mksh and toybox included): no Python, no file
pushed. It measures the shell's speed on one core, not the runtime's; compare it only with itself
on the same device and shell (both are recorded).
"""

from __future__ import annotations

import statistics
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol

from harness.errors import EdgeLabError


class _Output(Protocol):
    @property
    def exit_code(self) -> int: ...
    @property
    def stdout(self) -> str: ...
    @property
    def stderr(self) -> str: ...


class _Device(Protocol):
    """What the probe needs of a transport (probes sit below harness.transport): a name and a
    command run to completion."""

    @property
    def device(self) -> str: ...
    def run(self, argv: Sequence[str], *, timeout: float) -> _Output: ...


# The workload: ITERATIONS rounds of a 16-bit multiply-add-modulo per repetition, the same
# everywhere. mksh (Android's sh) computes in 32 bits, so every value stays below 2**31; the
# checksum proves the shell did all the work. A repetition took 50-120 ms with mksh and dash on
# this project's shared 2-core x86 host under other users' load (docs/statistics.md).
ITERATIONS = 3000
REPETITIONS = 7
TIMEOUT_S = 60.0

# $1 iterations, $2 repetitions. Clock: $EPOCHREALTIME (mksh R50+, bash 5; microseconds, read
# without a fork) else `date +%s%N` (GNU, toybox; one fork per reading). Prints the shell, the
# clock, then per repetition "rep START END CHECKSUM" with the clock's raw text.
SCRIPT = r"""
n=$1 reps=$2
if [ -n "${KSH_VERSION:-}" ]; then shell=$KSH_VERSION
elif [ -n "${BASH_VERSION:-}" ]; then shell="bash $BASH_VERSION"
else shell=$(readlink /proc/$$/exe 2>/dev/null) || shell=unknown
fi
echo "shell $shell"
if [ -n "${EPOCHREALTIME:-}" ]; then clock=epochrealtime
else
  probe=$(date +%s%N 2>/dev/null)
  case $probe in *[!0-9]*|'') echo "clock none $probe"; exit 3;; esac
  clock=date
fi
echo "clock $clock"
r=0
while [ $r -lt $reps ]; do
  if [ $clock = epochrealtime ]; then t0=$EPOCHREALTIME; else t0=$(date +%s%N); fi
  i=0 s=0
  while [ $i -lt $n ]; do s=$(( (s * 31 + i) % 65521 )); i=$(( i + 1 )); done
  if [ $clock = epochrealtime ]; then t1=$EPOCHREALTIME; else t1=$(date +%s%N); fi
  echo "rep $t0 $t1 $s"
  r=$(( r + 1 ))
done
"""

CLOCKS = {
    "epochrealtime": "$EPOCHREALTIME (shell built-in, microseconds)",
    "date": "date +%s%N (one fork per reading, nanoseconds)",
}


class SpeedReferenceError(EdgeLabError):
    """The speed reference could not be timed on a device (no usable clock, a broken shell)."""


@dataclass(frozen=True)
class SpeedReference:
    """How long the fixed shell workload took on one device, repetition by repetition."""

    device: str
    shell: str  # the interpreter that ran it ($KSH_VERSION, bash version, or its binary)
    clock: str  # which clock timed it (CLOCKS)
    iterations: int
    times_ms: tuple[float, ...]  # one per repetition, in the order they ran
    median_ms: float
    spread: float  # (max - min) / median of the repetitions


def checksum(iterations: int) -> int:
    """What the shell loop must print: the same recurrence in Python."""
    total = 0
    for index in range(iterations):
        total = (total * 31 + index) % 65521
    return total


def _clock_ns(text: str, clock: str) -> int:
    if clock == "date":
        return int(text)
    seconds, _, fraction = text.replace(",", ".").partition(".")  # bash follows the locale
    return int(seconds) * 1_000_000_000 + int((fraction + "000000000")[:9])


def parse_reference(
    device: str, text: str, iterations: int = ITERATIONS, repetitions: int = REPETITIONS
) -> SpeedReference:
    """The script's output -> SpeedReference. Raises SpeedReferenceError naming what was wrong."""
    shell, clock, times = "unknown", None, []
    expected = checksum(iterations)
    for line in text.splitlines():
        key, _, rest = line.strip().partition(" ")
        if key == "shell":
            shell = rest.strip() or "unknown"
        elif key == "clock":
            clock = rest.split()[0] if rest.split() else "none"
            if clock not in CLOCKS:
                raise SpeedReferenceError(
                    f"device '{device}': no clock for the speed reference: the shell has no "
                    f"$EPOCHREALTIME and `date +%s%N` printed {rest.partition(' ')[2]!r} "
                    "(install a date with %N, or run it with mksh or bash 5)"
                )
        elif key == "rep" and clock is not None:
            fields = rest.split()
            try:
                start, end, total = _clock_ns(fields[0], clock), _clock_ns(fields[1], clock), int(fields[2])
            except (IndexError, ValueError):
                raise SpeedReferenceError(
                    f"device '{device}': malformed speed reference line {line!r}"
                ) from None
            if total != expected:
                raise SpeedReferenceError(
                    f"device '{device}': the shell's arithmetic gave checksum {total}, expected {expected}: "
                    f"'{shell}' does not run the reference as written"
                )
            if end <= start:
                raise SpeedReferenceError(
                    f"device '{device}': the clock went backwards during the speed reference ({line!r})"
                )
            times.append((end - start) / 1e6)
    if clock is None or len(times) != repetitions:
        raise SpeedReferenceError(
            f"device '{device}': the speed reference printed {len(times)} of {repetitions} repetitions: "
            f"{text.strip()[-300:]!r}"
        )
    median = statistics.median(times)
    return SpeedReference(
        device=device,
        shell=shell,
        clock=CLOCKS[clock],
        iterations=iterations,
        times_ms=tuple(round(value, 4) for value in times),
        median_ms=round(median, 4),
        spread=round((max(times) - min(times)) / median, 4),
    )


def measure_reference(
    transport: _Device,
    *,
    shell: str = "sh",
    iterations: int = ITERATIONS,
    repetitions: int = REPETITIONS,
    timeout_s: float = TIMEOUT_S,
) -> SpeedReference:
    """Time the reference workload on the device behind ``transport`` with its ``shell``."""
    if iterations < 1 or repetitions < 1:
        raise ValueError("iterations and repetitions must be >= 1")
    result = transport.run(
        [shell, "-c", SCRIPT, "edgelab-reference", str(iterations), str(repetitions)], timeout=timeout_s
    )
    if result.exit_code not in (0, 3):
        raise SpeedReferenceError(
            f"device '{transport.device}': `{shell} -c` exited {result.exit_code} running the speed "
            f"reference: {(result.stderr or result.stdout).strip()[-300:]!r}"
        )
    return parse_reference(transport.device, result.stdout, iterations, repetitions)
