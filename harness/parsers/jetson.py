"""NVIDIA Jetson ``tegrastats`` lines (JetPack 4, 5 and 6 layouts)."""

from __future__ import annotations

import re
from datetime import datetime
from typing import Any

from pydantic import Field

from harness.errors import ParseError
from harness.parsers._common import Result, require_text

KIND = "tegrastats"
HINT = "is this the output of tegrastats on a Jetson (one sample per line)?"
# Temperatures at or below this are "no sensor" sentinels (tegrastats prints -256C).
SENTINEL_C = -100.0
# Rails whose current reading is the whole module's input power.
INPUT_RAILS = ("VDD_IN", "POM_5V_IN")


class CpuCore(Result):
    index: int
    online: bool
    load_pct: float | None = None
    freq_mhz: int | None = None


class Engine(Result):
    """A hardware engine: ``NVDEC off``, ``APE 200``, ``VIC_FREQ 0%@115``."""

    online: bool
    load_pct: float | None = None
    freq_mhz: int | None = None


class PowerRail(Result):
    current_mw: int
    average_mw: int


class TegrastatsSample(Result):
    timestamp: str | None = None  # ISO 8601 from the "MM-DD-YYYY HH:MM:SS" prefix (JetPack 5+)
    ram_used_mb: int | None = None
    ram_total_mb: int | None = None
    lfb_blocks: int | None = None  # largest free block: count ...
    lfb_block_mb: int | None = None  # ... x size
    swap_used_mb: int | None = None
    swap_total_mb: int | None = None
    swap_cached_mb: int | None = None
    iram_used_kb: int | None = None
    iram_total_kb: int | None = None
    cpus: list[CpuCore] = Field(default_factory=list)
    cpu_load_avg_pct: float | None = None  # mean over online cores
    emc_pct: float | None = None
    emc_freq_mhz: int | None = None
    gr3d_pct: float | None = None
    gr3d_freq_mhz: int | None = None  # first GPC when a list "[621,621]" is printed
    gr3d_freqs_mhz: list[int] = Field(default_factory=list)
    engines: dict[str, Engine] = Field(default_factory=dict)
    # lower-case zone names; "no sensor" sentinels (-256C) dropped
    temps_c: dict[str, float] = Field(default_factory=dict)
    rails: dict[str, PowerRail] = Field(default_factory=dict)
    input_power_mw: int | None = None  # current reading of VDD_IN (JetPack 5+) or POM_5V_IN (JetPack 4)


class Tegrastats(Result):
    samples: list[TegrastatsSample]


_TIMESTAMP = re.compile(r"^(\d{2})-(\d{2})-(\d{4}) (\d{2}):(\d{2}):(\d{2})\b")
_RAM = re.compile(r"\bRAM (\d+)/(\d+)MB(?: \(lfb (\d+)x(\d+)MB\))?")
_SWAP = re.compile(r"\bSWAP (\d+)/(\d+)MB(?: \(cached (\d+)MB\))?")
_IRAM = re.compile(r"\bIRAM (\d+)/(\d+)kB")
_CPU = re.compile(r"\bCPU \[([^\]]*)\]")
_PCT = re.compile(r"\b([A-Z][A-Z0-9_]*) (\d+(?:\.\d+)?)%(?:@\[?([\d,]+)\]?)?(?=\s|$)")
_TEMP = re.compile(r"(?<![\w@])([A-Za-z][\w]*)@(-?\d+(?:\.\d+)?)C\b")
_RAIL = re.compile(r"\b([A-Z][A-Z0-9_]*) (\d+)(?:mW)?/(\d+)(?:mW)?(?=\s|$)")
_ENGINE = re.compile(r"\b([A-Z][A-Z0-9_]*) (off|\d+)(?=\s|$)")
_NOT_ENGINES = {"RAM", "SWAP", "IRAM", "CPU"}


