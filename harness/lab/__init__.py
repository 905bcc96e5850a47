"""The virtual device lab: an Android device behind a Python adbd, Linux boards behind real
sshd, and a sensor model driven by real CPU time. It never imports the transports it tests."""

from __future__ import annotations

from harness.config import LAB_DIR_ENV, lab_devices_file, lab_dir

__all__ = ["LAB_DIR_ENV", "lab_devices_file", "lab_dir"]
