"""The runtimes' own command-line tools for a device: LiteRT's benchmark_model and run_model from
LiteRT's published binaries (pinned by sha256 on first fetch), anything else from the team.

LiteRT publishes builds for android_arm64, linux_arm64 and linux_x86_64 only (no 32-bit ARM, no
Android x86_64); ONNX Runtime publishes no device build of onnxruntime_perf_test at all.
"""

from __future__ import annotations

import importlib.metadata
import os
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Literal, TypedDict, Unpack

from harness.config import NATIVE_TOOL_ALIASES
from harness.download import Downloaded, Pins, cache_dir, fetch_pinned, normalise_sha256, sha256_of
from harness.errors import ConfigError, DownloadError, ParseError
from harness.transport.base import Transport

#: Where LiteRT's own CLI (PyPI litert-cli) fetches them: <base>/<version>/<platform>/<tool>.
LITERT_BASE_URL = "https://storage.googleapis.com/litert/binaries"
BASE_URL_ENV = "EDGELAB_LITERT_BASE_URL"
LITERT_PLATFORMS = ("android_arm64", "linux_arm64", "linux_x86_64")
#: benchmark_model is about 10 MB; a tool ten times larger than that is not a tool.
TOOL_MAX_BYTES = 512 << 20
PINS_FILE = "pins.json"

System = Literal["android", "linux"]


@dataclass(frozen=True)
class ToolSpec:
    """A tool EdgeLab can run on a device, and where it comes from."""

    name: str
    purpose: str
    platforms: tuple[str, ...]  # LiteRT's published builds; empty: the team supplies it
    needs: tuple[str, ...] = ()  # files it loads at run time, to be pushed beside it


TOOLS: dict[str, ToolSpec] = {
    spec.name: spec
    for spec in (
        ToolSpec(
            "benchmark_model",
            "latency and peak memory of a .tflite model; its outputs on given inputs (accuracy)",
            LITERT_PLATFORMS,
        ),
        ToolSpec(
            "run_model",
            "runs a .tflite model with LiteRT's CompiledModel API (accelerators); prints tensor samples only",
            ("android_arm64",),
            needs=("libLiteRt.so",),
        ),
        ToolSpec("libLiteRt.so", "the LiteRT runtime library that run_model loads", ("android_arm64",)),
        ToolSpec("onnxruntime_perf_test", "latency of an .onnx model (ONNX Runtime publishes no build)", ()),
    )
}

# getprop's ro.product.cpu.abi names; uname -m never prints these.
_ANDROID_ONLY_ABIS = frozenset(
    {"arm64-v8a", "armeabi-v7a", "armeabi", "x86", "mips", "mips64", "riscv64-android"}
)
_ANDROID_PLATFORMS = {"arm64-v8a": "android_arm64"}
_LINUX_PLATFORMS = {
    "aarch64": "linux_arm64",
    "arm64": "linux_arm64",
    "x86_64": "linux_x86_64",
    "amd64": "linux_x86_64",
}


def _where(device: str) -> str:
    return f"device '{device}': " if device else ""


def litert_platform(abi: str, system: System | None = None, *, device: str = "") -> str:
    """LiteRT's folder for a device ABI: getprop's ro.product.cpu.abi on Android, uname -m on Linux.

    ``x86_64`` is both an Android emulator's ABI and a PC's machine, and LiteRT's linux_x86_64
    build does not run on Android: without ``system`` it means Linux. LiteRT's folder names are
    accepted as they are."""
    text = abi.strip()
    if text in LITERT_PLATFORMS:
        return text
    resolved: System = system or ("android" if text in _ANDROID_ONLY_ABIS else "linux")
    platform = (_ANDROID_PLATFORMS if resolved == "android" else _LINUX_PLATFORMS).get(text)
    if platform is None:
        raise ConfigError(
            f"{_where(device)}LiteRT publishes no tools for the {resolved} ABI {text!r} (only "
            f"{', '.join(LITERT_PLATFORMS)}); build benchmark_model for it and set "
            "native_tools: {benchmark_model: PATH} for the device in devices.yaml"
        )
    return platform


def litert_version() -> str:
    """The installed ai-edge-litert's version: the host converts and checks models with it, so the
    device's tools come from the same release (as litert-cli chooses them)."""
    try:
        return importlib.metadata.version("ai-edge-litert")
    except importlib.metadata.PackageNotFoundError:
        raise ConfigError(
            "ai-edge-litert is not installed, so the LiteRT tools' version is unknown; install it "
            "(pip install ai-edge-litert) or pass --litert-version"
        ) from None


def litert_base_url(override: str | None = None) -> str:
    return (override or os.environ.get(BASE_URL_ENV) or LITERT_BASE_URL).rstrip("/")


