"""Linux board outputs: Jetson ``tegrastats`` (JetPack 4 to 6), Raspberry Pi ``vcgencmd``,
``/proc/PID/status`` and cpufreq policy dumps."""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator

from harness.probes.parsers.common import (
    NUMBER,
    Lines,
    OpenLine,
    Parsed,
    first_int,
    refusal,
    split_lines,
    to_float,
    to_int,
)

# -- tegrastats --------------------------------------------------------------------------------------

SENTINEL_TEMPS = {-256.0}  # tegrastats prints -256C for a zone with no sensor


class CpuCore(Parsed):
    load_pct: float | None  # None when the core is off
    freq_mhz: float | None


class Rail(Parsed):
    current_mw: float
    average_mw: float | None


class TegrastatsSample(Parsed):
    timestamp: str | None  # "MM-DD-YYYY HH:MM:SS" when tegrastats printed one
    ram_used_mb: int | None
    ram_total_mb: int | None
    swap_used_mb: int | None
    swap_total_mb: int | None
    swap_cached_mb: int | None
    cpus: list[CpuCore]
    emc_pct: float | None
    emc_freq_mhz: float | None
    gr3d_pct: float | None
    gr3d_freq_mhz: float | None
    engines_mhz: dict[str, float | None]  # NVDEC, NVJPG, VIC, APE, ...: None when "off"
    temps_c: dict[str, float]  # lower-case zone names; sentinel readings left out
    rails: dict[str, Rail]  # VDD_IN, POM_5V_IN, ... in mW
    total_power_mw: float | None  # VDD_IN or POM_5V_IN when present


class Tegrastats(Parsed):
    samples: list[TegrastatsSample]


# Every field ends with its unit or is followed by a space (the line gets one at its end unless it
# was cut), so a value cut at the end of a capture is never read.
_TIMESTAMP = re.compile(r"(?:^|\s)(\d{2}-\d{2}-\d{4} \d{2}:\d{2}:\d{2})\s")
_RAM = re.compile(r"\bRAM (\d{1,9})/(\d{1,9})MB")
_SWAP = re.compile(r"\bSWAP (\d{1,9})/(\d{1,9})MB(?: \(cached (\d{1,9})MB\))?")
_CPU = re.compile(r"\bCPU \[([^\[\]]*)\]")
_CORE = re.compile(rf"({NUMBER})%(?:@({NUMBER}))?")
_FREQ_PCT = re.compile(
    rf"\b(EMC_FREQ|GR3D_FREQ) ({NUMBER})%(?:@(?:\[([\d,]{{1,64}})\](?=\s)|(\d{{1,9}})(?=\s)))?"
)
_TEMP = re.compile(rf"\b([A-Za-z]\w*)@({NUMBER})C\b")
_RAIL_MW = re.compile(rf"\b([A-Z][A-Z0-9_]+) ({NUMBER})mW/({NUMBER})mW")
_RAIL_OLD = re.compile(rf"\b((?:POM|VDD)_[A-Z0-9_]+) ({NUMBER})/({NUMBER})(?=\s)")
_ENGINE = re.compile(
    rf"\b(NVDEC\d?|NVENC\d?|NVJPG\d?|VIC|OFA|APE|MSENC|NVDLA\d?|PVA\d?)(?:_FREQ)?"
    rf"\s+(off|(?:{NUMBER}%@)?\d{{1,9}})(?=\s)"
)
_MARKERS = ("RAM ", "CPU [", "EMC_FREQ ", "GR3D_FREQ ", "VDD_IN ", "POM_5V_IN ")


