"""devices.yaml: the fleet inventory, its schema, and device selection.

The schema is pydantic at the YAML boundary; errors are rewritten to name the file, the
device, the field and the fix. The ``local`` device (the host) always exists.
"""

from __future__ import annotations

import argparse
import difflib
import os
import re
import reprlib
import sys
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Annotated, Any, ClassVar, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    TypeAdapter,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_validator,
)

from harness import yamlfile
from harness.errors import ConfigError, SelectionError
from harness.probes.cpus import check_cpus, format_cpu_list, parse_cpu_list

DEFAULT_DEVICES_FILE = "devices.yaml"
LOCAL_DEVICE = "local"
LAB_DIR_ENV = "EDGELAB_LAB_DIR"
# A fleet file is hand-written: a few KB per device. These bound the work a hostile or broken file
# can cause (a 50 MB file or an alias bomb is refused before anything is built).
MAX_DEVICES = 1000
DEVICES_FILE_LIMITS = yamlfile.Limits(max_bytes=4 << 20, max_values=200_000)

_SHORT = reprlib.Repr()
_SHORT.maxstring, _SHORT.maxother, _SHORT.maxlevel = 80, 80, 2
_SHORT.maxlist = _SHORT.maxtuple = _SHORT.maxdict = _SHORT.maxset = 4


def short_repr(value: object) -> str:
    """A bounded repr for messages: never expands a large (or alias-shared) value in full."""
    return _SHORT.repr(value)


def _control_characters(text: str) -> list[str]:
    return sorted({repr(c)[1:-1] for c in text if ord(c) < 0x20 or ord(c) == 0x7F})


def name_problem(name: str) -> str | None:
    """Why ``--device`` could not select a device called ``name`` (None when it can)."""
    if not name.strip():
        return "is empty"
    if name != name.strip():
        return "starts or ends with white space, which --device strips"
    if "," in name:
        return "contains ',', which separates names in --device"
    if name == "all":
        return "is 'all', which --device reads as every device"
    if name.startswith("tag:"):
        return "starts with 'tag:', which --device reads as a tag"
    controls = _control_characters(name)
    if controls:
        return f"contains control characters ({', '.join(controls)})"
    return None


def lab_dir() -> Path:
    """``$EDGELAB_LAB_DIR`` or ``~/.cache/edgelab/lab``: the virtual lab's state, devices file and logs."""
    configured = os.environ.get(LAB_DIR_ENV)
    return Path(configured).expanduser() if configured else Path.home() / ".cache" / "edgelab" / "lab"


def lab_devices_file() -> Path:
    """The devices file ``edgelab lab up`` writes; merged into every fleet while it exists."""
    return lab_dir() / "devices.yaml"


#: Keys of ``native_tools``: the tools' own names, and the formats that name their benchmark tool.
NATIVE_TOOL_KEYS = ("benchmark_model", "run_model", "libLiteRt.so", "onnxruntime_perf_test", "tflite", "onnx")
NATIVE_TOOL_ALIASES = {"tflite": "benchmark_model", "onnx": "onnxruntime_perf_test"}
_TOOL_URL = re.compile(r"https?://[^\s#]+#sha256=[0-9a-fA-F]{64}")
# Intra-op threads of every runtime when devices.yaml and --threads say nothing. One thread is
# the count whose speed does not depend on where the OS puts a second thread, nor on what else
# runs on the other cores; the runtimes' own defaults (0) differ per runtime, and ONNX Runtime's
# pins its pool to cores (docs/devices-yaml.md, "threads and cpus").
DEFAULT_THREADS = 1


