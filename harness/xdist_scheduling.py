"""pytest-xdist scheduling by device: a device's tests form one scope, so they run on one worker
in order while different devices run on different workers (``pytest -n auto``)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from xdist.scheduler import LoadScopeScheduling


class DeviceScheduling(LoadScopeScheduling):  # type: ignore[misc]
    def __init__(self, config: Any, log: Any, devices: Sequence[str]) -> None:
        super().__init__(config, log)
        self.devices = sorted(devices, key=len, reverse=True)  # longest first: "pixel8-pro" before "pixel8"

    def _split_scope(self, nodeid: str) -> str:
        """``suite.py::test[DEVICE-model-runtime-precision]`` -> DEVICE; other tests: their own scope."""
        if "[" in nodeid:
            parameters = nodeid.rsplit("[", 1)[1]
            for device in self.devices:
                if parameters.startswith(device + "-"):
                    return device
        return nodeid
