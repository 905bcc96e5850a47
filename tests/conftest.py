"""Fixtures shared by the harness's own tests."""

import contextlib
import os
import tempfile

# pytester runs pytest in this process and unloads what a run imported; C extensions (scipy,
# numpy.fft) cannot be loaded twice, so load them once here, before any inner run. The same for
# paramiko's cryptography: its Rust core keeps the cipher classes it saw first, and re-imported
# ones fail its checks ("cipher AES in CTR mode is not supported" on the next SSH connection).
import paramiko  # noqa: F401
import psycopg  # noqa: F401  (the same for psycopg: a second copy's errors escape SQLAlchemy's wrapping)
import scipy.stats  # noqa: F401
import sqlalchemy.dialects.postgresql  # noqa: F401

# ...and grpc's (labgrid's client), whose asyncio layer lives on the harness's one event loop.
with contextlib.suppress(ImportError):
    import labgrid.remote.client  # noqa: F401

from tests.fixtures.http_server import file_server
from tests.fixtures.postgres import postgres_url
from tests.fixtures.sshd import other_sshd, sshd

# Hermetic fleets: a lab the developer has up must not leak its devices into these tests.
os.environ["EDGELAB_LAB_DIR"] = tempfile.mkdtemp(prefix="edgelab-no-lab-")
# ...and the developer's own runs must not hold (or wait on) the test session's device leases.
os.environ["EDGELAB_LEASE_DIR"] = tempfile.mkdtemp(prefix="edgelab-leases-")
os.environ["EDGELAB_HEALTH_DIR"] = tempfile.mkdtemp(prefix="edgelab-health-")

__all__ = ["file_server", "other_sshd", "postgres_url", "sshd"]