def thread_count(text: str) -> int:
    """``--threads``: an explicit count >= 1, as devices.yaml's ``threads``."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"--threads takes a thread count >= 1, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(
            f"--threads must be >= 1 (got {value}): 0, the runtime's own default, is not accepted "
            "(docs/devices-yaml.md, threads and cpus)"
        )
    return value


class _Device(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    #: False where another scheduler hands the device out (a labgrid place): EdgeLab's own lease
    #: (harness.lease) steps aside and that scheduler's queue is the only one.
    leased_by_edgelab: ClassVar[bool] = True

    name: str = ""
    tags: tuple[str, ...] = ()
    workdir: str = Field(
        default="",
        description="Directory on the device that EdgeLab owns (artifact cache, agent, outputs).",
    )
    python: str = Field(default="python3", description="Python interpreter on the device.")
    threads: int = Field(
        default=DEFAULT_THREADS,
        description="Intra-op threads of every runtime (an explicit count; never the runtime's default).",
    )
    cpus: tuple[int, ...] | None = Field(
        default=None,
        description="Cores the inference process may run on (an affinity list such as [4, 5, 6, 7] or "
        "'4-7'); none: wherever the OS puts it.",
    )
    labels: dict[str, str] = Field(default_factory=dict)
    virtual: bool = Field(default=False, description="True for devices of the virtual lab.")
    runner: Literal["agent", "native"] = Field(
        default="agent",
        description="agent: the Python agent; native: the runtimes' benchmark binaries in native_tools.",
    )
    warm_agent: bool = Field(
        default=True,
        description="Keep one agent per runtime imported on the device and fork each run from it "
        "(saves the interpreter start and imports per test); false starts a fresh interpreter per run.",
    )
    native_tools: dict[str, str] = Field(
        default_factory=dict,
        description="The runtimes' tools for this device, by tool name (tflite and onnx stand for "
        "benchmark_model and onnxruntime_perf_test): a host path, or 'URL#sha256=HEX'. A path wins over "
        "LiteRT's published build; onnxruntime_perf_test has none (docs/native-tools.md).",
    )

    @field_validator("native_tools")
    @classmethod
    def _native_tool_sources(cls, tools: dict[str, str]) -> dict[str, str]:
        for key, value in tools.items():
            if key not in NATIVE_TOOL_KEYS:
                close = difflib.get_close_matches(key, NATIVE_TOOL_KEYS, n=1)
                hint = f"did you mean '{close[0]}'?" if close else f"known: {', '.join(NATIVE_TOOL_KEYS)}"
                raise ValueError(f"field 'native_tools': unknown tool '{key}' ({hint})")
            if value.startswith(("http://", "https://")) and not _TOOL_URL.fullmatch(value):
                raise ValueError(
                    f"field 'native_tools.{key}': a URL must end in #sha256=<64 hex digits> (the tool's "
                    f"hash, checked after download), got {value!r}"
                )
            if not value.strip():
                raise ValueError(f"field 'native_tools.{key}' is empty; give a host path or 'URL#sha256=HEX'")
        for alias, tool in NATIVE_TOOL_ALIASES.items():
            if alias in tools and tool in tools:
                raise ValueError(f"field 'native_tools': '{alias}' and '{tool}' name the same tool; keep one")
        return tools

    energy: str = Field(
        default="auto",
        pattern=r"^(auto|none|odpm|rapl|ina3221|tegrastats|battery|external)$",
        description="Energy source: auto (best the device has), none, a source, or external.",
    )
    energy_meter: str | None = Field(
        default=None,
        description="With energy: external, a host command that prints one reading in watts per line.",
    )
    noise_floor: float | None = Field(
        default=None,
        ge=0,
        lt=1,
        description="Latency changes within this fraction are noise on this device (default: --noise-floor).",
    )
    cooldown_below_c: float | None = Field(
        default=None,
        description="Before each measurement, wait until the hottest thermal zone is below this.",
    )
    cache_max_mb: float | None = Field(
        default=None,
        gt=0,
        description="Size budget of the device's artifact cache; `edgelab cache prune` keeps it under.",
    )

    @field_validator("workdir", "python")
    @classmethod
    def _carried_to_the_device(cls, value: str, info: ValidationInfo) -> str:
        """Paths and commands cross the device's shell, argv and the warm agent's line protocol:
        a newline or NUL in them cannot be carried faithfully, so refuse it here, not mid-run."""
        controls = _control_characters(value)
        if controls:
            raise ValueError(
                f"field '{info.field_name}': contains control characters ({', '.join(controls)}) that "
                "cannot be passed to the device; use a path without them"
            )
        return value

    @field_validator("threads", mode="before")
    @classmethod
    def _explicit_threads(cls, value: object) -> object:
        if isinstance(value, int) and not isinstance(value, bool) and value < 1:
            raise ValueError(
                f"field 'threads': must be a thread count >= 1 (got {value}); 0, the runtime's own "
                "default, is not accepted: it differs per runtime and ONNX Runtime's pins threads to "
                "cores. Use 1 (the default) or the number of cores in cpus"
            )
        return value

    @field_validator("cpus", mode="before")
    @classmethod
    def _cpu_list(cls, value: object) -> object:
        if value is None:
            return None
        try:
            if isinstance(value, str):
                return parse_cpu_list(value)
            if isinstance(value, int) and not isinstance(value, bool):
                return check_cpus([value])
            if isinstance(value, list | tuple):
                return check_cpus(value)
        except ValueError as exc:
            raise ValueError(f"field 'cpus': {exc} (got {short_repr(value)})") from None
        raise ValueError(
            f"field 'cpus': must be a list of cpu numbers such as [4, 5, 6, 7] or a range string such "
            f"as '4-7' (got {short_repr(value)})"
        )

    @model_validator(mode="after")
    def _threads_fit_cpus(self) -> _Device:
        if self.cpus is not None and self.threads > len(self.cpus):
            raise ValueError(
                f"threads ({self.threads}) is more than the {len(self.cpus)} cpus it may run on "
                f"({format_cpu_list(self.cpus)}): threads would share cores; lower threads or add cpus"
            )
        return self


class LocalDevice(_Device):
    kind: Literal["local"]


class SshDevice(_Device):
    kind: Literal["ssh"]
    host: str
    port: int = Field(default=22, ge=1, le=65535)
    user: str
    key_file: str | None = None
    known_hosts: str = "~/.ssh/known_hosts"
    trust_on_first_use: bool = False
    connect_timeout_s: float = Field(default=10.0, gt=0)
    keepalive_s: int = Field(default=15, ge=0)


class AdbDevice(_Device):
    kind: Literal["adb"]
    serial: str
    adb_host: str = "127.0.0.1"
    adb_port: int = Field(default=5037, ge=1, le=65535)
    connect: bool = Field(
        default=False,
        description="Run `adb connect SERIAL` first (network devices such as host:port).",
    )


class LabgridDevice(_Device):
    """A place of a labgrid coordinator: labgrid's reservation queue hands it out, and the place's
    resources say how to reach it (a NetworkService: SSH; an ADB device: adb). The SSH and adb
    fields below complete what the resource does not carry (keys, host keys, the adb server)."""

    leased_by_edgelab: ClassVar[bool] = False

    kind: Literal["labgrid"]
    coordinator: str = Field(
        pattern=r"^\S+$", description="The labgrid coordinator, HOST[:PORT] (port 20408 by default)."
    )
    place: str = Field(min_length=1, description="The place's name (or an alias) on that coordinator.")
    resource: str | None = Field(
        default=None,
        description="With several usable resources in the place: the name of the one to use.",
    )
    user: str | None = Field(default=None, description="SSH user; default: the NetworkService's username.")
    key_file: str | None = None
    known_hosts: str = "~/.ssh/known_hosts"
    trust_on_first_use: bool = False
    connect_timeout_s: float = Field(default=10.0, gt=0)
    keepalive_s: int = Field(default=15, ge=0)
    adb_host: str = Field(default="127.0.0.1", description="The adb server for a NetworkADBDevice.")
    adb_port: int = Field(default=5037, ge=1, le=65535)

    def _shared(self, kind: str) -> dict[str, Any]:
        """The fields every kind has, with the workdir default of the kind the place turned out to be."""
        shared = self.model_dump(include=set(_Device.model_fields))
        shared["workdir"] = self.workdir or _DEFAULT_WORKDIR[kind]
        return shared

    def over_ssh(self, host: str, port: int, user: str) -> SshDevice:
        """The board a NetworkService points at, with this entry's keys and settings (raises
        pydantic's ValidationError on a resource's bad address or port)."""
        return SshDevice(
            kind="ssh",
            host=host,
            port=port,
            user=user,
            key_file=self.key_file,
            known_hosts=self.known_hosts,
            trust_on_first_use=self.trust_on_first_use,
            connect_timeout_s=self.connect_timeout_s,
            keepalive_s=self.keepalive_s,
            **self._shared("ssh"),
        )

    def over_adb(self, serial: str, adb_host: str, adb_port: int, *, connect: bool) -> AdbDevice:
        """The phone an ADB resource names: its serial on an adb server (the exporter's, or this
        entry's for adbd on TCP)."""
        return AdbDevice(
            kind="adb",
            serial=serial,
            adb_host=adb_host,
            adb_port=adb_port,
            connect=connect,
            **self._shared("adb"),
        )


AnyDevice = LocalDevice | SshDevice | AdbDevice | LabgridDevice
DeviceConfig = Annotated[AnyDevice, Field(discriminator="kind")]
_DEVICE_ADAPTER: TypeAdapter[AnyDevice] = TypeAdapter(DeviceConfig)
_KINDS: dict[str, type[_Device]] = {
    "local": LocalDevice,
    "ssh": SshDevice,
    "adb": AdbDevice,
    "labgrid": LabgridDevice,
}

# A labgrid place has none: whether it is a board or a phone is known once it is acquired, and the
# transport it resolves to gives the default (harness.transport.device_workdir).
_DEFAULT_WORKDIR = {
    "local": "~/.cache/edgelab/device",
    "ssh": "~/.cache/edgelab/device",
    "adb": "/data/local/tmp/edgelab",
}


def default_workdir(kind: str) -> str:
    """The workdir of a device of ``kind`` that devices.yaml gives none."""
    return _DEFAULT_WORKDIR[kind]


def _field_names(kind: str) -> list[str]:
    model = _KINDS.get(kind, _Device)
    return sorted(model.model_fields)


def _explain(source: str, device: str, kind: str, error: Mapping[str, Any]) -> str:
    location = [str(part) for part in error["loc"] if part not in _KINDS]
    field = ".".join(location) or "kind"
    where = f"{source}: device '{device}'"
    kind_label = kind or "?"
    match error["type"]:
        case "missing":
            return f"{where}: field '{field}' is required for kind {kind_label}"
        case "extra_forbidden":
            known = _field_names(kind)
            close = difflib.get_close_matches(field, known, n=1)
            hint = f"did you mean '{close[0]}'?" if close else f"known fields: {', '.join(known)}"
            return f"{where}: unknown field '{field}' for kind {kind_label} ({hint})"
        case "value_error":  # our own validators: the message names the field itself
            return f"{where}: {error['ctx']['error']}"
        case "union_tag_invalid" | "union_tag_not_found":
            return f"{where}: field 'kind' must be one of {', '.join(_KINDS)} (got {kind!r})"
        case _:
            return f"{where}: field '{field}': {error['msg']} (got {short_repr(error.get('input'))})"


def parse_device(name: str, raw: object, source: str = DEFAULT_DEVICES_FILE) -> AnyDevice:
    """Validate one device entry; ``name`` is its key in the ``devices`` mapping."""
    if not isinstance(raw, Mapping):
        raise ConfigError(
            f"{source}: device '{name}': expected a mapping of fields, got {type(raw).__name__}"
        )
    odd_keys = [key for key in raw if not isinstance(key, str)]
    if odd_keys:
        raise ConfigError(
            f"{source}: device '{name}': field name {short_repr(odd_keys[0])} is not a string; "
            "write field names as in docs/devices-yaml.md"
        )
    data = dict(raw)
    if "name" in data and data["name"] != name:
        raise ConfigError(f"{source}: device '{name}': field 'name' must match its key or be omitted")
    data["name"] = name
    kind = str(data.get("kind", ""))
    if not data.get("workdir") and kind in _DEFAULT_WORKDIR:
        data["workdir"] = _DEFAULT_WORKDIR[kind]
    if kind == "local" and "python" not in data:
        data["python"] = sys.executable
    try:
        return _DEVICE_ADAPTER.validate_python(data)
    except ValidationError as exc:
        problems = [_explain(source, name, kind, err) for err in exc.errors()]
        raise ConfigError("\n".join(problems)) from None


class Fleet:
    """The devices known to this run, by name, in file order (``local`` first if implicit)."""

    def __init__(self, devices: Iterable[AnyDevice], source: str) -> None:
        self.source = source
        self.devices: dict[str, AnyDevice] = {d.name: d for d in devices}

    def __getitem__(self, name: str) -> AnyDevice:
        try:
            return self.devices[name]
        except KeyError:
            raise SelectionError(self._unknown(name)) from None

    def __contains__(self, name: object) -> bool:
        return name in self.devices

    def names(self) -> list[str]:
        return list(self.devices)

    def _unknown(self, name: str) -> str:
        close = difflib.get_close_matches(name, self.names(), n=1)
        hint = f" Did you mean '{close[0]}'?" if close else ""
        return (
            f"unknown device '{name}' (known in {self.source}: {', '.join(self.names())}).{hint} "
            f"Add it to {self.source} or pick a known one."
        )

    def select(self, spec: str) -> list[AnyDevice]:
        """Resolve ``--device``: names, comma lists, ``tag:TAG`` and ``all``; order kept, no repeats."""
        chosen: dict[str, AnyDevice] = {}
        terms = [term.strip() for term in spec.split(",") if term.strip()]
        if not terms:
            raise SelectionError("--device is empty: give a device name, a comma list, tag:TAG or all")
        for term in terms:
            if term == "all":
                matches = list(self.devices.values())
            elif term.startswith("tag:"):
                tag = term[len("tag:") :]
                matches = [d for d in self.devices.values() if tag in d.tags]
                if not matches:
                    known_tags = sorted({t for d in self.devices.values() for t in d.tags})
                    raise SelectionError(
                        f"no device in {self.source} has tag '{tag}' "
                        f"(known tags: {', '.join(known_tags) or 'none'})"
                    )
            else:
                matches = [self[term]]
            for device in matches:
                chosen.setdefault(device.name, device)
        return list(chosen.values())


def _check_name(source: str, name: object, raw: object) -> str:
    """A device name that --device can select and that means one thing."""
    if not isinstance(name, str):
        shown = short_repr(name)
        raise ConfigError(
            f"{source}: device name {shown} is not a string (YAML reads unquoted 1, true, null, yes... "
            f"as numbers, booleans or null); quote it: '{shown}':"
        )
    problem = name_problem(name)
    if problem:
        raise ConfigError(
            f"{source}: device name {short_repr(name)} {problem}; rename the device "
            "(letters, digits, '-', '_', '.')"
        )
    if name == LOCAL_DEVICE and isinstance(raw, Mapping) and raw.get("kind", "local") != "local":
        raise ConfigError(
            f"{source}: device 'local': field 'kind' must be local (got {short_repr(raw.get('kind'))}): "
            "'local' is always this host; give that device another name"
        )
    return name


def _read_devices(file: Path, source: str) -> list[AnyDevice]:
    document = yamlfile.load(file, source, DEVICES_FILE_LIMITS)
    if document is None:
        document = {}
    if not isinstance(document, Mapping) or not isinstance(document.get("devices", {}), Mapping):
        raise ConfigError(f"{source}: expected a top-level mapping 'devices: {{NAME: {{kind: ...}}}}'")
    unknown_top = [key for key in document if key != "devices"]
    if unknown_top:
        shown = ", ".join(short_repr(key) for key in unknown_top[:5])
        raise ConfigError(f"{source}: unknown top-level key(s) [{shown}]; only 'devices' is read")
    entries: Mapping[object, object] = document.get("devices") or {}
    if len(entries) > MAX_DEVICES:
        raise ConfigError(
            f"{source}: {len(entries)} devices is more than the {MAX_DEVICES} a fleet file may list; "
            "split the fleet into several files (--devices-file)"
        )
    return [parse_device(_check_name(source, name, raw), raw, source) for name, raw in entries.items()]


def _is_file_or_present(file: Path, source: str) -> bool:
    try:
        file.stat()
    except FileNotFoundError:
        return False
    except (OSError, ValueError) as exc:
        raise ConfigError(f"{source}: cannot read ({exc}); check the path") from None
    return True


def load_fleet(
    path: str | os.PathLike[str] | None = None, *, lab_file: str | os.PathLike[str] | None = None
) -> Fleet:
    """Read devices.yaml. A missing default file gives the fleet of ``local`` alone;
    an explicitly named file that is missing is an error.

    The virtual lab's devices file (``lab_file``, by default the one ``edgelab lab up`` wrote)
    is merged in while it exists, so ``--device=virtual-pixel8`` works next to the real fleet.
    """
    explicit = path is not None
    file = Path(path) if path is not None else Path(DEFAULT_DEVICES_FILE)
    source = str(file) if explicit else file.name
    if _is_file_or_present(file, source):
        devices = _read_devices(file, source)
    elif explicit:
        raise ConfigError(f"{source}: file not found (pass --devices-file with an existing file)")
    else:
        devices = []
    if not any(device.name == LOCAL_DEVICE for device in devices):
        devices.insert(0, parse_device(LOCAL_DEVICE, {"kind": "local", "tags": ["host"]}, source))
    lab = Path(lab_file) if lab_file is not None else lab_devices_file()
    if _is_file_or_present(lab, str(lab)):
        known = {device.name for device in devices}
        for device in _read_devices(lab, str(lab)):
            if device.name in known:
                raise ConfigError(
                    f"{source}: device '{device.name}' is also defined by the virtual lab in {lab}; "
                    "rename it in devices.yaml or run `edgelab lab down`"
                )
            devices.append(device)
        source = f"{source} + {lab}"
    return Fleet(devices, source)
