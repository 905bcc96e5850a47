"""A lab run as the reports see it: two devices, latency tests over runtimes and precisions (with
budgets on one model), accuracy per slice, a sustained run, a throttled run, energy on the phone,
an interleaved comparison and a failed test; and a baseline run of the same identities."""

from __future__ import annotations

from pathlib import Path

from harness.compare import VerdictPolicy, compare_interleaved
from harness.probes.thermal import CurvePoint, SustainedCurve, ThermalSample, ThermalTrace, ThrottleVerdict
from harness.record import (
    AccuracyRecord,
    BudgetCheck,
    InterleavedEvidence,
    ResultRecord,
    SliceDrop,
    SliceRecord,
    SliceValue,
)
from harness.stats import compare_rounds, summarize_latency
from tests.factories import energy, make_record, samples, write_results

PHONE, BOARD = "virtual-pixel8", "virtual-rpi5"
SPEED = {"fp32": 1.0, "fp16": 0.8, "int8-dynamic": 0.55, "int8-static": 0.5}
BASE_MS = {"ppocr_det": 11.0, "face_detection": 0.6}
ACCURACY_DROP = {"fp32": 0.0, "fp16": 0.001, "int8-dynamic": 0.02, "int8-static": 0.035}


def _test(device: str, name: str, model: str, runtime: str, precision: str) -> str:
    return f"suites/{name}[{device}-{model}-{runtime}-{precision}]"


def latency_record(
    run_id: str, device: str, model: str, runtime: str, precision: str, shift: float, seed: int
) -> ResultRecord:
    slow = 2.0 if device == BOARD else 1.0
    median = BASE_MS[model] * SPEED[precision] * slow * shift
    fields: dict = {}
    if device == PHONE:
        fields["energy"] = energy(median * 3.1, uncertainty=median * 0.05)
    if model == "ppocr_det":
        p90 = median * 1.06
        rss = 180.0 if precision == "fp32" else 120.0
        fields["budgets"] = (
            BudgetCheck(
                metric="latency_p90_ms",
                limit=10.0 * slow,
                value=p90,
                ok=p90 <= 10.0 * slow,
                evidence=f"p90 {p90:.3g} ms",
            ),
            BudgetCheck(metric="peak_rss_mb", limit=150.0, value=rss, ok=rss <= 150.0, evidence=f"{rss} MB"),
        )
    return make_record(
        run_id,
        device=device,
        model=model,
        runtime=runtime,
        precision=precision,
        median_ms=median,
        seed=seed,
        n=300,
        test=_test(device, "vision/test_vision.py::test_latency_and_memory", model, runtime, precision),
        warnings=("VIRTUAL-DEVICE: sensors are simulated",),
        **fields,
    )


def accuracy_record(run_id: str, device: str, precision: str, seed: int) -> ResultRecord:
    drop = ACCURACY_DROP[precision]
    slices = {
        "clean": SliceRecord(
            samples=200, metrics={"accuracy": 0.93 - drop}, fp32={"accuracy": 0.93}, agreement=1 - drop
        )
    }
    for corruption, sensitivity in (("gaussian_noise", 0.04), ("motion_blur", 0.02), ("jpeg", 0.01)):
        for severity in (1, 3, 5):
            fp32 = 0.93 - sensitivity * severity
            value = fp32 - drop * severity / 2
            slices[f"{corruption}@{severity}"] = SliceRecord(
                samples=200, metrics={"accuracy": value}, fp32={"accuracy": fp32}, agreement=0.9
            )
    worst = min(slices, key=lambda name: slices[name].metrics["accuracy"])
    drops = {name: (s.fp32["accuracy"] - s.metrics["accuracy"]) * 100 for name, s in slices.items()}
    biggest = max(drops, key=lambda name: drops[name])
    accuracy = AccuracyRecord(
        task="text direction",
        metric="accuracy",
        precision=precision,
        clean=slices["clean"].metrics["accuracy"],
        worst_slice=SliceValue(slice=worst, value=slices[worst].metrics["accuracy"]),
        max_drop_vs_fp32_points=SliceDrop(slice=biggest, points=drops[biggest]),
        slices=slices,
    )
    median = 2.0 * SPEED[precision] * (2.0 if device == BOARD else 1.0)
    return make_record(
        run_id,
        device=device,
        model="ppocr_cls",
        precision=precision,
        median_ms=median,
        seed=seed,
        n=200,
        kind="accuracy",
        accuracy=accuracy,
        test=_test(
            device,
            "accuracy/test_accuracy.py::test_accuracy_per_slice",
            "ppocr_cls",
            "onnxruntime",
            precision,
        ),
    )


