"""``edgelab``: the command-line face (devices, doctor, cache, models, tools, lab, parse, report,
pr-comment, export).

Parses arguments and calls the library; every EdgeLabError becomes one clear line and exit 1.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Sequence
from pathlib import Path, PurePosixPath
from typing import TYPE_CHECKING, Any
from urllib.parse import urlparse

from harness import __version__
from harness.compare import VerdictPolicy
from harness.config import AdbDevice, AnyDevice, Fleet, LabgridDevice, SshDevice, load_fleet
from harness.errors import EdgeLabError
from harness.runners.base import DeviceProbe
from harness.session import Lab, RunOptions

if TYPE_CHECKING:
    from harness.catalog import Catalog
    from harness.models.spec import ModelSpec
    from harness.native_tools import ToolStatus


def _address(device: AnyDevice) -> str:
    if isinstance(device, LabgridDevice):
        return f"labgrid place {device.place} (coordinator {device.coordinator})"
    if isinstance(device, SshDevice):
        return f"{device.user}@{device.host}:{device.port}"
    if isinstance(device, AdbDevice):
        return f"{device.serial} (adb server {device.adb_host}:{device.adb_port})"
    return "this host"


def _fleet(arguments: argparse.Namespace) -> Fleet:
    return load_fleet(arguments.devices_file)


def cmd_devices(arguments: argparse.Namespace) -> int:
    from harness import health

    if arguments.release:
        was = health.release(arguments.release)
        print(f"{arguments.release}: {'released from quarantine' if was else 'was not quarantined'}")
        return 0
    fleet = _fleet(arguments)
    rows = [("NAME", "KIND", "ADDRESS", "TAGS", "WORKDIR")]
    for device in fleet.devices.values():
        tags = ",".join(device.tags) + (",virtual" if device.virtual and "virtual" not in device.tags else "")
        if health.status(device.name).get("quarantined"):
            tags += ",QUARANTINED"
        workdir = device.workdir or "(by what the place turns out to be)"
        rows.append((device.name, device.kind, _address(device), tags.strip(",") or "-", workdir))
    widths = [max(len(row[column]) for row in rows) for column in range(len(rows[0]))]
    for row in rows:
        print("  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)).rstrip())
    print(f"{len(fleet.devices)} device(s) in {fleet.source}")
    return 0


def _describe_probe(name: str, probe: DeviceProbe, workdir: str) -> list[str]:
    lines = [
        f"device:   {name}",
        f"os:       {probe.os.system} {probe.os.release} ({probe.os.machine})",
    ]
    android = probe.os.android
    if android:
        lines.append(
            f"android:  {android.get('manufacturer')} {android.get('model')}, "
            f"Android {android.get('release')} (SDK {android.get('sdk')}), SoC {android.get('soc')}"
        )
    python = probe.python
    lines += [
        f"cpu:      {probe.cpu.model} x{probe.cpu.cores} (online {probe.cpu.online})",
        f"python:   {python.version} at {python.executable}" if python else "python:   none (native runner)",
        f"numpy:    {probe.numpy or 'MISSING (pip install numpy on the device)'}",
        f"workdir:  {workdir}",
    ]
    for runtime, details in sorted(probe.runtimes.items()):
        if details.available:
            lines.append(f"runtime:  {runtime} {details.version} (module {details.module})")
        else:
            lines.append(f"runtime:  {runtime} unavailable: {details.error}")
    total, available = probe.memory_kb.get("MemTotal"), probe.memory_kb.get("MemAvailable", 0)
    if total:
        lines.append(f"memory:   {total // 1024} MB total, {available // 1024} MB available")
    return lines


def cmd_doctor(arguments: argparse.Namespace) -> int:
    fleet = _fleet(arguments)
    fleet[arguments.device]  # unknown names fail here, listing the known ones
    # the same options a pytest run has by default: the device's lease and its health check
    lab = Lab(fleet, RunOptions(devices=(arguments.device,), command=tuple(sys.argv)))
    try:
        session = lab.device(arguments.device)
        if arguments.json:
            document = {"device": arguments.device, "workdir": session.workdir, **session.probe.model_dump()}
            print(json.dumps(document, indent=2))
        else:
            print("\n".join(_describe_probe(arguments.device, session.probe, session.workdir)))
            setup = session.runner.setup
            print(f"runner:   {session.runner.kind} ({setup.bytes_pushed} bytes pushed)")
    finally:
        lab.close()
    return 0


def _catalog(arguments: argparse.Namespace) -> Catalog:
    from harness.catalog import Catalog

    rootdir = Path(arguments.rootdir).resolve()
    return Catalog.for_rootdir(rootdir, arguments.models_file)


def _describe_inputs(spec: ModelSpec) -> list[str]:
    lines = []
    for item in spec.inputs:
        dims = ", ".join("?" if axis in item.dynamic else str(dim) for axis, dim in enumerate(item.shape))
        runs = f" (runs at {list(item.shape)})" if item.dynamic else ""
        quantized = (
            f", quantized: scale {item.scale:.6g}, zero point {item.zero_point}" if item.quantized else ""
        )
        lines.append(f"  input   {item.name} [{dims}] {item.dtype}{runs}{quantized}")
    return lines


def _describe_model(spec: ModelSpec, path: Path | None) -> list[str]:
    from harness.models.spec import FileSource, source_kind

    cached = path is not None and not isinstance(spec.source, FileSource)
    return [
        f"{spec.name}  ({spec.origin})" + (f": {spec.description}" if spec.description else ""),
        f"  source  {source_kind(spec.source)} {spec.source.describe().split(' ', 1)[1]}",
        *([f"  cached  {path}"] if cached else []),
        f"  format  {spec.format}, {spec.precision} as shipped" + (f", {spec.task}" if spec.task else ""),
        f"  sha256  {spec.sha256}",
        *_describe_inputs(spec),
    ]


def cmd_cache(arguments: argparse.Namespace) -> int:
    from harness import devicecache

    fleet = _fleet(arguments)
    config = fleet[arguments.device]
    if arguments.action == "status":
        print("\n".join(devicecache.describe(devicecache.status(config))))
        return 0
    budget = devicecache.budget_bytes(config, fleet, arguments.max_mb)
    report = devicecache.prune(
        config,
        budget,
        lease_timeout_s=arguments.lease_timeout,
        notify=lambda message: print(message, file=sys.stderr, flush=True),
    )
    freed = sum(entry.size_bytes for entry in report.removed)
    for entry in report.removed:
        size = entry.size_bytes / devicecache.MB
        print(f"removed {entry.sha256[:12]}  {size:.1f} MB  {', '.join(entry.files)}")
    print(
        f"device '{config.name}': removed {len(report.removed)} entries ({freed / devicecache.MB:.1f} MB) "
        f"and {len(report.partials_removed)} stale partial file(s); the cache holds "
        f"{report.size_after / devicecache.MB:.1f} MB of a {budget / devicecache.MB:g} MB budget"
    )
    return 0


def cmd_models(arguments: argparse.Namespace) -> int:
    from harness.models import files, zoo

    if arguments.action == "fetch":
        specs = zoo.all_models()
        wanted = set(arguments.names) if arguments.names else {spec.name for spec in specs}
        for name in sorted(wanted):
            path = zoo.fetch(zoo.get(name))
            print(f"{name:<18} {path}")
        return 0
    catalog = _catalog(arguments)
    if arguments.action == "check":
        return _check_models(catalog)
    for spec in zoo.all_models():
        print("\n".join(_describe_model(spec, None)))
    project = catalog.project
    if project is None:
        print(f"no project models (no {arguments.models_file or 'models.yaml'} in {catalog.rootdir})")
        return 0
    for name, entry in project.models.items():
        if entry.url is not None and entry.sha256 is not None:
            name_in_cache = PurePosixPath(urlparse(entry.url).path).name or "model"
            if files.cached_url(entry.url, entry.sha256, name_in_cache) is None:
                print(f"{name}  (models.yaml)\n  source  url {entry.url}\n  sha256  {entry.sha256}")
                print("  inputs  not fetched yet (edgelab models check fetches it)")
                continue
        resolved = catalog.model(name)
        print("\n".join(_describe_model(resolved.spec, resolved.path)))
    print(f"{len(project.models)} project model(s) in {project.source}")
    return 0


def _check_models(catalog: Catalog) -> int:
    """Each project model: resolved (downloaded), loaded and run once on the host, its variants'
    calibration and its dataset checked, its metric called on a few real samples."""
    project = catalog.project
    if project is None:
        raise EdgeLabError(f"no models.yaml in {catalog.rootdir}; pass --models-file")
    failed = 0
    for name in project.names():
        try:
            summary = _check_one(catalog, name)
        except EdgeLabError as exc:
            failed += 1
            print(f"FAIL  {name}: {exc}")
            continue
        print(f"ok    {name}: {summary}")
    print(f"{len(project.names()) - failed} of {len(project.names())} model(s) ok in {project.source}")
    return 1 if failed else 0


def _check_one(catalog: Catalog, name: str) -> str:
    import numpy as np

    from harness.accuracy import host_runner
    from harness.datasets.userdata import DatasetTask
    from harness.models import zoo

    resolved = catalog.model(name)
    variants = catalog.variants(name)
    spec = resolved.spec
    assert resolved.path is not None
    run = host_runner(resolved.path, spec.format)
    inputs = catalog.benchmark_inputs(variants[0], zoo.cache_dir())
    with np.load(inputs, allow_pickle=False) as archive:
        feed = {item.name: np.ascontiguousarray(archive[item.name][0]) for item in spec.inputs}
    try:
        outputs = run(feed)
    except Exception as exc:  # the runtimes raise their own types, all with a message
        raise EdgeLabError(
            f"{spec.format} on this host cannot run it with inputs "
            f"{ {k: list(v.shape) for k, v in feed.items()} }: {str(exc).strip().splitlines()[0][:300]}"
        ) from None
    parts = [
        f"{spec.format} {spec.precision}, runs on the host ({len(outputs)} output(s))",
        "variants " + ", ".join(v.id + (" (unavailable)" if v.unavailable else "") for v in variants),
    ]
    entry = resolved.entry
    if entry is not None and entry.dataset is not None:
        task = catalog.evaluation(variants[0], zoo.cache_dir())
        assert isinstance(task, DatasetTask)
        count = len(task.samples())
        small = task.limited(min(count, 8))  # the metric on a few clean samples, not the whole set
        evalset = small.build([], (), 0)
        collected: dict[str, list[np.ndarray]] = {}
        for index in range(evalset.size):
            for key, produced in run(evalset.float_inputs(index)).items():
                collected.setdefault(key, []).append(np.asarray(produced))
        stacked = {key: np.stack(values) for key, values in collected.items()}
        labels = [evalset.labels[i] for i in range(evalset.size)]
        value = small.score(stacked, labels, stacked)[task.metric]
        parts.append(
            f"dataset {task.name}: {count} samples; {task.metric} {value:.4g} on the first {evalset.size}"
        )
    return "; ".join(parts)


def _describe_tool(row: ToolStatus) -> list[str]:
    pinned = f" (pinned {row.pinned_at})" if row.pinned_at else ""
    unknown = (
        "- (no file at that path)"
        if row.state == "path missing"
        else "not pinned yet (the first fetch pins it)"
    )
    digest = row.sha256 + pinned if row.sha256 else unknown
    lines = [
        f"{row.tool:<22} {row.platform or 'device ' + str(row.device):<16} {row.state}",
        f"  source  {row.source}",
        f"  sha256  {digest}",
    ]
    if row.state == "cached":
        lines.append(f"  file    {row.path}")
    return lines


def cmd_tools(arguments: argparse.Namespace) -> int:
    from harness import native_tools as tools
    from harness.transport import open_transport

    fleet = _fleet(arguments)
    options = {"base_url": arguments.base_url, "version": arguments.litert_version}
    if arguments.action == "list":
        platforms = [tools.litert_platform(abi) for abi in arguments.abi or tools.LITERT_PLATFORMS]
        statuses = tools.litert_statuses(platforms, **options)
        for device in fleet.devices.values():
            statuses += tools.configured_statuses(device.name, device.native_tools)
        for status in statuses:
            print("\n".join(_describe_tool(status)))
        return 0
    abis = arguments.abi or ([] if arguments.device else ["arm64-v8a"])
    rows = tools.fetch_platform_tools([tools.litert_platform(abi) for abi in abis], **options)
    for name in arguments.device or []:
        transport = open_transport(fleet[name])
        try:
            rows += tools.fetch_for_device(transport, fleet[name].native_tools, **options)
        finally:
            transport.close()
    if not arguments.device:
        rows += tools.fetch_configured_urls({d.name: d.native_tools for d in fleet.devices.values()})
    for row in rows:
        print(f"{row.tool:<22} {row.target:<16} {row.state:<8} {row.path}")
    return 0


def cmd_lab(arguments: argparse.Namespace) -> int:
    from harness.lab.manager import VirtualLab

    lab = VirtualLab(Path(arguments.lab_dir) if arguments.lab_dir else None)
    if arguments.action == "up":
        state = lab.up(
            arguments.profile or ["pixel8", "rpi5"],
            tau_s=arguments.tau_s,
            link_delay_ms=arguments.link_delay_ms,
        )
        for device in state.devices:
            where = device.serial if device.kind == "adb" else f"root@{device.host}:{device.port}"
            mode = "isolated" if device.isolated else "NOT isolated (path mapping only: run as root)"
            print(f"{device.name:<24} {device.kind:<4} {where:<22} {mode}")
        print(f"devices file: {lab.devices_file} (merged into every fleet while the lab is up)")
        return 0
    if arguments.action == "down":
        for line in lab.down(purge=arguments.purge):
            print(line)
        print(f"lab in {lab.root} is down; nothing left behind")
        return 0
    rows = lab.status()
    if not rows:
        print(f"no lab in {lab.root}; start one with `edgelab lab up`")
        return 0
    for row in rows:
        temperature = f"{row.temp_c:.1f} C" if row.temp_c is not None else "-"
        throttled = {True: "THROTTLED", False: "ok", None: "-"}[row.throttled]
        quota = f"{row.cpu_quota:.2f} cpu" if row.cpu_quota is not None else "unmetered"
        print(
            f"{row.name:<24} {row.kind:<4} {row.connection:<10} {temperature:>8} {throttled:<9} "
            f"{quota:<10} {row.address}"
        )
    return 0 if all(row.alive for row in rows) else 3


def _store(arguments: argparse.Namespace, reports_dir: Path) -> Any:
    from harness.store.db import ResultsStore, resolve_url

    url = resolve_url(arguments.results_db, reports_dir)
    if url is None:
        return None
    if url.startswith("sqlite:///") and not Path(url[len("sqlite:///") :]).exists():
        return None  # no database yet: reports from results.json alone
    return ResultsStore(url)


def _policy(arguments: argparse.Namespace) -> VerdictPolicy | None:
    """``--noise-floor`` for every device; None: the policy the run was made with."""
    if arguments.noise_floor is None:
        return None
    return VerdictPolicy(noise_floor=arguments.noise_floor)


def cmd_report(arguments: argparse.Namespace) -> int:
    from harness.report import write_reports
    from harness.report.github import default_report_url
    from harness.report.history import write_history

    reports_dir = Path(arguments.reports_dir)
    if arguments.history:
        path = write_history(
            reports_dir,
            reports_dir / "history.html",
            arguments.results_db,
            branch=arguments.branch,
            last=arguments.last,
            repo_url=arguments.repo_url,
        )
        print(f"history: {path}")
        return 0
    store = _store(arguments, reports_dir)
    if arguments.merge:
        if store is None:
            raise EdgeLabError("--merge reads the runs from the results database: give --results-db")
        from harness.report import write_merged_reports

        html, summary = write_merged_reports(reports_dir, arguments.merge, store)
        print(f"report: {html}\nsummary: {summary}")
        return 0
    run_id = arguments.run or _latest_run(reports_dir)
    written = write_reports(
        reports_dir,
        run_id,
        store,
        baseline=arguments.baseline,
        policy=_policy(arguments),
        report_url=default_report_url(),
    )
    if written is None:
        raise EdgeLabError(f"run {run_id}: no {reports_dir / run_id / 'results.json'}")
    print(f"report: {written[0]}\nsummary: {written[1]}")
    return 0


def _latest_run(reports_dir: Path) -> str:
    latest = reports_dir / "latest"
    if not latest.exists():
        raise EdgeLabError(f"no run in {reports_dir} (no 'latest' link); run the suites or name a run")
    return latest.resolve().name


def cmd_pr_comment(arguments: argparse.Namespace) -> int:
    from harness.report import SUMMARY_FILE, write_reports
    from harness.report.github import default_report_url, post_comment

    reports_dir = Path(arguments.reports_dir)
    run_id = arguments.run or _latest_run(reports_dir)
    summary = reports_dir / run_id / SUMMARY_FILE
    if arguments.baseline or arguments.report_url or not summary.exists():
        written = write_reports(
            reports_dir,
            run_id,
            _store(arguments, reports_dir),
            baseline=arguments.baseline,
            policy=_policy(arguments),
            report_url=arguments.report_url or default_report_url(),
        )
        if written is None:
            raise EdgeLabError(f"run {run_id}: no results.json to summarize")
        summary = written[1]
    text = summary.read_text(encoding="utf-8")
    print(text, end="")
    step_summary = os.environ.get("GITHUB_STEP_SUMMARY")
    if step_summary:
        with open(step_summary, "a", encoding="utf-8") as handle:
            handle.write(text + "\n")
    if arguments.post:
        action = post_comment(text, pr=arguments.pr, repo=arguments.repo)
        print(f"pr-comment: {action}", file=sys.stderr)
    return 0


def cmd_export(arguments: argparse.Namespace) -> int:
    from harness import results

    load = results.latency_samples if arguments.samples else results.load
    frame = load(arguments.reports_dir, arguments.results_db, last=arguments.last, branch=arguments.branch)
    output = Path(arguments.output) if arguments.output else None
    text = results.export(frame, arguments.format, output)
    if text is not None:
        sys.stdout.write(text if text.endswith("\n") else text + "\n")
    else:
        print(f"{len(frame)} row(s) -> {output}", file=sys.stderr)
    return 0


def cmd_parse(arguments: argparse.Namespace) -> int:
    from harness.probes.parsers.reading import parse_file

    for piece in parse_file(arguments.kind, arguments.file, sys.stdin.buffer):
        sys.stdout.write(piece)
    return 0


def _add_models_parser(commands: Any) -> None:
    models = commands.add_parser(
        "models", help="list the zoo and the project's models, check models.yaml, or fetch the zoo"
    )
    models.add_argument("action", choices=["list", "check", "fetch"], nargs="?", default="list")
    models.add_argument("names", nargs="*", help="with fetch: zoo names to fetch (default: all)")
    models.add_argument("--rootdir", default=".", help="where model paths start (default: .)")
    models.add_argument(
        "--models-file", default=None, help="the project's models (default: models.yaml in --rootdir, if any)"
    )
    models.set_defaults(handler=cmd_models)


def _add_cache_parser(commands: Any) -> None:
    cache = commands.add_parser("cache", help="a device's artifact cache: status, or prune to its budget")
    cache.add_argument("action", choices=["status", "prune"])
    cache.add_argument("device")
    cache.add_argument(
        "--max-mb",
        type=float,
        default=None,
        help="with prune: the budget in MB (default: the device's cache_max_mb)",
    )
    cache.add_argument(
        "--lease-timeout",
        type=float,
        default=600.0,
        help="with prune: seconds to wait for a run that holds the device (default: 600)",
    )
    cache.set_defaults(handler=cmd_cache)


def _add_tools_parser(commands: Any) -> None:
    tools = commands.add_parser(
        "tools", help="the runtimes' device tools (benchmark_model, ...): list, or fetch and pin them"
    )
    tools.add_argument("action", choices=["list", "fetch"])
    tools.add_argument(
        "--abi",
        action="append",
        help="device ABI (arm64-v8a, aarch64, x86_64) or LiteRT platform, repeatable "
        "(fetch default: arm64-v8a; list default: every platform)",
    )
    tools.add_argument(
        "--device",
        action="append",
        help="with fetch: ask this device for its ABI and fetch what it needs, repeatable",
    )
    tools.add_argument(
        "--base-url",
        default=None,
        help="LiteRT binaries mirror (default: $EDGELAB_LITERT_BASE_URL or LiteRT's own location)",
    )
    tools.add_argument(
        "--litert-version",
        default=None,
        help="LiteRT release of the tools (default: the installed ai-edge-litert)",
    )
    tools.set_defaults(handler=cmd_tools)


def _add_lab_parser(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    lab = commands.add_parser("lab", help="the virtual device lab: up, status, down")
    lab.add_argument("action", choices=["up", "status", "down"])
    lab.add_argument(
        "--profile",
        action="append",
        help="device profile to start, repeatable (default: pixel8 and rpi5; also pixel8-stock, "
        "jetson-orin-nano); NAME@CORES sets its CPU quota (pixel8@0.2)",
    )
    lab.add_argument(
        "--lab-dir", default=None, help="lab folder (default: $EDGELAB_LAB_DIR or ~/.cache/edgelab/lab)"
    )
    lab.add_argument("--tau-s", type=float, default=None, help="thermal time constant override (seconds)")
    lab.add_argument(
        "--link-delay-ms",
        type=float,
        default=0.0,
        help="with up: delay every device's link by this much each way (default: 0, loopback speed)",
    )
    lab.add_argument("--purge", action="store_true", help="with down: also delete the devices' stored files")
    lab.set_defaults(handler=cmd_lab)


def _add_report_parsers(commands: Any) -> None:
    """report, pr-comment and export: what a run wrote, shown or handed on."""
    report = commands.add_parser("report", help="write a run's HTML report and summary.md, or the history")
    report.add_argument("run", nargs="?", help="run id (default: reports/latest)")
    report.add_argument("--reports-dir", default="reports")
    report.add_argument("--results-db", default=None, help="default: sqlite results.db in --reports-dir")
    report.add_argument("--baseline", default=None, help="run id, branch:NAME or results.json path")
    report.add_argument(
        "--noise-floor",
        type=float,
        default=None,
        help="latency floor for every device (default: the policy the run recorded)",
    )
    report.add_argument("--history", action="store_true", help="trend report across stored runs")
    report.add_argument(
        "--merge",
        action="append",
        default=None,
        metavar="RUN",
        help="repeatable: one report over these runs from the database (one run per lab host)",
    )
    report.add_argument("--branch", default=None, help="with --history: only runs of this branch")
    report.add_argument("--last", type=int, default=30, help="with --history: this many newest runs")
    report.add_argument(
        "--repo-url",
        default=None,
        help="with --history: link commits, e.g. https://github.com/OWNER/NAME (default: no links)",
    )
    report.set_defaults(handler=cmd_report)
    comment = commands.add_parser("pr-comment", help="print summary.md; --post puts it on the PR")
    comment.add_argument("run", nargs="?", help="run id (default: reports/latest)")
    comment.add_argument("--reports-dir", default="reports")
    comment.add_argument("--results-db", default=None)
    comment.add_argument("--baseline", default=None, help="recompare against this baseline first")
    comment.add_argument(
        "--noise-floor",
        type=float,
        default=None,
        help="latency floor for every device (default: the policy the run recorded)",
    )
    comment.add_argument("--post", action="store_true", help="create or update one comment with the gh CLI")
    comment.add_argument("--pr", type=int, default=None, help="PR number (default: from the GitHub event)")
    comment.add_argument("--repo", default=None, help="OWNER/NAME (default: $GITHUB_REPOSITORY)")
    comment.add_argument(
        "--report-url",
        default=None,
        help="where readers find the HTML report (default: this GitHub Actions run's page, whose "
        "artifacts hold it; else the local path)",
    )
    comment.set_defaults(handler=cmd_pr_comment)
    export = commands.add_parser(
        "export", help="results as CSV, Parquet or JSON: one row per result, or --samples in long form"
    )
    export.add_argument("--format", choices=["csv", "parquet", "json"], default="csv")
    export.add_argument("--output", "-o", default=None, help="file to write (default: standard output)")
    export.add_argument("--samples", action="store_true", help="every latency sample, one row each")
    export.add_argument("--reports-dir", default="reports")
    export.add_argument("--results-db", default=None, help="default: sqlite results.db in --reports-dir")
    export.add_argument("--last", type=int, default=None, help="only the newest N runs (default: all)")
    export.add_argument("--branch", default=None, help="only runs of this branch")
    export.set_defaults(handler=cmd_export)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="edgelab", description="EdgeLab device-lab harness")
    parser.add_argument("--version", action="version", version=f"edgelab {__version__}")
    parser.add_argument(
        "--devices-file", default=None, help="fleet inventory (default: ./devices.yaml, or only 'local')"
    )
    commands = parser.add_subparsers(dest="command", required=True)
    devices = commands.add_parser("devices", help="list the fleet (quarantined devices are marked)")
    devices.add_argument("--release", metavar="NAME", default=None, help="take NAME out of quarantine")
    devices.set_defaults(handler=cmd_devices)
    doctor = commands.add_parser("doctor", help="connect to a device and report what it has")
    doctor.add_argument("device")
    doctor.add_argument("--json", action="store_true", help="print the probe as JSON")
    doctor.set_defaults(handler=cmd_doctor)
    _add_cache_parser(commands)
    _add_models_parser(commands)
    _add_tools_parser(commands)
    _add_lab_parser(commands)
    _add_report_parsers(commands)
    from harness.probes.parsers import PARSERS

    parse = commands.add_parser("parse", help="parse a device tool's output into JSON")
    parse.add_argument("kind", choices=list(PARSERS), metavar="KIND", help=", ".join(PARSERS))
    parse.add_argument("file", help="the captured output ('-' for standard input)")
    parse.set_defaults(handler=cmd_parse)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    arguments = build_parser().parse_args(argv)
    try:
        code: int = arguments.handler(arguments)
        sys.stdout.flush()  # a closed pipe shows here, not in the interpreter's exit
    except EdgeLabError as exc:
        print(f"edgelab: error: {exc}", file=sys.stderr)
        return 1
    except BrokenPipeError:
        # `edgelab devices | head -1`: the reader has all it wanted. Point stdout at /dev/null so
        # the interpreter's final flush does not fail again, and exit as a SIGPIPE'd tool would.
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        return 141
    return code


if __name__ == "__main__":
    sys.exit(main())
