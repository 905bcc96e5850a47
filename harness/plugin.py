"""pytest face of EdgeLab: options, the ``edge`` marker and fixture, results as tests finish.

Thin on purpose: it turns pytest's options into one frozen RunOptions and pytest's outcomes into
records; selection lives in config.py and models/variants.py, everything else in session.py.
"""

from __future__ import annotations

import os
import shutil
import sys
import time
from collections.abc import Callable, Generator, Iterator, Sequence
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any

import pytest

from harness.accuracy import AccuracyReport
from harness.catalog import NoEvaluation
from harness.config import Fleet, load_fleet, thread_count
from harness.datasets.sources import DatasetError
from harness.errors import ConfigError, DataError, DeviceUnhealthy, EdgeLabError, ModelError, NotMeasurable
from harness.interleave import run_interleaved
from harness.measurement import BenchmarkResult, LatencyProtocol, SustainedResult
from harness.models.project import DEFAULT_MODELS_FILE
from harness.models.recipes import RecipeRefused
from harness.models.variants import KNOWN_PRECISIONS, KNOWN_RUNTIMES, Variant, parse_choice
from harness.probes.thermal import SustainedCurve, sustained_curve
from harness.record import Kind, ResultRecord, test_id_of
from harness.report import write_reports
from harness.report.github import default_report_url
from harness.report.terminal import terminal_lines
from harness.session import DEFAULT_PROTOCOL, INTERLEAVE_ROUNDS, Lab, Measured, RunOptions
from harness.stats import NOISE_FLOOR
from harness.store.db import StoreError, resolve_url
from harness.store.reconcile import reconcile
from harness.store.results_json import new_run_id


@dataclass(frozen=True)
class Selection:
    """What the command line chose for parametrization, resolved and validated once per run."""

    devices: tuple[str, ...]
    runtimes: tuple[str, ...] | None
    precisions: tuple[str, ...] | None


@dataclass(frozen=True)
class EdgeParam:
    """One parametrization of the ``edge`` fixture: a device and a model variant."""

    device: str
    variant: Variant


LAB_KEY = pytest.StashKey[Lab]()
SELECTION_KEY = pytest.StashKey[Selection]()
REPORTS_KEY = pytest.StashKey[tuple[Path, Path]]()
TARGET_KEY = pytest.StashKey["EdgeTarget"]()
UNREACHED_KEY = pytest.StashKey[dict[str, str]]()  # device -> the test that reported it