def litert_url(tool: str, platform: str, *, version: str, base_url: str) -> str:
    return f"{base_url}/{version}/{platform}/{tool}"


def tools_dir(cache: Path | None = None) -> Path:
    """``<cache>/tools``: ``<sha256>/<name>`` per tool, and the pins file."""
    return (cache if cache is not None else cache_dir()) / "tools"


def _pins(cache: Path | None) -> Pins:
    return Pins(tools_dir(cache) / PINS_FILE)


# -- what devices.yaml says ---------------------------------------------------------------------


@dataclass(frozen=True)
class ToolSource:
    """One ``native_tools`` entry: a host path, or a URL with the tool's sha256."""

    key: str  # the devices.yaml key: the tool's name or its format alias
    location: str
    sha256: str | None

    @property
    def is_url(self) -> bool:
        return self.sha256 is not None


def parse_source(key: str, value: str, *, device: str = "") -> ToolSource:
    """``PATH`` or ``URL#sha256=HEX`` (pip's hash-fragment form): a URL is trusted only by hash."""
    text = value.strip()
    if not text.startswith(("http://", "https://")):
        return ToolSource(key, text, None)
    url, _, fragment = text.partition("#")
    if not fragment.startswith("sha256="):
        raise ConfigError(
            f"{_where(device)}native_tools.{key}: a URL must end in #sha256=<64 hex digits> (got {value!r})"
        )
    try:
        digest = normalise_sha256(fragment.removeprefix("sha256="), url)
    except DownloadError as exc:  # re-said as the config field it came from
        raise ConfigError(f"{_where(device)}native_tools.{key}: {exc}") from None
    return ToolSource(key, url, digest)


def configured_source(tool: str, configured: Mapping[str, str], *, device: str = "") -> ToolSource | None:
    """The entry for ``tool``: under its own name, or its format alias (``tflite``, ``onnx``)."""
    keys = [tool, *(alias for alias, name in NATIVE_TOOL_ALIASES.items() if name == tool)]
    for key in keys:
        value = configured.get(key)
        if value:
            return parse_source(key, value, device=device)
    return None


def configured_tools(configured: Mapping[str, str]) -> list[str]:
    """The tool names a devices.yaml mapping sets, aliases resolved."""
    return sorted({NATIVE_TOOL_ALIASES.get(key, key) for key, value in configured.items() if value})


# -- resolving and fetching ---------------------------------------------------------------------


def _spec(tool: str) -> ToolSpec:
    spec = TOOLS.get(tool)
    if spec is None:
        raise ConfigError(f"unknown native tool {tool!r} (known: {', '.join(TOOLS)})")
    return spec


def _offline_hint(tool: str, device: str) -> str:
    for_device = f" for device '{device}'" if device else ""
    return (
        f"set native_tools: {{{tool}: PATH}}{for_device} in devices.yaml for an offline lab, or point "
        f"--base-url (${BASE_URL_ENV}) at a mirror"
    )


def fetch_litert_tool(
    tool: str,
    platform: str,
    *,
    base_url: str | None = None,
    version: str | None = None,
    cache: Path | None = None,
    device: str = "",
) -> Downloaded:
    """LiteRT's build of ``tool`` for ``platform``: the cached file when its pin matches, else
    downloaded and checked against the pin (recorded now when this is the first fetch)."""
    spec = _spec(tool)
    if platform not in spec.platforms:
        raise ConfigError(
            f"{_where(device)}LiteRT publishes {tool} for {', '.join(spec.platforms) or 'no platform'} only, "
            f"not {platform}; build it for the device and set native_tools: {{{tool}: PATH}} in devices.yaml"
        )
    url = litert_url(tool, platform, version=version or litert_version(), base_url=litert_base_url(base_url))
    return fetch_pinned(
        url,
        cache=tools_dir(cache),
        name=tool,
        pins=_pins(cache),
        label=f"{tool} ({platform})",
        hint=_offline_hint(tool, device),
        max_bytes=TOOL_MAX_BYTES,
    )


def fetch_configured_url(
    source: ToolSource, tool: str, *, cache: Path | None = None, device: str = ""
) -> Downloaded:
    """A team's tool from its URL, verified against the sha256 devices.yaml gives with it."""
    return fetch_pinned(
        source.location,
        cache=tools_dir(cache),
        name=tool,
        pins=_pins(cache),
        sha256=source.sha256,
        label=tool,
        hint=(
            f"check native_tools.{source.key}{f' of device {device!r}' if device else ''} in devices.yaml, "
            "or set it to a host path for an offline lab"
        ),
        max_bytes=TOOL_MAX_BYTES,
    )


