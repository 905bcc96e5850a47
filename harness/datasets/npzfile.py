"""Arrays of an .npz on disk instead of in memory: each member extracted once as an .npy and
memory-mapped, so a dataset or a device's outputs larger than the host's memory can be read.

Writing needs no helper: ``np.savez`` streams memory-mapped arrays into the zip in chunks.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import zipfile
from pathlib import Path

import numpy as np

from harness.errors import DataError


def _stamp(path: Path) -> str:
    info = path.stat()
    return json.dumps([str(path.resolve()), info.st_size, info.st_mtime_ns])


def open_arrays(path: Path, scratch: Path) -> dict[str, np.ndarray]:
    """``name -> read-only memmap`` for every array of ``path``, extracted under ``scratch`` (reused
    while the .npz is unchanged). A member that is not a plain array is refused."""
    try:
        stamp = _stamp(path)
        folder = scratch / hashlib.sha256(stamp.encode()).hexdigest()[:16]
        marker = folder / ".complete"
        if not marker.exists():
            partial = folder.with_name(folder.name + f".{os.getpid()}.partial")
            shutil.rmtree(partial, ignore_errors=True)
            partial.mkdir(parents=True)
            names: list[str] = []
            with zipfile.ZipFile(path) as archive:
                for member in archive.infolist():
                    if not member.filename.endswith(".npy"):
                        continue
                    # tensor names hold '/' and ':'; the files are numbered, the names kept
                    with archive.open(member) as source, (partial / f"{len(names)}.npy").open("wb") as out:
                        shutil.copyfileobj(source, out, 1 << 20)
                    names.append(member.filename[: -len(".npy")])
            (partial / ".complete").write_text(json.dumps(names))  # the archive's order: outputs' order
            shutil.rmtree(folder, ignore_errors=True)
            os.replace(partial, folder)
        names = json.loads(marker.read_text())
        arrays = {
            name: np.load(folder / f"{index}.npy", mmap_mode="r", allow_pickle=False)
            for index, name in enumerate(names)
        }
    except (OSError, zipfile.BadZipFile, ValueError) as exc:
        raise DataError(f"{path}: not a readable .npz ({exc}); save it with numpy.savez") from None
    return arrays