class EdgeTarget:
    """What a test gets from the ``edge`` fixture: a device x variant it can measure. Each call
    hands its own settings to the session, which resolves them against the command line."""

    def __init__(self, lab: Lab, param: EdgeParam, item: pytest.Item) -> None:
        self.lab = lab
        self.device = param.device
        self.variant = param.variant
        self.model = param.variant.model
        self.runtime = param.variant.runtime
        self.precision = param.variant.precision
        self._item = item
        self.test_id = test_id_of(item.nodeid, param.device)
        self.kind: Kind = "latency"
        self.measured: Measured | None = None
        self.recorded = False
        self.started = time.monotonic()
        self.curve: SustainedCurve | None = None
        self.accuracy: AccuracyReport | None = None

    @property
    def result(self) -> BenchmarkResult | None:
        return self.measured.result if self.measured is not None else None

    def benchmark(
        self,
        *,
        warmup_iters: int | None = None,
        warmup_s: float | None = None,
        min_iters: int | None = None,
        min_s: float | None = None,
        max_s: float | None = None,
        sample_period_s: float | None = None,
        rate_hz: float | None = None,
        threads: int | None = None,
        inputs: Path | None = None,
        max_iters: int | None = None,
        cooldown_below_c: float | None = None,
    ) -> BenchmarkResult:
        """Measure latency and memory of this variant on this device. Each setting: this call's
        argument, then the command line, then the default (devices.yaml for threads)."""
        settings = {
            "warmup_iters": warmup_iters,
            "warmup_s": warmup_s,
            "min_iters": min_iters,
            "min_s": min_s,
            "max_s": max_s,
            "sample_period_s": sample_period_s,
            "max_iters": max_iters,
            "rate_hz": rate_hz,
        }
        return self._measure(
            "latency", settings, threads=threads, inputs=inputs, cooldown_below_c=cooldown_below_c
        )

    def _measure(
        self,
        kind: Kind,
        settings: dict[str, Any],
        *,
        threads: int | None = None,
        inputs: Path | None = None,
        cooldown_below_c: float | None = None,
    ) -> BenchmarkResult:
        wrong: str | None = None
        try:
            measured = self.lab.benchmark(
                self.device,
                self.variant,
                test_id=self.test_id,
                kind=kind,
                settings=settings,
                threads=threads,
                inputs=inputs,
                cooldown_below_c=cooldown_below_c,
            )
        except RecipeRefused as refused:
            pytest.skip(str(refused))  # a recipe this model cannot take: never a silent copy
        except (DataError, ConfigError, ModelError) as exc:  # the team's inputs or file
            wrong = str(exc)
        if wrong is not None:  # failed outside the except: one line, not the exception's chain
            pytest.fail(wrong, pytrace=False)
        self.measured, self.kind = measured, kind
        return measured.result

    def evaluate(
        self,
        *,
        corruptions: Sequence[str] | None = None,
        severities: Sequence[int] = (1, 3, 5),
        seed: int = 0,
    ) -> AccuracyReport:
        """Accuracy of this variant on this device over its real data (the zoo task's, or the
        dataset models.yaml declares), clean and under every corruption x severity, next to the
        host run of its fp32 variant; recorded with the test. Latency and memory of the same pass
        are in ``edge.result``. ``corruptions`` default to the task's or models.yaml's; an entry may
        be ``name@severity``."""
        wrong: str | None = None
        try:
            measured, report = self.lab.evaluate(
                self.device, self.variant, corruptions=corruptions, severities=severities, seed=seed
            )
        except (DatasetError, RecipeRefused, NoEvaluation, NotMeasurable) as missing:  # no data, espeak-ng
            pytest.skip(str(missing))  # absent, a refused recipe, .onnx outputs on a phone without Python
        except (DataError, ConfigError) as exc:  # the team's data or metric does not fit
            wrong = str(exc)
        if wrong is not None:  # failed outside the except: one line, not the exception's chain
            pytest.fail(wrong, pytrace=False)
        self.measured, self.accuracy, self.kind = measured, report, "accuracy"
        return report

    def interleaved(
        self, others: Sequence[str], *, rounds: int = 4, **settings: Any
    ) -> dict[str, BenchmarkResult]:
        """Measure this variant and the first variant of each model in ``others`` (any reference
        the marker takes) on this device in ABBA rounds (drift falls on all alike); every result is
        recorded. Returns results by variant id; ``edge.result`` is this test's own."""
        extra = [self.lab.catalog.variants(model)[0] for model in others]
        measured: dict[str, Measured] = {}

        def measure(variant: Variant, protocol: LatencyProtocol) -> BenchmarkResult:
            measured[variant.id] = self.lab.benchmark(
                self.device, variant, kind="interleaved", settings=protocol.__dict__
            )
            return measured[variant.id].result

        base = LatencyProtocol(**self.lab.options.merged_protocol(settings))
        results = run_interleaved([self.variant, *extra], base, rounds, measure)
        own = measured[self.variant.id]
        self.measured = Measured(results[self.variant.id], own.deploy, own.model, own.runner)
        self.kind = "interleaved"
        for variant in extra:
            last = measured[variant.id]
            self.lab.record(
                test=f"{self._item.nodeid}::interleaved[{variant.id}]",
                status="passed",
                device=self.device,
                variant=variant,
                kind="interleaved",
                measured=Measured(results[variant.id], last.deploy, last.model, last.runner),
            )
        return results

    def sustained(
        self,
        duration_s: float | None = None,
        *,
        window_s: float = 1.0,
        sample_period_s: float = 0.25,
        threads: int | None = None,
    ) -> SustainedResult:
        """Run back to back for ``duration_s`` (no cooldown, short warm-up) and return the
        latency curve per window with the thermal state, time to first throttle and the
        steady-state / initial latency ratio."""
        duration = duration_s if duration_s is not None else self.lab.options.sustained_s
        settings = {
            "warmup_iters": 1,
            "warmup_s": 0.0,
            "min_iters": 1,
            "min_s": duration,
            "max_s": duration,
            "sample_period_s": sample_period_s,
            "max_iters": 10_000_000,
        }
        result = self._measure("sustained", settings, threads=threads)
        assert result.throttle is not None  # the agent judges drift on every run
        self.curve = sustained_curve(
            result.latency_samples_ns, result.start_offsets_ns, result.thermal, result.throttle, window_s
        )
        return SustainedResult(result, self.curve)