def sustained_record(run_id: str, seed: int) -> ResultRecord:
    points = tuple(
        CurvePoint(float(t), 11.0 if t < 10 else 21.0, 90, 40.0 + 1.5 * t, 1.0 if t < 10 else 0.55)
        for t in range(0, 40, 2)
    )
    curve = SustainedCurve(
        window_s=2.0, points=points, time_to_first_throttle_s=10.0, steady_over_initial=1.9
    )
    throttle = ThrottleVerdict(
        throttled=True,
        reasons=("frequency cap: policy8 ceiling 2910000 -> 1600000 kHz at 10.0 s at 54.9 C",),
        first_throttle_s=10.0,
        max_temp_c=98.5,
        min_ceiling_ratio=0.55,
        drift_ratio=1.9,
        drifted=True,
    )
    return make_record(
        run_id,
        device=PHONE,
        model="ppocr_det",
        median_ms=16.0,
        seed=seed,
        kind="sustained",
        sustained=curve,
        throttle=throttle,
        test=_test(PHONE, "thermal/test_sustained.py::test_sustained", "ppocr_det", "onnxruntime", "fp32"),
    )


def throttled_record(run_id: str, seed: int) -> ResultRecord:
    trace = ThermalTrace(
        period_s=0.25,
        zones=("cpu",),
        policies=("policy0",),
        cpuinfo_max_khz=(2400000,),
        samples=tuple(
            ThermalSample(
                t * 0.25, (60.0 + t,), (2400000 if t < 8 else 1500000,), (2400000 if t < 8 else 1500000,)
            )
            for t in range(16)
        ),
    )
    throttle = ThrottleVerdict(
        throttled=True,
        reasons=("frequency cap: policy0 ceiling 2400000 -> 1500000 kHz at 2.0 s at 68.0 C",),
        first_throttle_s=2.0,
        max_temp_c=75.0,
        min_ceiling_ratio=0.625,
        drift_ratio=1.1,
        drifted=False,
    )
    return make_record(
        run_id,
        device=BOARD,
        model="hand_landmark",
        runtime="litert",
        precision="fp16",
        median_ms=4.0,
        seed=seed,
        thermal_trace=trace,
        throttle=throttle,
        test=_test(
            BOARD, "vision/test_vision.py::test_latency_and_memory", "hand_landmark", "litert", "fp16"
        ),
    )


def drifted_record(run_id: str, seed: int) -> ResultRecord:
    """No thermal sensor on the device: throttling not measured, only latency drift."""
    throttle = ThrottleVerdict(
        throttled=None,
        reasons=("latency drift: last/first tenth median ratio 1.22",),
        first_throttle_s=None,
        max_temp_c=None,
        min_ceiling_ratio=None,
        drift_ratio=1.22,
        drifted=True,
    )
    return make_record(
        run_id,
        device=BOARD,
        model="silero_vad",
        median_ms=0.07,
        seed=seed,
        throttle=throttle,
        test=_test(BOARD, "audio/test_audio.py::test_vad_latency", "silero_vad", "onnxruntime", "fp32"),
    )


def failed_record(run_id: str) -> ResultRecord:
    return make_record(
        run_id,
        device=BOARD,
        model="ppocr_rec",
        median_ms=None,
        status="error",
        error="ConnectionLost: device 'virtual-rpi5': the connection dropped",
        test=_test(BOARD, "ocr/test_ocr.py::test_ocr_latency", "ppocr_rec", "onnxruntime", "fp32"),
    )


