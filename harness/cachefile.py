"""Host files that EdgeLab builds and caches (precision variants, inputs, evaluation sets, fp32
references), each stored with the sha256 it had when built and checked against it before use.

A file whose bytes changed (garbage, truncated, or a valid model with altered weights) is built
again, never used. A hash is remembered per process by (path, size, mtime, ctime, inode), so a
suite reads each file once; a write to the file changes its ctime and forces a new hash.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import os
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path

SIDECAR_SUFFIX = ".sha256"


class CacheRebuiltWarning(UserWarning):
    """A cached file's bytes differed from its record; it was built again."""


_hashes: dict[tuple[str, int, int, int, int], str] = {}


def _key(path: Path) -> tuple[str, int, int, int, int]:
    info = path.stat()
    return (str(path.absolute()), info.st_size, info.st_mtime_ns, info.st_ctime_ns, info.st_ino)


def _remember(path: Path, digest: str) -> None:
    """A file just moved into place keeps the hash of the bytes it was written with."""
    _hashes[_key(path)] = digest


def sha256_file(path: Path) -> str:
    """The file's sha256, hashed once per process while its size, mtime, ctime and inode hold."""
    key = _key(path)
    cached = _hashes.get(key)
    if cached is None:
        digest = hashlib.sha256()
        with path.open("rb") as handle:
            for block in iter(lambda: handle.read(1 << 20), b""):
                digest.update(block)
        cached = digest.hexdigest()
        _hashes[key] = cached
    return cached


def sidecar(path: Path) -> Path:
    return path.with_name(path.name + SIDECAR_SUFFIX)


def recorded_sha256(path: Path) -> str | None:
    """The sha256 recorded when ``path`` was built (None without a readable record)."""
    try:
        text = sidecar(path).read_text(encoding="ascii").strip()
    except (OSError, UnicodeDecodeError):
        return None
    return text if len(text) == 64 and all(c in "0123456789abcdef" for c in text) else None


def matches(path: Path, expected: str | None) -> bool:
    """True when ``path`` is a file whose bytes hash to ``expected``."""
    if expected is None:
        return False
    try:
        return sha256_file(path) == expected
    except OSError:
        return False


def verified(path: Path) -> bool:
    """True when ``path`` holds exactly the bytes recorded beside it."""
    return matches(path, recorded_sha256(path))


@contextlib.contextmanager
def locked(path: Path) -> Iterator[None]:
    """Serialise building one artifact across pytest-xdist workers and concurrent runs."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.with_name(path.name + ".lock").open("a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def _write_text_atomic(path: Path, text: str) -> None:
    descriptor, temporary = tempfile.mkstemp(prefix=".tmp-", dir=path.parent)
    try:
        with os.fdopen(descriptor, "w", encoding="ascii") as handle:
            handle.write(text)
        os.replace(temporary, path)
    finally:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(temporary)


def build(path: Path, write: Callable[[Path], object], *, suffix: str = "") -> str:
    """``write`` the artifact into a temporary file beside ``path``, then move it into place and
    record its sha256 beside it; returns the sha256. A crash leaves no file that passes
    ``verified``: the record is written after the file, and removed first."""
    path.parent.mkdir(parents=True, exist_ok=True)
    sidecar(path).unlink(missing_ok=True)
    descriptor, name = tempfile.mkstemp(prefix=".build-", suffix=suffix or path.suffix, dir=path.parent)
    os.close(descriptor)
    temporary = Path(name)
    try:
        write(temporary)
        digest = sha256_file(temporary)
        os.replace(temporary, path)
        _remember(path, digest)
    finally:
        temporary.unlink(missing_ok=True)
    _write_text_atomic(sidecar(path), digest + "\n")
    return digest


def ensure(path: Path, write: Callable[[Path], object], *, suffix: str = "") -> str:
    """``path`` as recorded, built by ``write`` when it is missing or its bytes differ from the
    record; returns the sha256 of the bytes now there."""
    with locked(path):
        recorded = recorded_sha256(path)
        if matches(path, recorded):
            assert recorded is not None
            return recorded
        return build(path, write, suffix=suffix)