# -- options and configuration -------------------------------------------------------------------


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("edgelab", "EdgeLab: on-device ML benchmarks")
    group.addoption(
        "--device",
        default="local",
        help="Device(s) to run on: NAME, a comma list, tag:TAG or all (default: local).",
    )
    group.addoption(
        "--devices-file",
        default=None,
        help="Fleet inventory (default: devices.yaml in the rootdir; only 'local' if absent).",
    )
    group.addoption(
        "--models-file",
        default=None,
        help="The project's models: names, files, inputs, data, metrics, budgets (default: models.yaml "
        "in the rootdir, if any; docs/models-yaml.md).",
    )
    group.addoption(
        "--runtime",
        default="all",
        help=f"Runtime(s) to run, comma list of {', '.join(KNOWN_RUNTIMES)} (default: all).",
    )
    group.addoption(
        "--precision",
        default="all",
        help=f"Precision(s) to run, comma list of {', '.join(KNOWN_PRECISIONS)} (default: all).",
    )
    group.addoption(
        "--reports-dir",
        default="reports",
        help="Where runs are written, relative to the rootdir (default: reports).",
    )
    group.addoption(
        "--results-db",
        default=None,
        help="Results database URL: sqlite:///PATH or postgresql://USER:PASSWORD@HOST:PORT/DB "
        "(default: sqlite results.db in --reports-dir; 'none' for results.json only).",
    )
    group.addoption(
        "--retries",
        type=int,
        default=0,
        help="Reconnect and retry a measurement this many times when the device connection is lost "
        "(default: 0).",
    )
    group.addoption(
        "--no-health-check",
        action="store_true",
        default=False,
        help="Skip the pre-use health check (free disk, battery, temperature) and quarantine.",
    )
    group.addoption(
        "--lease-timeout",
        type=float,
        default=600.0,
        help="Seconds to wait for a device another run holds (a labgrid place: whoever is ahead in "
        "labgrid's queue) before its tests error (default: 600).",
    )
    _add_comparison_options(group)
    group.addoption(
        "--no-report",
        action="store_true",
        default=False,
        help="Do not write index.html and summary.md at the end of the run (default: write them).",
    )
    group.addoption(
        "--keep-outputs",
        action="store_true",
        default=False,
        help="Keep edge.evaluate()'s raw model outputs in reports/<run>/outputs/ after scoring "
        "(default: deleted once scored; they can be hundreds of MB).",
    )
    group.addoption("--run-id", default=None, help="Name of this run (default: UTC time + random suffix).")
    group.addoption(
        "--threads",
        type=thread_count,
        default=None,
        help="Intra-op threads of every runtime, >= 1 (default: threads in devices.yaml, else 1).",
    )
    for name, kind, text in (
        ("warmup-iters", int, "Minimum warm-up iterations"),
        ("warmup-s", float, "Minimum warm-up seconds"),
        ("min-iters", int, "Minimum timed iterations"),
        ("min-s", float, "Minimum timed seconds"),
        ("max-s", float, "Maximum timed seconds"),
        ("sample-period-s", float, "Thermal sampler period on the device, 0 = off"),
        ("rate-hz", float, "Fixed request rate in the timed phase, 0 = back to back"),
        ("idle-s", float, "Idle baseline before warm-up when energy is sampled"),
        ("cooldown-max-s", float, "Longest wait for --cooldown-below-c / the device's cooldown_below_c"),
    ):
        default = getattr(DEFAULT_PROTOCOL, name.replace("-", "_"))
        group.addoption(
            f"--{name}",
            type=kind,
            default=None,
            help=f"{text}, unless the test sets it (default: {default}).",
        )
    _add_thermal_options(group)