def run_records(run_id: str, shift: float = 1.0, seed: int = 0) -> list[ResultRecord]:
    records = []
    index = seed * 1000
    for device in (PHONE, BOARD):
        for model in ("ppocr_det", "face_detection"):
            for precision in ("fp32", "fp16", "int8-dynamic", "int8-static"):
                runtimes = (
                    ("onnxruntime", "litert")
                    if model == "face_detection" and precision == "fp16"
                    else ("onnxruntime",)
                )
                for runtime in runtimes:
                    index += 1
                    regressed = shift if (model, precision) == ("ppocr_det", "int8-dynamic") else 1.0
                    records.append(
                        latency_record(run_id, device, model, runtime, precision, regressed, index)
                    )
        for precision in ("fp32", "fp16", "int8-dynamic", "int8-static"):
            index += 1
            records.append(accuracy_record(run_id, device, precision, index))
    records += [
        sustained_record(run_id, index + 1),
        throttled_record(run_id, index + 2),
        drifted_record(run_id, index + 3),
    ]
    return records


def interleaved(candidate: ResultRecord, baseline: ResultRecord) -> ResultRecord:
    """The candidate compared in ABBA rounds with the baseline's artifact (as --interleave-baseline)."""
    base_rounds = [samples(candidate.median_ms or 1.0, 900 + r, 40) for r in range(4)]
    cand_rounds = [samples((candidate.median_ms or 1.0) * 1.01, 950 + r, 40) for r in range(4)]
    result = compare_rounds(base_rounds, cand_rounds, noise_floor=0.02)
    evidence = InterleavedEvidence(
        rounds=4,
        baseline_artifact="host cache",
        baseline_latency_ms=summarize_latency([int(v * 1e6) for r in base_rounds for v in r]),
        baseline_round_medians_ms=tuple(float(sorted(r)[20]) for r in base_rounds),
        candidate_round_medians_ms=tuple(float(sorted(r)[20]) for r in cand_rounds),
    )
    comparison = compare_interleaved(candidate, baseline, result, evidence, VerdictPolicy())
    return candidate.model_copy(update={"comparison": comparison})


def write_lab(folder: Path) -> tuple[Path, str, str]:
    """``base`` and ``cand`` run folders in ``folder``; cand carries one interleaved comparison,
    one regression (ppocr_det int8-dynamic +12%) and a failed test."""
    base = run_records("base", 1.0, 1)
    cand = run_records("cand", 1.12, 2)
    cand.append(failed_record("cand"))
    face = next(
        i
        for i, r in enumerate(cand)
        if r.model == "face_detection" and r.device == PHONE and r.precision == "fp32"
    )
    cand[face] = interleaved(cand[face], next(r for r in base if r.identity() == cand[face].identity()))
    write_results(folder, "base", base, started_at="2026-11-29T02:30:00Z", git_commit="a" * 40)
    write_results(
        folder, "cand", cand, started_at="2026-11-30T02:30:00Z", git_commit="b" * 40, git_branch="pr-7"
    )
    return folder, "base", "cand"


def write_history(folder: Path, runs: int = 8, step_at: int = 5) -> list[str]:
    """``runs`` nightly runs on main, one a day; from run ``step_at`` on ppocr_det int8-dynamic is
    15% slower (and that run recorded a regression against the one before)."""
    from harness.compare import compare_runs

    ids = []
    previous: list[ResultRecord] = []
    for day in range(runs):
        run_id = f"night-{day:02d}"
        shift = 1.15 if day >= step_at else 1.0
        records = [
            r
            for r in run_records(run_id, shift, seed=day + 10)
            if r.kind == "latency" and r.model in ("ppocr_det", "face_detection") and r.device == PHONE
        ]
        if previous:
            by_identity = {r.identity(): r for r in previous}
            records = [
                r.model_copy(
                    update={"comparison": compare_runs(r, by_identity.get(r.identity()), VerdictPolicy())}
                )
                for r in records
            ]
        write_results(
            folder,
            run_id,
            records,
            started_at=f"2026-11-{day + 1:02d}T02:30:00Z",
            git_commit=f"{day:02d}" + "c" * 38,
        )
        previous = records
        ids.append(run_id)
    return ids
