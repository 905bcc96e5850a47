"""The records that cross module boundaries: how to measure, and what one measurement found.

One definition for every runtime: peak memory is the VmHWM of the inference process, in MB.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from harness.probes.cpus import CpuPlacement
from harness.probes.energy import EnergyReport
from harness.probes.thermal import SustainedCurve, ThermalTrace, ThrottleVerdict
from harness.stats import LatencySummary, ModesCheck

KIB_PER_MB = 1024.0


@dataclass(frozen=True)
class LatencyProtocol:
    """Warm-up and timed-phase bounds; the timed phase ends when both minimums are reached."""

    warmup_iters: int = 10
    warmup_s: float = 1.0
    min_iters: int = 50
    min_s: float = 2.0
    max_s: float = 60.0
    sample_period_s: float = 0.25  # the agent's thermal sampler; 0 turns it off
    max_iters: int = 100_000
    cooldown_max_s: float = 300.0  # longest wait for the device to cool (MLPerf Mobile: 5 min)
    rate_hz: float = 0.0  # fixed request rate; 0: back to back
    idle_s: float = 1.0  # idle baseline before warm-up, when an energy source is sampled

    def __post_init__(self) -> None:
        if self.warmup_iters < 0 or self.min_iters < 1:
            raise ValueError("warmup_iters must be >= 0 and min_iters >= 1")
        if self.warmup_s < 0 or self.min_s < 0:
            raise ValueError("warmup_s and min_s must be >= 0")
        if self.max_s <= 0 or self.max_s < self.min_s:
            raise ValueError(f"max_s ({self.max_s}) must be > 0 and >= min_s ({self.min_s})")
        if self.rate_hz < 0 or self.idle_s < 0:
            raise ValueError("rate_hz and idle_s must be >= 0")
        if self.sample_period_s < 0:
            raise ValueError("sample_period_s must be >= 0 (0 turns the thermal sampler off)")

    def budget_s(self, *, cooldown: bool = False) -> float:
        """An upper bound on the wall time of one agent run, for the command timeout; with
        ``cooldown`` it includes the longest wait for the device to cool first."""
        return self.max_s + 3 * self.warmup_s + 120.0 + (self.cooldown_max_s if cooldown else 0.0)


@dataclass(frozen=True)
class MemoryUsage:
    """VmHWM (peak resident set) of the inference process at three points, in MB."""

    baseline_mb: float | None
    load_peak_mb: float | None
    peak_rss_mb: float | None
    pss_mb: float | None = None  # proportional set size after the run
    pss_source: str | None = None  # "dumpsys meminfo" (Android) or "smaps_rollup" (Linux)


@dataclass(frozen=True)
class RuntimeInfo:
    name: str
    module: str
    version: str


@dataclass(frozen=True)
class Cooldown:
    """The wait before a measurement for the hottest zone to fall below a threshold."""

    below_c: float
    start_c: float | None
    end_c: float | None
    waited_s: float
    reached: bool


@dataclass(frozen=True)
class BenchmarkResult:
    """One device x model variant measurement, as a test sees it and as results.json stores it."""

    device: str
    model: str
    format: str
    runtime: RuntimeInfo
    precision: str
    threads: int
    latency_ms: LatencySummary
    memory: MemoryUsage
    load_ms: float
    first_inference_ms: float
    iterations: int
    stopped_by: str
    protocol: LatencyProtocol
    latency_samples_ns: tuple[int, ...] = field(repr=False)
    start_offsets_ns: tuple[int, ...] = field(repr=False)
    outputs_file: str | None = None
    thermal: ThermalTrace | None = field(default=None, repr=False)
    throttle: ThrottleVerdict | None = None
    cooldown: Cooldown | None = None
    energy: EnergyReport | None = None
    warnings: tuple[str, ...] = ()
    rounds: int = 1  # > 1: interleaved with other variants in ABBA rounds, merged
    notes: tuple[str, ...] = ()  # what a native tool did not report and what stands in for it
    agent_phases_ms: dict[str, float] | None = None  # wall time of each step of the agent's run
    placement: CpuPlacement | None = None  # threads, the cores the run was allowed on, their kind
    modes: ModesCheck | None = None  # do the iterations fall into two separated modes?
    trace_file: str | None = None  # host path of the run's raw trace (a Perfetto trace), if kept

    @property
    def peak_rss_mb(self) -> float | None:
        return self.memory.peak_rss_mb


@dataclass(frozen=True)
class SustainedResult:
    """A sustained run: the measurement itself and its latency/thermal curve."""

    result: BenchmarkResult
    curve: SustainedCurve

    @property
    def throttle(self) -> ThrottleVerdict:
        assert self.result.throttle is not None
        return self.result.throttle