def _add_comparison_options(group: pytest.OptionGroup) -> None:
    group.addoption(
        "--baseline",
        default=None,
        help="Compare each result with a baseline: a run id, branch:NAME (newest run on that branch "
        "with a result of the same test, device, variant and kind) or a results.json path "
        "(default: no comparison).",
    )
    group.addoption(
        "--interleave-baseline",
        action="store_true",
        default=False,
        help="With --baseline: measure the baseline's model file in this session too, in ABBA rounds "
        "with each result, and judge from those rounds (default: compare with the baseline run).",
    )
    group.addoption(
        "--interleave-rounds",
        type=int,
        default=INTERLEAVE_ROUNDS,
        help=f"Rounds per side with --interleave-baseline (default: {INTERLEAVE_ROUNDS}).",
    )
    group.addoption(
        "--fail-on-regression",
        action="store_true",
        default=False,
        help="A regression against --baseline fails the test, with the evidence (default: off).",
    )
    group.addoption(
        "--noise-floor",
        type=float,
        default=None,
        help="Latency changes within this fraction are never regressions, on every device "
        f"(default: each device's noise_floor in devices.yaml, else {NOISE_FLOOR}).",
    )


def _add_thermal_options(group: pytest.OptionGroup) -> None:
    group.addoption(
        "--cooldown-below-c",
        type=float,
        default=None,
        help="Before each measurement, wait until the hottest thermal zone is below this "
        "(default: the device's cooldown_below_c in devices.yaml, else no wait).",
    )
    group.addoption(
        "--energy",
        default=None,
        choices=["auto", "none", "odpm", "rapl", "ina3221", "tegrastats", "battery", "external"],
        help="Energy source for every device (default: each device's energy in devices.yaml, auto).",
    )
    group.addoption(
        "--lab-profiles",
        default="pixel8,rpi5",
        help="Profiles of the virtual_lab fixture's devices (default: pixel8,rpi5).",
    )
    group.addoption(
        "--lab-tau-s",
        type=float,
        default=None,
        help="Thermal time constant of the virtual_lab fixture's devices (default: the profile's).",
    )
    group.addoption(
        "--sustained-s",
        type=float,
        default=40.0,
        help="Duration of edge.sustained() runs when the test does not set it (default: 40).",
    )


def _fleet(config: pytest.Config) -> Fleet:
    """``--devices-file``, else devices.yaml in the rootdir, else ``local`` alone."""
    devices_file = config.option.devices_file
    if devices_file is None and (config.rootpath / "devices.yaml").exists():
        devices_file = str(config.rootpath / "devices.yaml")
    return load_fleet(devices_file)


def _models_file(config: pytest.Config) -> Path | None:
    """``--models-file`` as given, else models.yaml in the rootdir when there is one."""
    if config.option.models_file is not None:
        return Path(config.option.models_file)
    default = config.rootpath / DEFAULT_MODELS_FILE
    return default if default.is_file() else None


