"""The host's content-addressed store of every model file a run measured (``artifacts/<sha256>/<name>``).

A team's model file changes in a PR; the bytes its baseline measured are then gone from the
working tree. Kept here (a hard link where the filesystem allows, else a copy), they can be
measured again beside the new file (``--interleave-baseline``).
"""

from __future__ import annotations

import contextlib
import os
import shutil
from pathlib import Path

from harness.models.zoo import cache_dir


def folder() -> Path:
    return cache_dir() / "artifacts"


def keep(path: Path, sha256: str) -> Path:
    """Keep ``path`` (whose content hashes to ``sha256``) under its hash; idempotent."""
    destination = folder() / sha256 / path.name
    if destination.exists():
        return destination
    destination.parent.mkdir(parents=True, exist_ok=True)
    temporary = destination.with_name(f".{destination.name}.{os.getpid()}.partial")
    try:
        try:
            os.link(path, temporary)
        except OSError:
            shutil.copyfile(path, temporary)
        os.replace(temporary, destination)
    finally:
        with contextlib.suppress(FileNotFoundError):
            temporary.unlink()
    return destination


def find(sha256: str) -> Path | None:
    """A kept file with this content (checked: a file damaged at rest is not returned)."""
    from harness.cachefile import sha256_file

    candidates = sorted((folder() / sha256).glob("*")) if (folder() / sha256).is_dir() else []
    zoo_files = (
        sorted((cache_dir() / "models" / sha256).glob("*"))
        if (cache_dir() / "models" / sha256).is_dir()
        else []
    )
    for candidate in [*candidates, *zoo_files]:
        if candidate.is_file() and not candidate.name.startswith(".") and sha256_file(candidate) == sha256:
            return candidate
    return None
