"""The virtual device lab: an Android device behind a Python adbd, Linux boards behind real
sshd, and a sensor model driven by real CPU time. It never imports the transports it tests."""

from __future__ import annotations

import os
from pathlib import Path

LAB_DIR_ENV = "EDGELAB_LAB_DIR"


def lab_dir() -> Path:
    """``$EDGELAB_LAB_DIR`` or ``~/.cache/edgelab/lab``: the lab's state, devices file and logs."""
    configured = os.environ.get(LAB_DIR_ENV)
    return Path(configured).expanduser() if configured else Path.home() / ".cache" / "edgelab" / "lab"


def lab_devices_file() -> Path:
    """The devices file ``edgelab lab up`` writes; merged into every fleet while it exists."""
    return lab_dir() / "devices.yaml"
