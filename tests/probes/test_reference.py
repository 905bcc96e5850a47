"""The device speed reference, run by real shells: dash (this host's sh, timed with GNU date),
mksh (Android's sh, $EPOCHREALTIME) and bash, on the local transport and through a real sshd."""

from __future__ import annotations

import shutil

import pytest

from harness.probes.reference import (
    CLOCKS,
    ITERATIONS,
    REPETITIONS,
    SpeedReference,
    SpeedReferenceError,
    checksum,
    measure_reference,
    parse_reference,
)
from harness.transport.local import LocalTransport
from harness.transport.ssh import SshTransport


def check(
    reference: SpeedReference,
    clock: str,
    shell_starts: str,
    iterations: int = ITERATIONS,
    repetitions: int = REPETITIONS,
) -> None:
    assert reference.clock == CLOCKS[clock]
    assert reference.shell.startswith(shell_starts)
    assert reference.iterations == iterations and len(reference.times_ms) == repetitions
    assert all(time_ms > 0 for time_ms in reference.times_ms)
    assert min(reference.times_ms) <= reference.median_ms <= max(reference.times_ms)
    assert reference.spread == pytest.approx(
        (max(reference.times_ms) - min(reference.times_ms)) / reference.median_ms, abs=1e-3
    )


@pytest.mark.parametrize(
    ("shell", "clock", "shell_starts"),
    [("sh", "date", "/"), ("mksh", "epochrealtime", "@(#)MIRBSD KSH"), ("bash", "epochrealtime", "bash 5")],
)
def test_the_reference_runs_on_each_shell_with_its_clock(shell, clock, shell_starts):
    if shutil.which(shell) is None:
        pytest.fail(f"{shell} is not installed (apt-get install -y mksh)")
    reference = measure_reference(LocalTransport("local"), shell=shell)
    check(reference, clock, shell_starts)
    assert reference.device == "local"
    assert len(reference.times_ms) == 7 and reference.median_ms in reference.times_ms


def test_the_reference_runs_through_sshd(sshd):
    transport = SshTransport(sshd.device())
    try:
        check(measure_reference(transport), "date", "/")
        mksh = measure_reference(transport, shell="mksh", repetitions=3, iterations=500)
        check(mksh, "epochrealtime", "@(#)", iterations=500, repetitions=3)
        with pytest.raises(SpeedReferenceError, match=r"device 'board': `no-such-shell -c` exited 127"):
            measure_reference(transport, shell="no-such-shell")
    finally:
        transport.close()


def test_the_checksum_is_what_the_shells_compute():
    assert checksum(5000) == 8002  # printed by dash, mksh and bash for n=5000
    assert checksum(0) == 0


def output(*reps: str, clock: str = "epochrealtime") -> str:
    return "\n".join(["shell @(#)MIRBSD KSH R59c", f"clock {clock}", *reps])


def test_parsing_handles_both_clocks_and_a_locale_comma():
    total = checksum(10)
    reference = parse_reference(
        "pixel8", output(f"rep 100.000100 100,001600 {total}", f"rep 101.5 101.5025 {total}"), 10, 2
    )
    assert reference.times_ms == (1.5, 2.5) and reference.median_ms == 2.0 and reference.spread == 0.5
    nanos = parse_reference("rpi5", output(f"rep 1000000 3000000 {total}", clock="date"), 10, 1)
    assert nanos.times_ms == (2.0,) and nanos.clock == CLOCKS["date"]


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("shell /bin/dash\nclock none 1700000000N", r"no clock .*`date \+%s%N` printed '1700000000N'"),
        (output("rep 1.0 2.0 12345"), "checksum 12345, expected"),
        (output(f"rep 2.0 1.0 {checksum(10)}"), "the clock went backwards"),
        (output("rep 1.0"), "malformed speed reference line 'rep 1.0'"),
        (output(), "printed 0 of 2 repetitions"),
    ],
)
def test_bad_reference_output_is_an_error_naming_the_device(text, message):
    with pytest.raises(SpeedReferenceError, match=f"device 'pixel8': .*{message}"):
        parse_reference("pixel8", text, 10, 2)


def test_impossible_sizes_are_refused():
    with pytest.raises(ValueError, match="must be >= 1"):
        measure_reference(LocalTransport("local"), repetitions=0)