def _options(config: pytest.Config, fleet: Fleet) -> tuple[RunOptions, Selection]:
    option = config.option
    devices = tuple(device.name for device in fleet.select(option.device))
    runtimes = parse_choice("--runtime", option.runtime, KNOWN_RUNTIMES)
    precisions = parse_choice("--precision", option.precision, KNOWN_PRECISIONS)
    protocol = {
        spec.name: getattr(option, spec.name)
        for spec in fields(LatencyProtocol)
        if getattr(option, spec.name, None) is not None
    }
    worker_input: dict[str, Any] = getattr(config, "workerinput", {})
    reports_dir = Path(option.reports_dir)
    if not reports_dir.is_absolute():
        reports_dir = config.rootpath / reports_dir
    options = RunOptions(
        reports_dir=reports_dir,
        run_id=option.run_id or worker_input.get("edgelab_run_id") or new_run_id(),
        devices=devices,
        results_db=resolve_url(option.results_db, reports_dir),
        threads=option.threads,
        protocol=protocol,
        cooldown_below_c=option.cooldown_below_c,
        energy=option.energy,
        sustained_s=option.sustained_s,
        lease_timeout_s=option.lease_timeout,
        health_checks=not option.no_health_check,
        retries=option.retries,
        baseline=option.baseline,
        fail_on_regression=option.fail_on_regression,
        interleave_baseline=option.interleave_baseline,
        interleave_rounds=option.interleave_rounds,
        noise_floor=option.noise_floor,
        keep_outputs=option.keep_outputs,
        command=tuple(config.invocation_params.args),
        rootdir=config.rootpath,
        models_file=_models_file(config),
    )
    return options, Selection(devices, runtimes, precisions)


@pytest.hookimpl(optionalhook=True, tryfirst=True)
def pytest_xdist_auto_num_workers(config: pytest.Config) -> int | None:
    """``-n auto``: one worker per selected device (runs before configure: select here). First of
    the hook's answers: xdist's own (the CPU count) would otherwise win whenever pytest registers
    xdist after this plugin, and 8 devices ran two at a time on a 2-core host.
    ``PYTEST_XDIST_AUTO_NUM_WORKERS`` still decides when set."""
    if os.environ.get("PYTEST_XDIST_AUTO_NUM_WORKERS"):
        return None
    try:
        return max(1, len(_fleet(config).select(config.option.device)))
    except EdgeLabError:
        return None  # pytest_configure reports the selection error properly


@pytest.hookimpl(optionalhook=True)
def pytest_xdist_make_scheduler(config: pytest.Config, log: Any) -> Any:
    """With ``-n``: every test of a device goes to one worker, in order (devices in parallel)."""
    selection = config.stash.get(SELECTION_KEY, None)
    if selection is None or config.option.dist not in ("load", "loadgroup"):
        return None  # another --dist mode the user asked for
    from harness.xdist_scheduling import DeviceScheduling

    return DeviceScheduling(config, log, selection.devices)


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers",
        "edge(model, runtimes=None, precisions=None): run this test on every selected device x "
        "variant of MODEL: a zoo name, a models.yaml name, the path of a .tflite/.onnx file (relative "
        "to the rootdir), or a list of them.",
    )
    try:
        fleet = _fleet(config)
        options, selection = _options(config, fleet)
        lab = Lab(fleet, options)
    except StoreError as exc:
        raise pytest.UsageError(f"edgelab: --results-db: {exc}") from None
    except (EdgeLabError, ValueError) as exc:
        raise pytest.UsageError(f"edgelab: {exc}") from None
    lab.notify = _terminal_notice(config)
    controller = not hasattr(config, "workerinput")
    worker_input: dict[str, Any] = getattr(config, "workerinput", {})
    lab.started_at = worker_input.get("edgelab_started_at", lab.started_at)  # the controller's start
    if controller and lab.store is not None:
        try:
            added = reconcile(lab.store, options.reports_dir, skip=options.run_id)
        except EdgeLabError as exc:  # the store is busy or failing: this run goes on, the next one retries
            lab.notify(f"edgelab: earlier results not yet in the database stay in their results.json: {exc}")
        else:
            if added:
                lab.notify(f"edgelab: stored {added} result(s) that earlier runs left in results.json only")
    config.stash[LAB_KEY] = lab
    config.stash[SELECTION_KEY] = selection
    if config.pluginmanager.hasplugin("xdist"):
        config.pluginmanager.register(_XdistRunId(options.run_id, lab.started_at), "edgelab-xdist")


