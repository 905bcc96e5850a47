"""The one Runner protocol: how a measurement is made on a device, whatever runs it there.

The session asks a device for its runner (the Python agent, or the runtimes' native tools on a
stock phone) and never branches on which; both return the same typed result, and what a runner
did not measure is None with a reason in the result's notes.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Literal, Protocol

from pydantic import BaseModel, ConfigDict, Field

from harness.deploy import Artifact, DeployReport
from harness.errors import ConnectionLost, TransportError
from harness.measurement import BenchmarkResult, LatencyProtocol


class _Lenient(BaseModel):
    model_config = ConfigDict(extra="ignore", frozen=True)


class OsInfo(_Lenient):
    system: str | None = None
    release: str | None = None
    machine: str | None = None
    platform: str | None = None
    android: dict[str, str | None] | None = None


class CpuInfo(_Lenient):
    model: str | None = None
    cores: int | None = None
    online: str | None = None


class PythonInfo(_Lenient):
    version: str | None = None
    implementation: str | None = None
    executable: str | None = None


class RuntimeAvailability(_Lenient):
    available: bool
    module: str | None = None
    version: str | None = None
    error: str | None = None


class DeviceProbe(_Lenient):
    """What a device says about itself: the agent's ``probe`` document, or what a device without
    Python answers to uname and getprop (python, numpy and runtimes then stay empty)."""

    os: OsInfo = Field(default_factory=OsInfo)
    cpu: CpuInfo = Field(default_factory=CpuInfo)
    python: PythonInfo | None = None
    numpy: str | None = None
    runtimes: dict[str, RuntimeAvailability] = Field(default_factory=dict)
    memory_kb: dict[str, int] = Field(default_factory=dict)
    energy_sources: tuple[str, ...] = ()


@dataclass(frozen=True)
class RunRequest:
    """One measurement of one model file on one device, with every setting resolved."""

    model: Artifact
    inputs: Artifact | None  # None: the runner makes inputs from the model's signature
    model_name: str
    model_format: str
    runtime: str
    precision: str
    protocol: LatencyProtocol
    threads: int
    energy: str | None = None  # devices.yaml / --energy: auto, none, a source, external
    cooldown_below_c: float | None = None
    outputs_to: Path | None = None  # pull every sample's outputs back here (accuracy)
    # Where a runner keeps this run's raw files on the host: <raw_to>.perfetto-trace, and the
    # output of a tool that failed. None: nothing is kept beyond the result.
    raw_to: Path | None = None


class Runner(Protocol):
    """A way of measuring on one connected device (labgrid-driver style: one interface)."""

    kind: Literal["agent", "native"]
    probe: DeviceProbe
    setup: DeployReport  # what starting the runner placed on the device (the agent, tools)

    def run(self, request: RunRequest) -> tuple[BenchmarkResult, DeployReport]:
        """Deploy what the request needs, measure, pull outputs back if asked."""
        ...

    def outputs_unsupported(self, model_format: str) -> str | None:
        """Why this runner cannot pull back a model's outputs (accuracy), or None when it can:
        asked before an accuracy run builds its data."""
        ...

    def close(self) -> None:
        """Stop what the runner keeps running on the device (warm agents); the transport stays."""
        ...


@contextlib.contextmanager
def phase(name: str) -> Iterator[None]:
    """Say which phase a lost connection interrupted: 'device 'x': phase run: ...'."""
    try:
        yield
    except (ConnectionLost, TransportError) as exc:
        if type(exc) not in (ConnectionLost, TransportError) or "phase " in str(exc):
            raise  # timeouts and command failures carry their own context
        prefix = f"device '{exc.device}': "
        detail = str(exc)[len(prefix) :] if str(exc).startswith(prefix) else str(exc)
        raise type(exc)(exc.device, f"phase {name}: {detail}") from exc
