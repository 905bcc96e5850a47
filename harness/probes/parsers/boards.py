"""Linux board outputs: Jetson ``tegrastats`` (JetPack 4 to 6), Raspberry Pi ``vcgencmd``,
``/proc/PID/status`` and cpufreq policy dumps."""

from __future__ import annotations

import re

from harness.errors import ParseError
from harness.probes.parsers.common import NUMBER, Parsed, clean_lines, require_text, to_float, to_int

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


_TIMESTAMP = re.compile(r"^(\d{2}-\d{2}-\d{4} \d{2}:\d{2}:\d{2})\s+")
_RAM = re.compile(r"\bRAM (\d+)/(\d+)MB")
_SWAP = re.compile(r"\bSWAP (\d+)/(\d+)MB(?: \(cached (\d+)MB\))?")
_CPU = re.compile(r"\bCPU \[([^\]]*)\]")
_FREQ_PCT = re.compile(rf"\b(EMC_FREQ|GR3D_FREQ) ({NUMBER})%(?:@\[?([\d,]+)\]?)?")
_TEMP = re.compile(rf"\b([A-Za-z][\w]*)@({NUMBER})C\b")
_RAIL_MW = re.compile(rf"\b([A-Z][A-Z0-9_]+) ({NUMBER})mW/({NUMBER})mW")
_RAIL_OLD = re.compile(rf"\b((?:POM|VDD)_[A-Z0-9_]+) ({NUMBER})/({NUMBER})\b")
_ENGINE = re.compile(r"\b(NVDEC\d?|NVENC\d?|NVJPG\d?|VIC|OFA|APE|MSENC|NVDLA\d?|PVA\d?)\s+(off|\d+)\b")


def _tegrastats_line(line: str) -> TegrastatsSample | None:
    if "RAM " not in line and "CPU [" not in line:
        return None
    timestamp = _TIMESTAMP.match(line)
    ram, swap = _RAM.search(line), _SWAP.search(line)
    cpus: list[CpuCore] = []
    cpu = _CPU.search(line)
    if cpu:
        for core in cpu.group(1).split(","):
            found = re.match(rf"({NUMBER})%(?:@({NUMBER}))?", core.strip())
            cpus.append(
                CpuCore(load_pct=to_float(found.group(1)), freq_mhz=to_float(found.group(2)))
                if found
                else CpuCore(load_pct=None, freq_mhz=None)
            )
    freqs: dict[str, tuple[float | None, float | None]] = {}
    for name, pct, freq in _FREQ_PCT.findall(line):
        first = freq.split(",")[0] if freq else None
        freqs[name] = (to_float(pct), to_float(first))
    temps: dict[str, float] = {}
    for name, value in _TEMP.findall(line):
        reading = float(value)
        if reading in SENTINEL_TEMPS or reading <= -100:
            continue
        temps[name.lower()] = reading
    rails: dict[str, Rail] = {}
    for name, current, average in _RAIL_MW.findall(line):
        rails[name] = Rail(current_mw=float(current), average_mw=float(average))
    for name, current, average in _RAIL_OLD.findall(line):
        rails.setdefault(name, Rail(current_mw=float(current), average_mw=float(average)))
    engines = {name: (None if value == "off" else float(value)) for name, value in _ENGINE.findall(line)}
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


def parse_tegrastats(text: str) -> Tegrastats:
    kind = "tegrastats"
    require_text(kind, text)
    samples = [s for s in (_tegrastats_line(line) for line in clean_lines(text)) if s is not None]
    if not samples:
        raise ParseError(
            kind, "no line with 'RAM used/totalMB' or 'CPU [...]'; run `tegrastats --interval 100`"
        )
    return Tegrastats(samples=samples)


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


class Vcgencmd(Parsed):
    throttled_raw: int | None
    flags: dict[str, bool]  # THROTTLED_BITS names; empty without a throttled= line
    throttled_now: bool | None  # any of the *_now bits
    temp_c: float | None
    frequencies_khz: dict[str, int]  # "arm", "core", or the clock id as printed
    voltages_mv: dict[str, float]