def _terminal_notice(config: pytest.Config) -> Callable[[str], None]:
    """Notices a user must see while a test runs (a device leased by another run: the wait can
    last minutes), written past pytest's output capture, as ``capsys.disabled()`` does."""

    def notify(message: str) -> None:
        reporter = config.pluginmanager.getplugin("terminalreporter")
        capture = config.pluginmanager.getplugin("capturemanager")
        if capture is None:
            print(message, file=sys.__stderr__ or sys.stderr, flush=True)
            return
        with capture.global_and_fixture_disabled():  # stderr is the terminal's again meanwhile
            if reporter is not None:
                reporter.ensure_newline()  # not in the middle of a progress line
                reporter.flush()
            print(message, file=sys.stderr, flush=True)

    return notify


class _XdistRunId:
    """Hands the controller's run id and start to every worker so they append to one results.json."""

    def __init__(self, run_id: str, started_at: str) -> None:
        self.run_id = run_id
        self.started_at = started_at

    def pytest_configure_node(self, node: Any) -> None:
        node.workerinput["edgelab_run_id"] = self.run_id
        node.workerinput["edgelab_started_at"] = self.started_at


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    lab = session.config.stash.get(LAB_KEY, None)
    if lab is not None and not hasattr(session.config, "workerinput"):
        lab.finish()  # the controller marks the run complete once every worker is done
        if not session.config.option.no_report:
            written = write_reports(lab.reports_dir, lab.run_id, lab.store, report_url=default_report_url())
            if written is not None:
                session.config.stash[REPORTS_KEY] = written


def pytest_unconfigure(config: pytest.Config) -> None:
    lab = config.stash.get(LAB_KEY, None)
    if lab is not None:
        lab.close()


# -- parametrization and the fixture ------------------------------------------------------------


def _as_tuple(value: str | Sequence[str] | None) -> tuple[str, ...] | None:
    if value is None:
        return None
    return (value,) if isinstance(value, str) else tuple(value)


def _intersect(a: tuple[str, ...] | None, b: tuple[str, ...] | None) -> tuple[str, ...] | None:
    if a is None:
        return b
    if b is None:
        return a
    return tuple(item for item in a if item in b)


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    if "edge" not in metafunc.fixturenames:
        return
    marker = metafunc.definition.get_closest_marker("edge")
    if marker is None:
        raise ValueError(
            f"{metafunc.definition.nodeid} uses the 'edge' fixture without "
            "@pytest.mark.edge(model=...): name the model(s) to run"
        )
    models = _as_tuple(marker.kwargs.get("model", marker.args[0] if marker.args else None))
    if not models:
        raise ValueError(f"{metafunc.definition.nodeid}: @pytest.mark.edge needs model=NAME or a list")
    selection = metafunc.config.stash[SELECTION_KEY]
    runtimes = _intersect(_as_tuple(marker.kwargs.get("runtimes")), selection.runtimes)
    precisions = _intersect(_as_tuple(marker.kwargs.get("precisions")), selection.precisions)
    params: list[Any] = []
    disjoint = [
        f"the marker's {name} {'/'.join(marked)} and --{flag} {'/'.join(chosen)} have none in common"
        for name, flag, marked, chosen in (
            ("runtimes", "runtime", _as_tuple(marker.kwargs.get("runtimes")), selection.runtimes),
            ("precisions", "precision", _as_tuple(marker.kwargs.get("precisions")), selection.precisions),
        )
        if marked is not None and chosen is not None and not set(marked) & set(chosen)
    ]
    catalog = metafunc.config.stash[LAB_KEY].catalog
    for device in selection.devices:
        for model in models:
            problem: str | None = None
            try:
                variants, reason = catalog.select(model, runtimes, precisions)
            except EdgeLabError as exc:  # an unknown name, a missing file, neither format, bad inputs
                problem = f"edgelab: {metafunc.definition.nodeid}: {exc}"
            if problem is not None:  # outside the except: one line, not the exception's chain
                pytest.fail(problem, pytrace=False)
            if disjoint:
                variants, reason = [], "; ".join(disjoint)
            params += [
                pytest.param(
                    EdgeParam(device, v),
                    id=f"{device}-{v.id}",
                    marks=[pytest.mark.skip(reason=v.unavailable)] if v.unavailable else [],
                )
                for v in variants
            ]
            if not variants:
                params.append(
                    pytest.param(None, id=f"{device}-{model}", marks=pytest.mark.skip(reason=reason))
                )
    metafunc.parametrize("edge", params, indirect=True)


