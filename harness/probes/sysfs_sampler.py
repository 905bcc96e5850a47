"""Thermal, cpufreq and battery from sysfs with POSIX sh alone, for phones without Perfetto:
a sampler script the native runner starts beside the tool, and the parser of what it printed.

Limits: one line per file read (no awk on toybox); timestamps are /proc/uptime (10 ms steps,
the boot-time clock Perfetto uses too); battery power is current x voltage, not a counter.
"""

from __future__ import annotations

from dataclasses import dataclass

from harness.errors import ParseError
from harness.probes.perfetto import EnergySamples, Series
from harness.probes.thermal import ThermalSample, ThermalTrace

KIND = "sysfs-samples"

# $1: seconds between samples; runs until killed. Lines: "t UPTIME", "z INDEX TYPE MILLIDEG",
# "f POLICY CUR_KHZ MAX_KHZ CPUINFO_MAX_KHZ", "p SUPPLY CURRENT_UA VOLTAGE_UV".
SAMPLER = r"""
period=${1:-0.25}
while :; do
  read -r up idle < /proc/uptime
  echo "t $up"
  for zone in /sys/class/thermal/thermal_zone*; do
    [ -r "$zone/temp" ] || continue
    read -r type < "$zone/type"; read -r temp < "$zone/temp" || continue
    echo "z ${zone##*thermal_zone} $type $temp"
  done
  for policy in /sys/devices/system/cpu/cpufreq/policy*; do
    [ -r "$policy/scaling_cur_freq" ] || continue
    read -r cur < "$policy/scaling_cur_freq"; read -r max < "$policy/scaling_max_freq"
    read -r top < "$policy/cpuinfo_max_freq"
    echo "f ${policy##*/} $cur $max $top"
  done
  for supply in /sys/class/power_supply/*; do
    [ -r "$supply/current_now" ] && [ -r "$supply/voltage_now" ] || continue
    read -r current < "$supply/current_now"; read -r voltage < "$supply/voltage_now"
    echo "p ${supply##*/} $current $voltage"
  done
  sleep "$period"
done
"""


def sampler_argv(period_s: float = 0.25) -> list[str]:
    if period_s <= 0:
        raise ValueError(f"period_s {period_s}: give a positive sampling period")
    return ["sh", "-c", SAMPLER, "edgelab-sysfs-sampler", f"{period_s:g}"]


@dataclass(frozen=True)
class SysfsSamples:
    times_ns: tuple[int, ...]
    zones: tuple[str, ...]
    temps_c: tuple[Series, ...]
    policies: tuple[str, ...]
    cpuinfo_max_khz: tuple[int | None, ...]
    cur_khz: tuple[Series, ...]
    max_khz: tuple[Series, ...]
    battery: EnergySamples | None

    def thermal_trace(self, timed_start_ns: int) -> ThermalTrace | None:
        if not self.times_ns:
            return None
        samples = tuple(
            ThermalSample(
                offset_s=(t - timed_start_ns) / 1e9,
                temps_c=tuple(series.at(t) for series in self.temps_c),
                cur_khz=tuple(_int(series.at(t)) for series in self.cur_khz),
                max_khz=tuple(_int(series.at(t)) for series in self.max_khz),
            )
            for t in self.times_ns
        )
        gaps = sorted(b - a for a, b in zip(self.times_ns, self.times_ns[1:], strict=False))
        return ThermalTrace(
            period_s=gaps[len(gaps) // 2] / 1e9 if gaps else 0.0,
            zones=self.zones,
            policies=self.policies,
            cpuinfo_max_khz=self.cpuinfo_max_khz,
            samples=samples,
        )


def _int(value: float | None) -> int | None:
    return None if value is None else int(value)


def parse_sysfs_samples(text: str) -> SysfsSamples:
    """The sampler's output (a sample cut off at kill time is dropped)."""
    if not text.strip():
        raise ParseError(KIND, "the input is empty; capture the sampler's whole output")
    zones: dict[int, str] = {}
    temps: dict[int, list[tuple[int, float]]] = {}
    policies: dict[str, tuple[list[tuple[int, float]], list[tuple[int, float]], int | None]] = {}
    battery: list[tuple[int, None, None, None, float]] = []
    times: list[int] = []
    now: int | None = None
    for number, line in enumerate(text.splitlines(), start=1):
        fields = line.split()
        if not fields:
            continue
        try:
            if fields[0] == "t" and len(fields) == 2:
                now = round(float(fields[1]) * 1e9)
                times.append(now)
            elif now is None:
                raise ValueError("a reading before the first 't UPTIME' line")
            elif fields[0] == "z" and len(fields) == 4:
                index = int(fields[1])
                zones.setdefault(index, fields[2])
                temps.setdefault(index, []).append((now, int(fields[3]) / 1000.0))
            elif fields[0] == "f" and len(fields) == 5:
                cur, cap = policies.setdefault(fields[1], ([], [], int(fields[4])))[:2]
                cur.append((now, float(fields[2])))
                cap.append((now, float(fields[3])))
            elif fields[0] == "p" and len(fields) == 4:
                if fields[1] == "battery" or not battery:
                    battery.append((now, None, None, None, abs(int(fields[2]) * int(fields[3])) / 1e6))
            else:
                raise ValueError(f"unknown line {line[:80]!r}")
        except ValueError as exc:
            raise ParseError(
                KIND, f"line {number}: {exc}; is this the output of sysfs_sampler.SAMPLER?"
            ) from None
    if not times:
        raise ParseError(KIND, "no 't UPTIME' line; is this the output of sysfs_sampler.SAMPLER?")
    names = sorted(policies, key=lambda name: int(name.removeprefix("policy")) if name[6:].isdigit() else 0)
    order = sorted(zones)
    return SysfsSamples(
        times_ns=tuple(times),
        zones=tuple(zones[index] for index in order),
        temps_c=tuple(Series(tuple(temps[index])) for index in order),
        policies=tuple(names),
        cpuinfo_max_khz=tuple(policies[name][2] for name in names),
        cur_khz=tuple(Series(tuple(policies[name][0])) for name in names),
        max_khz=tuple(Series(tuple(policies[name][1])) for name in names),
        battery=EnergySamples("battery", "power", tuple(battery)) if battery else None,
    )
