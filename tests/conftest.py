"""Fixtures shared by the harness's own tests."""

import os
import tempfile

from tests.fixtures.sshd import other_sshd, sshd

# Hermetic fleets: a lab the developer has up must not leak its devices into these tests.
os.environ["EDGELAB_LAB_DIR"] = tempfile.mkdtemp(prefix="edgelab-no-lab-")

__all__ = ["other_sshd", "sshd"]