@pytest.fixture
def edge(request: pytest.FixtureRequest) -> EdgeTarget:
    """A selected device x model variant; call ``edge.benchmark()`` to measure it."""
    param = getattr(request, "param", None)
    if not isinstance(param, EdgeParam):
        raise pytest.UsageError("the 'edge' fixture is parametrized by @pytest.mark.edge(model=...)")
    lab = request.config.stash[LAB_KEY]
    target = EdgeTarget(lab, param, request.node)
    request.node.stash[TARGET_KEY] = target
    first = request.config.stash.setdefault(UNREACHED_KEY, {})
    try:
        lab.device(param.device)  # connect in setup: an absent device is an error, not a failure
    except DeviceUnhealthy as unhealthy:
        pytest.skip(str(unhealthy))  # an unhealthy or quarantined device is skipped with the reason
    except EdgeLabError as failure:
        unreached = f"{type(failure).__name__}: {failure}"
    else:
        return target
    # One error per device, in one line (raised outside the except: no chained traceback); its
    # later tests would only repeat it.
    if param.device in first:
        pytest.skip(f"device '{param.device}' was not reached (see the error of {first[param.device]})")
    first[param.device] = request.node.nodeid
    pytest.fail(unreached, pytrace=False)


# -- recording -----------------------------------------------------------------------------------


def _measured(value: float | None, spec: str) -> str:
    return "not measured" if value is None else format(value, spec)