def _tegrastats_line(line: str) -> TegrastatsSample | None:
    if not any(marker in line for marker in _MARKERS):
        return None
    text = line if isinstance(line, OpenLine) else line + " "
    timestamp = _TIMESTAMP.search(text)
    ram, swap = _RAM.search(text), _SWAP.search(text)
    cpus: list[CpuCore] = []
    cpu = _CPU.search(text)
    if cpu:
        for core in cpu.group(1).split(","):
            found = _CORE.fullmatch(core.strip())
            cpus.append(
                CpuCore(load_pct=to_float(found.group(1)), freq_mhz=to_float(found.group(2)))
                if found
                else CpuCore(load_pct=None, freq_mhz=None)
            )
    freqs: dict[str, tuple[float | None, float | None]] = {}
    for name, pct, gpcs, freq in _FREQ_PCT.findall(text):
        freqs[name] = (to_float(pct), to_float(gpcs.split(",")[0] if gpcs else freq or None))
    temps: dict[str, float] = {}
    for name, value in _TEMP.findall(text):
        reading = to_float(value)
        if reading is None or reading in SENTINEL_TEMPS or reading <= -100:
            continue
        temps[name.lower()] = reading
    rails: dict[str, Rail] = {}
    for name, current, average in _RAIL_MW.findall(text):
        if (now := to_float(current)) is not None:
            rails[name] = Rail(current_mw=now, average_mw=to_float(average))
    for name, current, average in _RAIL_OLD.findall(text):
        if (now := to_float(current)) is not None:
            rails.setdefault(name, Rail(current_mw=now, average_mw=to_float(average)))
    engines = {
        name: (None if value == "off" else to_float(value.rpartition("@")[2]))
        for name, value in _ENGINE.findall(text)
    }
    if not (ram or swap or cpus or freqs or rails):
        return None
    total = rails.get("VDD_IN") or rails.get("POM_5V_IN")
    return TegrastatsSample(
        timestamp=timestamp.group(1) if timestamp else None,
        ram_used_mb=int(ram.group(1)) if ram else None,
        ram_total_mb=int(ram.group(2)) if ram else None,
        swap_used_mb=int(swap.group(1)) if swap else None,
        swap_total_mb=int(swap.group(2)) if swap else None,
        swap_cached_mb=to_int(swap.group(3)) if swap and swap.group(3) else None,
        cpus=cpus,
        emc_pct=freqs.get("EMC_FREQ", (None, None))[0],
        emc_freq_mhz=freqs.get("EMC_FREQ", (None, None))[1],
        gr3d_pct=freqs.get("GR3D_FREQ", (None, None))[0],
        gr3d_freq_mhz=freqs.get("GR3D_FREQ", (None, None))[1],
        engines_mhz=engines,
        temps_c=temps,
        rails=rails,
        total_power_mw=total.current_mw if total else None,
    )


def iter_tegrastats(raw: Iterable[str]) -> Iterator[TegrastatsSample]:
    """The samples of a tegrastats capture, one per line, as they are read: a capture of hours
    is never held whole. Raises ParseError at the end when no line was a sample."""
    source = Lines(raw)
    found = False
    for line in source:
        sample = _tegrastats_line(line)
        if sample is not None:
            found = True
            yield sample
    if not found:
        raise refusal(
            "tegrastats",
            source,
            "no line with 'RAM used/totalMB', 'CPU [...]', EMC/GR3D_FREQ or a VDD_IN rail",
            "tegrastats --interval 100",
        )


def parse_tegrastats(text: str) -> Tegrastats:
    return Tegrastats(samples=list(iter_tegrastats(split_lines(text))))


# -- vcgencmd ----------------------------------------------------------------------------------------

THROTTLED_BITS = {
    0: "under_voltage_now",
    1: "arm_freq_capped_now",
    2: "throttled_now",
    3: "soft_temp_limit_now",
    16: "under_voltage_occurred",
    17: "arm_freq_capped_occurred",
    18: "throttled_occurred",
    19: "soft_temp_limit_occurred",
}
# A reading ends its line; what is before it on the line (a label kept on a one-line paste) is not
# looked at.
_THROTTLED = re.compile(r"\bthrottled=(0x[0-9a-fA-F]{1,8}|\d{1,10})$")
_TEMP_C = re.compile(rf"\btemp=({NUMBER})'?C$")
_FREQUENCY = re.compile(r"\bfrequency\((\w{1,16})\)=(\d{1,15})$")
_VOLT = re.compile(rf"\bvolt=({NUMBER})V$")


