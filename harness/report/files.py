"""Writing a report file: atomically (a reader never sees half a page) and readable by all (0644),
as reports are shared as CI artifacts and served from lab hosts; none of them holds a secret."""

from __future__ import annotations

import contextlib
import os
import tempfile
from pathlib import Path

PUBLIC = 0o644


def write_text(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    descriptor, temporary = tempfile.mkstemp(prefix=f".{path.name}-", dir=path.parent)
    try:
        with os.fdopen(descriptor, "w", encoding="utf-8") as handle:
            handle.write(text)
        os.chmod(temporary, PUBLIC)
        os.replace(temporary, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(temporary)
        raise
    return path