def parse_vcgencmd(text: str) -> Vcgencmd:
    """``vcgencmd get_throttled | measure_temp | measure_clock arm | measure_volts`` (any mix)."""
    kind = "vcgencmd"
    require_text(kind, text)
    raw = temp = None
    freqs: dict[str, int] = {}
    volts: dict[str, float] = {}
    for line in clean_lines(text):
        stripped = line.strip()
        if found := re.match(r"^throttled=(0x[0-9a-fA-F]+|\d+)$", stripped):
            raw = int(found.group(1), 0)
        elif found := re.match(rf"^temp=({NUMBER})'?C$", stripped):
            temp = float(found.group(1))
        elif found := re.match(r"^frequency\((\w+)\)=(\d+)$", stripped):
            freqs[{"48": "arm", "1": "core"}.get(found.group(1), found.group(1))] = (
                int(found.group(2)) // 1000
            )
        elif found := re.match(rf"^volt=({NUMBER})V$", stripped):
            volts.setdefault("core", float(found.group(1)) * 1000)
    if raw is None and temp is None and not freqs and not volts:
        raise ParseError(
            kind, "no throttled=, temp=, frequency(...)= or volt= line; is this vcgencmd output?"
        )
    flags = {name: bool(raw & (1 << bit)) for bit, name in THROTTLED_BITS.items()} if raw is not None else {}
    return Vcgencmd(
        throttled_raw=raw,
        flags=flags,
        throttled_now=None if raw is None else bool(raw & 0xF),
        temp_c=temp,
        frequencies_khz=freqs,
        voltages_mv=volts,
    )


# -- /proc/PID/status --------------------------------------------------------------------------------


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


def parse_proc_status(text: str) -> ProcStatus:
    kind = "proc-status"
    require_text(kind, text)
    fields: dict[str, str] = {}
    for line in clean_lines(text):
        key, sep, value = line.partition(":")
        if sep:
            fields.setdefault(key.strip(), value.strip())
    if "VmRSS" not in fields and "Name" not in fields:
        raise ParseError(kind, "no Name: or VmRSS: line; read /proc/PID/status of a live process")

    def kb(key: str) -> int | None:
        value = fields.get(key)
        if value is None:
            return None
        number, _, unit = value.partition(" ")
        scale = {"kB": 1, "mB": 1024, "MB": 1024, "": 1}.get(unit.strip(), 1)
        return int(number) * scale

    return ProcStatus(
        name=fields.get("Name"),
        pid=to_int(fields.get("Pid")),
        state=fields.get("State"),
        threads=to_int(fields.get("Threads")),
        vm_peak_kb=kb("VmPeak"),
        vm_size_kb=kb("VmSize"),
        peak_rss_kb=kb("VmHWM"),
        rss_kb=kb("VmRSS"),
        rss_anon_kb=kb("RssAnon"),
        rss_file_kb=kb("RssFile"),
        rss_shmem_kb=kb("RssShmem"),
        vm_swap_kb=kb("VmSwap"),
    )


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


_CPUFREQ_LINE = re.compile(r"(?:^|/)(policy\d+|cpu\d+)(?:/cpufreq)?/(\w+)\s*[:=]\s*(.*)$")


def parse_cpufreq(text: str) -> Cpufreq:
    """``grep -r . /sys/devices/system/cpu/cpufreq/`` or ``for f in ...; do echo "$f: $(cat $f)"``."""
    kind = "cpufreq"
    require_text(kind, text)
    found: dict[str, dict[str, str]] = {}
    for line in clean_lines(text):
        match = _CPUFREQ_LINE.search(line.strip())
        if match:
            found.setdefault(match.group(1), {}).setdefault(match.group(2), match.group(3).strip())
    if not found:
        raise ParseError(
            kind, "no '.../policyN/FILE: value' lines; dump with `grep -r . /sys/devices/system/cpu/cpufreq/`"
        )
    policies = []
    for name in sorted(found, key=lambda n: (n.rstrip("0123456789"), int(re.sub(r"\D", "", n) or 0))):
        files = found[name]
        top, ceiling = to_int(files.get("cpuinfo_max_freq")), to_int(files.get("scaling_max_freq"))
        policies.append(
            CpufreqPolicy(
                name=name,
                cur_freq_khz=to_int(files.get("scaling_cur_freq") or files.get("cpuinfo_cur_freq")),
                min_freq_khz=to_int(files.get("scaling_min_freq")),
                max_freq_khz=ceiling,
                cpuinfo_min_freq_khz=to_int(files.get("cpuinfo_min_freq")),
                cpuinfo_max_freq_khz=top,
                governor=files.get("scaling_governor"),
                related_cpus=[int(c) for c in files.get("related_cpus", "").split() if c.isdigit()],
                available_frequencies_khz=[
                    int(f) for f in files.get("scaling_available_frequencies", "").split() if f.isdigit()
                ],
                available_governors=files.get("scaling_available_governors", "").split(),
                capped=None if top is None or ceiling is None else ceiling < top,
            )
        )
    return Cpufreq(policies=policies)