@dataclass(frozen=True)
class ResolvedTool:
    """Where a device's tool is on this host, and how it got there."""

    tool: str
    target: str  # LiteRT's platform, or the device it was resolved for
    path: Path
    origin: Literal["path", "url", "litert"]  # devices.yaml path, devices.yaml URL, LiteRT's build
    source: str  # the path or the URL
    fetched: bool  # downloaded by this call (False: configured path or already cached)

    @property
    def state(self) -> str:
        return "fetched" if self.fetched else ("path" if self.origin == "path" else "cached")


class ResolveOptions(TypedDict, total=False):
    """Who asks (for error messages) and where LiteRT's builds come from and are kept; by default
    LiteRT's own location ($EDGELAB_LITERT_BASE_URL), the installed ai-edge-litert, $EDGELAB_CACHE."""

    device: str
    base_url: str | None
    version: str | None
    cache: Path | None


def resolve(
    tool: str,
    abi: str,
    configured: Mapping[str, str],
    *,
    system: System | None = None,
    device: str = "",
    base_url: str | None = None,
    version: str | None = None,
    cache: Path | None = None,
) -> ResolvedTool:
    """``resolve_tool`` with where the file came from, for ``edgelab tools fetch``."""
    spec = _spec(tool)
    source = configured_source(tool, configured, device=device)
    if source is not None and source.is_url:
        got = fetch_configured_url(source, tool, cache=cache, device=device)
        return ResolvedTool(tool, device or abi, got.path, "url", source.location, got.fetched)
    if source is not None:
        path = Path(source.location).expanduser()
        if not path.is_file():
            instead = " or remove it to use LiteRT's build" if spec.platforms else ""
            raise ConfigError(
                f"{_where(device)}native_tools.{source.key}: {path} does not exist; fix the path in "
                f"devices.yaml{instead}"
            )
        return ResolvedTool(tool, device or abi, path, "path", str(path), False)
    if not spec.platforms:
        raise ConfigError(
            f"{_where(device)}no {tool}: ONNX Runtime publishes no prebuilt {tool} for devices; build it for "
            f"ABI {abi} (docs/native-tools.md) and set native_tools: {{{tool}: PATH}} or "
            f"{{{tool}: 'URL#sha256=HEX'}} for the device in devices.yaml"
        )
    platform = litert_platform(abi, system, device=device)
    got = fetch_litert_tool(tool, platform, base_url=base_url, version=version, cache=cache, device=device)
    url = litert_url(tool, platform, version=version or litert_version(), base_url=litert_base_url(base_url))
    return ResolvedTool(tool, device or platform, got.path, "litert", url, got.fetched)


def resolve_tool(
    tool: str,
    abi: str,
    configured: Mapping[str, str],
    *,
    system: System | None = None,
    **options: Unpack[ResolveOptions],
) -> Path:
    """The host file of ``tool`` for a device: the path devices.yaml gives, else the cached file
    its pin names, else fetched (and pinned). ``configured`` is the device's ``native_tools``;
    ``abi`` is what ``device_abi`` reports (``system`` settles ``x86_64``)."""
    return resolve(tool, abi, configured, system=system, **options).path


def resolve_device_tools(
    system: System, abi: str, configured: Mapping[str, str], **options: Unpack[ResolveOptions]
) -> list[ResolvedTool]:
    """Every tool a device can have, fetched where needed: LiteRT's for its ABI and its own."""
    try:
        platform: str | None = litert_platform(abi, system, device=options.get("device", ""))
    except ConfigError:
        if not configured_tools(configured):
            raise
        platform = None  # no LiteRT build for this ABI: the team's own tools only
    return [
        resolve(tool, abi, configured, system=system, **options)
        for tool in device_tools(platform, configured)
    ]


def device_tools(platform: str | None, configured: Mapping[str, str]) -> list[str]:
    """The tools a device can have: LiteRT's builds for its platform and whatever devices.yaml sets."""
    published = [name for name, spec in TOOLS.items() if platform in spec.platforms]
    return sorted({*published, *configured_tools(configured)}, key=list(TOOLS).index)


def fetch_platform_tools(
    platforms: Iterable[str],
    *,
    base_url: str | None = None,
    version: str | None = None,
    cache: Path | None = None,
) -> list[ResolvedTool]:
    """LiteRT's tools for each platform, for a lab that prepares its cache before going offline."""
    resolved_version = version or litert_version()
    rows: list[ResolvedTool] = []
    for platform in platforms:
        for tool in device_tools(platform, {}):
            got = fetch_litert_tool(tool, platform, base_url=base_url, version=resolved_version, cache=cache)
            url = litert_url(tool, platform, version=resolved_version, base_url=litert_base_url(base_url))
            rows.append(ResolvedTool(tool, platform, got.path, "litert", url, got.fetched))
    return rows


