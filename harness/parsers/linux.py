"""Linux ``/proc/PID/status`` and the cpufreq sysfs tree."""

from __future__ import annotations

import re
from typing import Any

from pydantic import Field

from harness.errors import ParseError
from harness.parsers._common import Result, require_text, to_int

# ---------------------------------------------------------------------------------------------
# /proc/PID/status

PROC_STATUS = "proc-status"
_PROC_HINT = "is this the content of /proc/<pid>/status?"

# /proc/PID/status key -> result key (values in kB)
_VM_KEYS = {
    "VmPeak": "vm_peak_kb",
    "VmSize": "vm_size_kb",
    "VmLck": "vm_lck_kb",
    "VmPin": "vm_pin_kb",
    "VmHWM": "vm_hwm_kb",
    "VmRSS": "vm_rss_kb",
    "RssAnon": "rss_anon_kb",
    "RssFile": "rss_file_kb",
    "RssShmem": "rss_shmem_kb",
    "VmData": "vm_data_kb",
    "VmStk": "vm_stk_kb",
    "VmExe": "vm_exe_kb",
    "VmLib": "vm_lib_kb",
    "VmPTE": "vm_pte_kb",
    "VmSwap": "vm_swap_kb",
    "HugetlbPages": "hugetlb_pages_kb",
}
_UNIT_KB = {"kb": 1, "mb": 1024, "gb": 1024 * 1024, "b": None}


class ProcStatus(Result):
    name: str | None = None
    state: str | None = None
    pid: int | None = None
    ppid: int | None = None
    tgid: int | None = None
    threads: int | None = None
    vm_peak_kb: int | None = None
    vm_size_kb: int | None = None
    vm_lck_kb: int | None = None
    vm_pin_kb: int | None = None
    vm_hwm_kb: int | None = None
    vm_rss_kb: int | None = None
    rss_anon_kb: int | None = None
    rss_file_kb: int | None = None
    rss_shmem_kb: int | None = None
    vm_data_kb: int | None = None
    vm_stk_kb: int | None = None
    vm_exe_kb: int | None = None
    vm_lib_kb: int | None = None
    vm_pte_kb: int | None = None
    vm_swap_kb: int | None = None
    hugetlb_pages_kb: int | None = None
    peak_rss_kb: int | None = None  # = vm_hwm_kb
    rss_kb: int | None = None  # = vm_rss_kb
    voluntary_ctxt_switches: int | None = None
    nonvoluntary_ctxt_switches: int | None = None


def parse_proc_status(text: str) -> ProcStatus:
    """The first process in ``text`` (a second ``Name:`` line ends it)."""
    lines = require_text(PROC_STATUS, text, "capture 'cat /proc/<pid>/status'")
    found: dict[str, Any] = {}
    for line in lines:
        match = re.match(r"^(\w+):\s*(.*?)\s*$", line)
        if match is None:
            continue
        key, value = match.groups()
        if key == "Name":
            if "name" in found:
                break
            found["name"] = value
        elif key in _VM_KEYS:
            size = re.fullmatch(r"(\d+)\s*([kKmMgG]?[bB])?", value)
            factor = _UNIT_KB.get((size.group(2) or "kB").lower()) if size else None
            if size is not None and factor is not None:
                found[_VM_KEYS[key]] = int(size.group(1)) * factor
        elif key == "State":
            found["state"] = value
        elif key in (
            "Pid",
            "PPid",
            "Tgid",
            "Threads",
            "voluntary_ctxt_switches",
            "nonvoluntary_ctxt_switches",
        ):
            found[key.lower()] = to_int(value)
    if "name" not in found or ("pid" not in found and "tgid" not in found):
        raise ParseError(PROC_STATUS, f"no 'Name:' and 'Pid:' lines found; {_PROC_HINT}")
    found["peak_rss_kb"] = found.get("vm_hwm_kb")
    found["rss_kb"] = found.get("vm_rss_kb")
    return ProcStatus.model_validate(found)


# ---------------------------------------------------------------------------------------------
# /sys/devices/system/cpu/cpufreq/policy*/

CPUFREQ = "cpufreq"
_CPUFREQ_HINT = "capture 'grep -r . /sys/devices/system/cpu/cpufreq/'"


class CpufreqPolicy(Result):
    name: str  # policy0, ... (cpu0, ... for the legacy per-CPU layout)
    related_cpus: list[int] = Field(default_factory=list)
    affected_cpus: list[int] = Field(default_factory=list)
    cur_freq_khz: int | None = None  # scaling_cur_freq, else cpuinfo_cur_freq
    min_freq_khz: int | None = None  # scaling_min_freq
    max_freq_khz: int | None = None  # scaling_max_freq
    cpuinfo_cur_freq_khz: int | None = None
    cpuinfo_min_freq_khz: int | None = None
    cpuinfo_max_freq_khz: int | None = None
    governor: str | None = None
    available_governors: list[str] = Field(default_factory=list)
    available_frequencies_khz: list[int] = Field(default_factory=list)
    boost_frequencies_khz: list[int] = Field(default_factory=list)
    driver: str | None = None
    transition_latency_ns: int | None = None
    capped: bool | None = None  # scaling_max_freq < cpuinfo_max_freq