class Vcgencmd(Parsed):
    throttled_raw: int | None
    flags: dict[str, bool]  # THROTTLED_BITS names; empty without a throttled= line
    throttled_now: bool | None  # any of the *_now bits
    temp_c: float | None
    frequencies_khz: dict[str, int]  # "arm", "core", or the clock id as printed
    voltages_mv: dict[str, float]


def vcgencmd_from_lines(raw: Iterable[str]) -> Vcgencmd:
    """vcgencmd lines read one by one; in a logged loop the last reading of each wins."""
    kind = "vcgencmd"
    source = Lines(raw)
    raw_bits: int | None = None
    temp: float | None = None
    freqs: dict[str, int] = {}
    volts: dict[str, float] = {}
    for line in source:
        stripped = line.strip()
        if found := _THROTTLED.search(stripped):
            raw_bits = int(found.group(1), 0)
        elif found := _TEMP_C.search(stripped):
            temp = to_float(found.group(1))
        elif found := _FREQUENCY.search(stripped):
            clock = {"48": "arm", "1": "core"}.get(found.group(1), found.group(1))
            if clock in freqs or len(freqs) < 64:
                freqs[clock] = int(found.group(2)) // 1000
        elif (found := _VOLT.search(stripped)) and (volt := to_float(found.group(1))) is not None:
            volts.setdefault("core", volt * 1000)
    if raw_bits is None and temp is None and not freqs and not volts:
        raise refusal(
            kind,
            source,
            "no throttled=, temp=, frequency(...)= or volt= line; is this vcgencmd output?",
            "vcgencmd get_throttled; vcgencmd measure_temp",
        )
    flags = (
        {name: bool(raw_bits & (1 << bit)) for bit, name in THROTTLED_BITS.items()}
        if raw_bits is not None
        else {}
    )
    return Vcgencmd(
        throttled_raw=raw_bits,
        flags=flags,
        throttled_now=None if raw_bits is None else bool(raw_bits & 0xF),
        temp_c=temp,
        frequencies_khz=freqs,
        voltages_mv=volts,
    )


def parse_vcgencmd(text: str) -> Vcgencmd:
    """``vcgencmd get_throttled | measure_temp | measure_clock arm | measure_volts`` (any mix)."""
    return vcgencmd_from_lines(split_lines(text))


# -- /proc/PID/status --------------------------------------------------------------------------------

_KB_KEYS = {"VmPeak", "VmSize", "VmHWM", "VmRSS", "RssAnon", "RssFile", "RssShmem", "VmSwap"}
_STATUS_KEYS = {"Name", "Pid", "State", "Threads", *_KB_KEYS}
_SCALE = {"kB": 1, "mB": 1024, "MB": 1024}


class ProcStatus(Parsed):
    name: str | None
    pid: int | None
    state: str | None
    threads: int | None
    vm_peak_kb: int | None
    vm_size_kb: int | None
    peak_rss_kb: int | None  # VmHWM
    rss_kb: int | None  # VmRSS
    rss_anon_kb: int | None
    rss_file_kb: int | None
    rss_shmem_kb: int | None
    vm_swap_kb: int | None


def _kb(value: str, cut: bool) -> int | None:
    """``1234 kB`` in kB; without its unit the value is taken as kB, unless the line was cut."""
    number, _, unit = value.partition(" ")
    unit = unit.strip()
    if not unit and cut:
        return None
    amount = to_int(number)
    return None if amount is None else amount * _SCALE.get(unit, 1)