def _cores(listing: str) -> list[CpuCore]:
    cores: list[CpuCore] = []
    for index, entry in enumerate(part.strip() for part in listing.split(",")):
        core = re.fullmatch(r"(\d+(?:\.\d+)?)%(?:@(\d+))?", entry)
        if core:
            freq = int(core.group(2)) if core.group(2) else None
            cores.append(CpuCore(index=index, online=True, load_pct=float(core.group(1)), freq_mhz=freq))
        else:  # "off" (or anything unreadable): the core is offline
            cores.append(CpuCore(index=index, online=False))
    return cores


def _sample(line: str) -> TegrastatsSample | None:
    found: dict[str, Any] = {}
    if match := _TIMESTAMP.match(line):
        month, day, year, hour, minute, second = (int(g) for g in match.groups())
        try:
            found["timestamp"] = datetime(year, month, day, hour, minute, second).isoformat()
        except ValueError:
            found["timestamp"] = None
    if match := _RAM.search(line):
        found["ram_used_mb"], found["ram_total_mb"] = int(match.group(1)), int(match.group(2))
        if match.group(3):
            found["lfb_blocks"], found["lfb_block_mb"] = int(match.group(3)), int(match.group(4))
    if match := _SWAP.search(line):
        found["swap_used_mb"], found["swap_total_mb"] = int(match.group(1)), int(match.group(2))
        if match.group(3):
            found["swap_cached_mb"] = int(match.group(3))
    if match := _IRAM.search(line):
        found["iram_used_kb"], found["iram_total_kb"] = int(match.group(1)), int(match.group(2))
    cpu = _CPU.search(line)
    if cpu is None and "ram_used_mb" not in found:
        return None
    if cpu is not None:
        found["cpus"] = _cores(cpu.group(1))
        loads = [core.load_pct for core in found["cpus"] if core.load_pct is not None]
        found["cpu_load_avg_pct"] = round(sum(loads) / len(loads), 3) if loads else None
    # The CPU list is removed first so that its "%@" entries are not read as engines.
    rest = _CPU.sub(" ", line)
    engines: dict[str, Engine] = {}
    for name, pct, freqs in _PCT.findall(rest):
        freq_list = [int(f) for f in freqs.split(",") if f] if freqs else []
        freq = freq_list[0] if freq_list else None
        if name == "EMC_FREQ":
            found["emc_pct"], found["emc_freq_mhz"] = float(pct), freq
        elif name == "GR3D_FREQ":
            found["gr3d_pct"], found["gr3d_freq_mhz"], found["gr3d_freqs_mhz"] = float(pct), freq, freq_list
        else:
            engines[name.removesuffix("_FREQ")] = Engine(online=True, load_pct=float(pct), freq_mhz=freq)
    for name, state in _ENGINE.findall(rest):
        if name in _NOT_ENGINES:
            continue
        engine = Engine(online=False) if state == "off" else Engine(online=True, freq_mhz=int(state))
        engines[name.removesuffix("_FREQ")] = engine
    found["engines"] = engines
    temps: dict[str, float] = {}
    for name, value in _TEMP.findall(rest):
        celsius = float(value)
        if celsius > SENTINEL_C:
            temps.setdefault(name.lower(), celsius)
    found["temps_c"] = temps
    rails = {
        name: PowerRail(current_mw=int(current), average_mw=int(average))
        for name, current, average in _RAIL.findall(rest)
    }
    found["rails"] = rails
    found["input_power_mw"] = next((rails[n].current_mw for n in INPUT_RAILS if n in rails), None)
    return TegrastatsSample.model_validate(found)


def parse_tegrastats(text: str) -> Tegrastats:
    """One sample per tegrastats line; lines that are not samples (blank, banners) are skipped."""
    lines = require_text(KIND, text, "capture 'tegrastats --interval 1000' for a few seconds")
    samples = [sample for line in lines if line.strip() and (sample := _sample(line.strip())) is not None]
    if not samples:
        raise ParseError(KIND, f"no line with 'RAM used/totalMB' or 'CPU [...]' found; {HINT}")
    return Tegrastats(samples=samples)


__all__ = ["KIND", "CpuCore", "Engine", "PowerRail", "Tegrastats", "TegrastatsSample", "parse_tegrastats"]