def fetch_configured_urls(
    devices: Mapping[str, Mapping[str, str]], *, cache: Path | None = None
) -> list[ResolvedTool]:
    """The tools that devices.yaml names by URL (``{device: native_tools}``), each checked
    against the sha256 given with it."""
    rows: list[ResolvedTool] = []
    for device, configured in devices.items():
        for tool in configured_tools(configured):
            source = configured_source(tool, configured, device=device)
            if source is not None and source.is_url:
                got = fetch_configured_url(source, tool, cache=cache, device=device)
                rows.append(ResolvedTool(tool, device, got.path, "url", source.location, got.fetched))
    return rows


def fetch_for_device(
    transport: Transport,
    configured: Mapping[str, str],
    *,
    base_url: str | None = None,
    version: str | None = None,
    cache: Path | None = None,
) -> list[ResolvedTool]:
    """Ask the device for its ABI, then resolve every tool it can have (``resolve_device_tools``)."""
    system, abi = device_abi(transport)
    return resolve_device_tools(
        system, abi, configured, device=transport.device, base_url=base_url, version=version, cache=cache
    )


# -- the device's ABI ---------------------------------------------------------------------------

# One round trip on any shell (mksh, toybox, busybox, bash): getprop answers only on Android.
_ABI_SCRIPT = (
    'abi=$(getprop ro.product.cpu.abi 2>/dev/null); if [ -n "$abi" ]; then echo "android $abi"; '
    'else echo "linux $(uname -m)"; fi'
)


def parse_abi_probe(text: str, *, device: str = "") -> tuple[System, str]:
    """``android arm64-v8a`` or ``linux aarch64``, as the ABI probe prints it."""
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    system, _, abi = (lines[-1] if lines else "").partition(" ")
    if system not in ("android", "linux") or not abi.strip() or " " in abi.strip():
        raise ParseError("abi", f"{_where(device)}unexpected answer to the ABI probe: {text[-200:]!r}")
    return ("android" if system == "android" else "linux"), abi.strip()


def device_abi(transport: Transport) -> tuple[System, str]:
    """(system, ABI) of a device: ro.product.cpu.abi on Android, uname -m elsewhere."""
    result = transport.run(["sh", "-c", _ABI_SCRIPT], timeout=30, check=True)
    return parse_abi_probe(result.stdout, device=transport.device)


# -- what the cache holds (edgelab tools list) --------------------------------------------------


@dataclass(frozen=True)
class ToolStatus:
    """One tool as ``edgelab tools list`` shows it."""

    tool: str
    platform: str | None  # LiteRT's folder; None for a device's configured entry
    device: str | None  # the device whose devices.yaml entry names it
    source: str  # a URL or a host path
    sha256: str | None  # pinned, given in devices.yaml, or of the file; None before a first fetch
    pinned_at: str | None
    path: Path | None  # the file on this host; None when it is not there

    @property
    def state(self) -> str:
        if self.device is not None and not self.source.startswith(("http://", "https://")):
            return "path" if self.path is not None else "path missing"
        return "cached" if self.path is not None else "not fetched"


def litert_statuses(
    platforms: Iterable[str],
    *,
    base_url: str | None = None,
    version: str | None = None,
    cache: Path | None = None,
) -> list[ToolStatus]:
    """LiteRT's tools for ``platforms``: their URL, pin and cached file, without any request."""
    pins = _pins(cache)
    known = pins.all()
    resolved_version = version or litert_version()
    rows: list[ToolStatus] = []
    for platform in platforms:
        for tool in device_tools(platform, {}):
            url = litert_url(tool, platform, version=resolved_version, base_url=litert_base_url(base_url))
            pin = known.get(url)
            cached = tools_dir(cache) / pin.sha256 / tool if pin else None
            rows.append(
                ToolStatus(
                    tool,
                    platform,
                    None,
                    url,
                    pin.sha256 if pin else None,
                    pin.pinned_at if pin else None,
                    cached if cached is not None and cached.is_file() else None,
                )
            )
    return rows


def configured_statuses(
    device: str, configured: Mapping[str, str], *, cache: Path | None = None
) -> list[ToolStatus]:
    """A device's ``native_tools`` entries: a path is hashed where it is, a URL looked up in the cache."""
    rows: list[ToolStatus] = []
    for tool in configured_tools(configured):
        source = configured_source(tool, configured, device=device)
        if source is None:
            continue
        if source.is_url:
            assert source.sha256 is not None
            cached = tools_dir(cache) / source.sha256 / tool
            path = cached if cached.is_file() else None
            rows.append(ToolStatus(tool, None, device, source.location, source.sha256, None, path))
            continue
        local = Path(source.location).expanduser()
        present = local.is_file()
        digest = sha256_of(local) if present else None
        rows.append(ToolStatus(tool, None, device, str(local), digest, None, local if present else None))
    return rows
