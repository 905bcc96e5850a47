"""One byte-progress bar for long transfers (downloads, pushes to a device), drawn with tqdm.

Shown only on an interactive terminal, never under CI, and only once a transfer has lasted
about a second, so quick transfers and logs stay silent. It reports bytes, not outcomes.
"""

from __future__ import annotations

import contextlib
import os
import sys
from collections.abc import Callable, Iterator, Mapping
from typing import TextIO

from tqdm import tqdm

#: A transfer shorter than this never draws a bar (tqdm's ``delay``).
DELAY_S = 1.0

Advance = Callable[[int], None]


def progress_enabled(stream: TextIO, environ: Mapping[str, str]) -> bool:
    """A bar is drawn for a person watching a terminal, never into a CI log or a file."""
    if environ.get("CI", "").strip().lower() not in ("", "0", "false", "no"):
        return False
    try:
        return stream.isatty()
    except (AttributeError, ValueError):  # a closed or replaced stream
        return False


@contextlib.contextmanager
def byte_progress(label: str, total: int | None, *, initial: int = 0) -> Iterator[Advance | None]:
    """Yield a callable that advances the bar by a number of bytes, or None when no bar is drawn,
    so a caller can keep its fast path (no per-block callback) when nobody is watching."""
    stream = sys.stderr
    if not progress_enabled(stream, os.environ):
        yield None
        return
    with tqdm(
        total=total,
        initial=initial,
        desc=label,
        unit="B",
        unit_scale=True,
        unit_divisor=1024,
        delay=DELAY_S,
        leave=False,
        file=stream,
    ) as bar:

        def advance(count: int) -> None:
            bar.update(count)

        yield advance