def _junit_properties(record: ResultRecord) -> list[tuple[str, str]]:
    """What a CI system shows without opening the report."""
    properties = [
        ("edgelab.device", record.device),
        ("edgelab.variant", f"{record.model}-{record.runtime}-{record.precision}"),
        ("edgelab.kind", record.kind),
    ]
    latency = record.latency_ms
    if latency is not None:
        properties += [
            ("edgelab.latency_median_ms", f"{latency.median:.4f}"),
            ("edgelab.latency_p90_ms", f"{latency.p90:.4f}"),
            ("edgelab.latency_samples", str(latency.samples)),
        ]
    if record.runtime_version:
        properties.append(("edgelab.runtime_version", record.runtime_version))
    memory, energy = record.memory, record.energy
    if record.status == "passed":  # what a passed test did not measure is said, never left out or 0
        properties += [
            ("edgelab.peak_rss_mb", _measured(memory.peak_rss_mb if memory else None, ".1f")),
            ("edgelab.pss_mb", _measured(memory.pss_mb if memory else None, ".1f")),
            (
                "edgelab.energy_mj_per_inference",
                _measured(energy.mj_per_inference if energy else None, ".6g"),
            ),
        ]
        if energy is not None and energy.mj_per_inference is not None:
            properties.append(("edgelab.energy_source", energy.source))
    if record.throttle is not None:
        throttled = record.throttle.throttled
        properties.append(("edgelab.throttled", "not measured" if throttled is None else str(throttled)))
        if record.throttle.reasons:
            properties.append(("edgelab.throttle_reasons", "; ".join(record.throttle.reasons)))
    if record.accuracy is not None:
        drop = record.accuracy.max_drop_vs_fp32_points
        properties.append(("edgelab.accuracy_clean", f"{record.accuracy.clean:.4f}"))
        if drop is not None:
            properties.append(("edgelab.max_drop_vs_fp32_points", f"{drop.points:.2f} ({drop.slice})"))
    if record.comparison is not None:
        comparison = record.comparison
        properties.append(("edgelab.verdict", str(comparison.verdict)))
        if comparison.baseline_run:
            properties.append(("edgelab.baseline_run", comparison.baseline_run))
        for metric in comparison.metrics:
            ci = ""
            if metric.ci_low is not None and metric.ci_high is not None:
                ci = f", 99% CI {metric.ci_low - 1:+.1%}..{metric.ci_high - 1:+.1%}"
            properties.append(
                (f"edgelab.verdict.{metric.metric}", f"{metric.verdict} ({metric.ratio - 1:+.1%}{ci})")
            )
    properties += [("edgelab.retry", note) for note in record.notes if note.startswith("retry ")]
    return properties


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Generator[None, Any, Any]:
    report: pytest.TestReport = yield
    target = item.stash.get(TARGET_KEY, None)
    finished = report.when == "call" or (report.when == "setup" and not report.passed)
    if target is None or target.recorded or not finished:
        return report
    target.recorded = True
    status = {"passed": "passed", "failed": "failed", "skipped": "skipped"}[report.outcome]
    if report.when == "setup" and report.failed:
        status = "error"
    error = None
    if call.excinfo is not None and not report.skipped:
        failed_by_us = call.excinfo.typename == "Failed"  # pytest.fail(): the message names the error
        error = str(call.excinfo.value) if failed_by_us else f"{call.excinfo.typename}: {call.excinfo.value}"
    record = target.lab.record(
        test=item.nodeid,
        status=status,  # type: ignore[arg-type]
        device=target.device,
        variant=target.variant,
        kind=target.kind,
        measured=target.measured,
        error=error,
        duration_s=round(time.monotonic() - target.started, 3),
        sustained=target.curve,
        accuracy=target.accuracy.record() if target.accuracy is not None else None,
    )
    item.user_properties.extend(_junit_properties(record))
    if status == "passed" and record.status == "failed":  # --fail-on-regression
        report.outcome = "failed"
        report.longrepr = f"EdgeLab {record.error}"
    return report


def pytest_terminal_summary(terminalreporter: Any, config: pytest.Config) -> None:
    lab = config.stash.get(LAB_KEY, None)
    if lab is None or not lab.results_written():
        return
    terminalreporter.section("edgelab results")
    records = lab.read_results()
    for line, red in terminal_lines(records):
        terminalreporter.write_line(line, red=red)
    terminalreporter.write_line(f"{len(records)} result(s) in {lab.results.path}")
    written = config.stash.get(REPORTS_KEY, None)
    if written is not None:
        terminalreporter.write_line(f"report: {written[0]}  PR summary: {written[1]}")


@pytest.fixture(scope="session")
def virtual_lab(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    """A virtual lab (virtual-pixel8 and virtual-rpi5) for this test session, torn down at the
    end even when tests fail; ``lab.fleet()`` gives its devices. Needs root for namespaces,
    cgroups and veth links (without root the devices run unisolated and say so)."""
    from harness.lab.manager import VirtualLab

    option = request.config.option
    profiles = [p.strip() for p in option.lab_profiles.split(",") if p.strip()]
    # sshd's ChrootDirectory refuses world-writable parents such as /tmp (and pytest's tmp_path).
    base = Path("/var/lib/edgelab/session-labs") if os.geteuid() == 0 else Path.home() / ".cache/edgelab/labs"
    base.mkdir(parents=True, exist_ok=True)
    root = base / f"{tmp_path_factory.getbasetemp().name}-{os.getpid()}"
    lab = VirtualLab(root)
    try:
        lab.up(profiles, tau_s=option.lab_tau_s)
        yield lab
    finally:
        lab.down(purge=True)
        shutil.rmtree(root, ignore_errors=True)