def proc_status_from_lines(raw: Iterable[str]) -> ProcStatus:
    """``/proc/PID/status`` read line by line; only its known fields are kept."""
    kind = "proc-status"
    source = Lines(raw)
    fields: dict[str, str] = {}
    sizes: dict[str, int | None] = {}
    for line in source:
        key, colon, value = line.partition(":")
        key = key.strip()
        if not colon or key not in _STATUS_KEYS or key in fields:
            continue
        fields[key] = value.strip()
        if key in _KB_KEYS:
            sizes[key] = _kb(fields[key], isinstance(line, OpenLine))
    if not fields:
        raise refusal(
            kind,
            source,
            "no Name:, VmRSS: or other status field of a live process",
            "cat /proc/PID/status",
        )
    return ProcStatus(
        name=fields.get("Name"),
        pid=to_int(fields.get("Pid")),
        state=fields.get("State"),
        threads=to_int(fields.get("Threads")),
        vm_peak_kb=sizes.get("VmPeak"),
        vm_size_kb=sizes.get("VmSize"),
        peak_rss_kb=sizes.get("VmHWM"),
        rss_kb=sizes.get("VmRSS"),
        rss_anon_kb=sizes.get("RssAnon"),
        rss_file_kb=sizes.get("RssFile"),
        rss_shmem_kb=sizes.get("RssShmem"),
        vm_swap_kb=sizes.get("VmSwap"),
    )


def parse_proc_status(text: str) -> ProcStatus:
    return proc_status_from_lines(split_lines(text))


# -- cpufreq -----------------------------------------------------------------------------------------


class CpufreqPolicy(Parsed):
    name: str
    cur_freq_khz: int | None  # scaling_cur_freq (or cpuinfo_cur_freq)
    min_freq_khz: int | None  # scaling_min_freq
    max_freq_khz: int | None  # scaling_max_freq: the ceiling thermal caps lower
    cpuinfo_min_freq_khz: int | None
    cpuinfo_max_freq_khz: int | None
    governor: str | None
    related_cpus: list[int]
    available_frequencies_khz: list[int]
    available_governors: list[str]
    capped: bool | None  # max_freq_khz < cpuinfo_max_freq_khz


class Cpufreq(Parsed):
    policies: list[CpufreqPolicy]


_CPUFREQ_LINE = re.compile(r"(?:^|/)(policy\d{1,5}|cpu\d{1,5})(?:/cpufreq)?/(\w+)\s*[:=]\s*(.*)$")


def _ints(value: str) -> list[int]:
    return [int(word) for word in value.split() if word.isdigit() and len(word) <= 15]


def parse_cpufreq(text: str) -> Cpufreq:
    """``grep -r . /sys/devices/system/cpu/cpufreq/`` or ``for f in ...; do echo "$f: $(cat $f)"``
    (a value may carry its unit: ``1400000 [kHz]``)."""
    kind = "cpufreq"
    source = Lines(split_lines(text))
    found: dict[str, dict[str, str]] = {}
    for line in source:
        match = _CPUFREQ_LINE.search(line.strip())
        if match:
            found.setdefault(match.group(1), {}).setdefault(match.group(2), match.group(3).strip())
    if not found:
        raise refusal(
            kind,
            source,
            "no '.../policyN/FILE: value' lines",
            "grep -r . /sys/devices/system/cpu/cpufreq/",
        )
    policies = []
    for name in sorted(found, key=lambda n: (n.rstrip("0123456789"), int(re.sub(r"\D", "", n) or 0))):
        files = found[name]
        top, ceiling = first_int(files.get("cpuinfo_max_freq")), first_int(files.get("scaling_max_freq"))
        policies.append(
            CpufreqPolicy(
                name=name,
                cur_freq_khz=first_int(files.get("scaling_cur_freq") or files.get("cpuinfo_cur_freq")),
                min_freq_khz=first_int(files.get("scaling_min_freq")),
                max_freq_khz=ceiling,
                cpuinfo_min_freq_khz=first_int(files.get("cpuinfo_min_freq")),
                cpuinfo_max_freq_khz=top,
                governor=files.get("scaling_governor") or None,
                related_cpus=_ints(files.get("related_cpus", "")),
                available_frequencies_khz=_ints(files.get("scaling_available_frequencies", "")),
                available_governors=files.get("scaling_available_governors", "").split(),
                capped=None if top is None or ceiling is None else ceiling < top,
            )
        )
    return Cpufreq(policies=policies)