class Cpufreq(Result):
    policies: list[CpufreqPolicy]
    any_capped: bool
    boost: bool | None = None


# ".../cpufreq/policy0/scaling_cur_freq:1800000", ".../cpu0/cpufreq/scaling_cur_freq: 1800000"
_PATH_LINE = re.compile(r"^(?:\S*?/)?(policy\d+|cpu\d+)(?:/cpufreq)?/(\w+)\s*:\s*(.*)$")
_BARE_LINE = re.compile(r"^((?:scaling|cpuinfo)_\w+|related_cpus|affected_cpus)\s*[:=]\s*(.*)$")
_BOOST_LINE = re.compile(r"^(?:\S*/)?cpufreq/boost\s*:\s*([01])$")


def _cpus(value: str) -> list[int]:
    cpus: list[int] = []
    for part in re.split(r"[\s,]+", value.strip()):
        if match := re.fullmatch(r"(\d+)-(\d+)", part):
            cpus.extend(range(int(match.group(1)), int(match.group(2)) + 1))
        elif part.isdigit():
            cpus.append(int(part))
    return cpus


def _ints(value: str) -> list[int]:
    return [int(part) for part in value.split() if part.isdigit()]


def _policy(name: str, files: dict[str, str]) -> CpufreqPolicy:
    def number(key: str) -> int | None:
        value = files.get(key)
        return int(value) if value is not None and value.strip().isdigit() else None

    cur = number("scaling_cur_freq")
    maximum, hardware_max = number("scaling_max_freq"), number("cpuinfo_max_freq")
    return CpufreqPolicy(
        name=name,
        related_cpus=_cpus(files.get("related_cpus", "")),
        affected_cpus=_cpus(files.get("affected_cpus", "")),
        cur_freq_khz=cur if cur is not None else number("cpuinfo_cur_freq"),
        min_freq_khz=number("scaling_min_freq"),
        max_freq_khz=maximum,
        cpuinfo_cur_freq_khz=number("cpuinfo_cur_freq"),
        cpuinfo_min_freq_khz=number("cpuinfo_min_freq"),
        cpuinfo_max_freq_khz=hardware_max,
        governor=files.get("scaling_governor") or None,
        available_governors=files.get("scaling_available_governors", "").split(),
        available_frequencies_khz=_ints(files.get("scaling_available_frequencies", "")),
        boost_frequencies_khz=_ints(files.get("scaling_boost_frequencies", "")),
        driver=files.get("scaling_driver") or None,
        transition_latency_ns=number("cpuinfo_transition_latency"),
        capped=maximum < hardware_max if maximum is not None and hardware_max is not None else None,
    )


def parse_cpufreq(text: str) -> Cpufreq:
    """``grep -r . /sys/devices/system/cpu/cpufreq/`` (``path:value``) or ``path: value`` lines."""
    lines = require_text(CPUFREQ, text, _CPUFREQ_HINT)
    policies: dict[str, dict[str, str]] = {}
    boost: bool | None = None
    for line in lines:
        stripped = line.strip()
        if not stripped or stripped.startswith(("grep:", "cat:")):  # permission errors
            continue
        if match := _BOOST_LINE.match(stripped):
            boost = match.group(1) == "1"
        elif match := _PATH_LINE.match(stripped):
            name, key, value = match.groups()
            if "/stats/" not in stripped:
                policies.setdefault(name, {}).setdefault(key, value.strip())
        elif match := _BARE_LINE.match(stripped):
            policies.setdefault("cpufreq", {}).setdefault(match.group(1), match.group(2).strip())
    if not policies:
        raise ParseError(CPUFREQ, f"no '.../cpufreq/policyN/FILE:value' line found; {_CPUFREQ_HINT}")

    def order(name: str) -> tuple[str, int]:
        digits = re.sub(r"\D", "", name)
        return (re.sub(r"\d", "", name), int(digits) if digits else -1)

    parsed = [_policy(name, policies[name]) for name in sorted(policies, key=order)]
    if not any(p.cur_freq_khz or p.max_freq_khz or p.cpuinfo_max_freq_khz or p.governor for p in parsed):
        raise ParseError(CPUFREQ, f"no frequency or governor file found under any policy; {_CPUFREQ_HINT}")
    return Cpufreq(policies=parsed, any_capped=any(p.capped for p in parsed), boost=boost)


__all__ = [
    "CPUFREQ",
    "PROC_STATUS",
    "Cpufreq",
    "CpufreqPolicy",
    "ProcStatus",
    "parse_cpufreq",
    "parse_proc_status",
]
