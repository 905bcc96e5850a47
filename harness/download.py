"""Download a URL into a cache file: resumed after a cut, verified by sha256, placed atomically.

Bytes land in ``<name>.partial`` beside the final file and are renamed only once complete and
verified; a file with no known hash is pinned on its first fetch (``Pins``). No proxies beyond
what requests reads from the environment, no authentication, no parallel ranges.
"""

from __future__ import annotations

import contextlib
import datetime
import errno
import fcntl
import hashlib
import json
import os
import re
import socket
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, BinaryIO

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from harness import __version__
from harness.errors import DownloadError, HostOffline
from harness.progress import Advance, byte_progress

if TYPE_CHECKING:  # requests itself is imported where a transfer starts: most runs find the cache
    import requests

#: Larger than any edge model or runtime tool a lab pushes to a phone; callers may lower it.
DEFAULT_MAX_BYTES = 4 << 30
CONNECT_TIMEOUT_S = 10.0
#: Longest silence between two blocks of the body before the transfer counts as cut.
READ_TIMEOUT_S = 60.0
#: Tries per call; each one after a cut resumes from the bytes already on disk.
ATTEMPTS = 3
RETRY_PAUSE_S = 0.5
_BLOCK = 1 << 16
_SHA256 = re.compile(r"[0-9a-f]{64}")


def cache_dir() -> Path:
    """``$EDGELAB_CACHE`` or ``~/.cache/edgelab``: the host cache every download lands in."""
    configured = os.environ.get("EDGELAB_CACHE")
    return Path(configured).expanduser() if configured else Path.home() / ".cache" / "edgelab"


@dataclass(frozen=True)
class Downloaded:
    """A verified file in the cache, and what it took to get it."""

    path: Path
    sha256: str
    size_bytes: int
    fetched: bool  # False when the cache already held it
    resumed_from: int = 0  # bytes kept from an earlier, interrupted transfer


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def normalise_sha256(value: str, what: str) -> str:
    """Accept a hash as people paste it (upper case, ``sha256:`` prefix); refuse anything else."""
    text = value.strip().lower().removeprefix("sha256:")
    if not _SHA256.fullmatch(text):
        raise DownloadError(what, f"sha256 must be 64 hexadecimal characters (got {value!r})")
    return text


def _check_arguments(url: str, name: str, max_bytes: int) -> None:
    if not url.startswith(("http://", "https://")):
        raise DownloadError(url, "only http:// and https:// URLs can be downloaded")
    if not name or name in (".", "..") or "/" in name or "\\" in name or "\0" in name:
        raise DownloadError(url, f"file name {name!r} must be a plain name, not a path")
    if max_bytes <= 0:
        raise DownloadError(url, f"max_bytes must be positive (got {max_bytes})")


@contextlib.contextmanager
def _locked(path: Path) -> Iterator[None]:
    """One writer per cache file across processes (pytest-xdist workers, two CLI runs)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def _causes(exc: BaseException) -> Iterator[BaseException]:
    """``exc`` and everything it wraps: requests nests the socket error three levels deep."""
    pending: list[BaseException] = [exc]
    seen: set[int] = set()
    while pending:
        current = pending.pop(0)
        if id(current) in seen:
            continue
        seen.add(id(current))
        yield current
        linked = [getattr(current, "reason", None), current.__cause__, current.__context__, *current.args]
        pending.extend(item for item in linked if isinstance(item, BaseException))


def _unreachable(exc: BaseException) -> str | None:
    """Why the server could not be reached at all, or None when it was reached and then failed."""
    import requests

    for cause in _causes(exc):
        if isinstance(cause, socket.gaierror):
            return "the host name does not resolve (DNS)"
        if isinstance(cause, ConnectionRefusedError):
            return "connection refused"
        if isinstance(cause, requests.exceptions.ConnectTimeout):
            return f"no answer within {CONNECT_TIMEOUT_S:g} s"
        if isinstance(cause, OSError) and cause.errno in (errno.ENETUNREACH, errno.EHOSTUNREACH):
            return "network unreachable"
    return None


def _reason(exc: BaseException) -> str:
    """The innermost message of a failure, in one short line."""
    texts = [str(cause.args[0]) for cause in _causes(exc) if cause.args and isinstance(cause.args[0], str)]
    text = texts[-1] if texts else type(exc).__name__
    return " ".join(text.split())[:200]


class _Cut(Exception):
    """The body stopped before its end; the bytes so far stay in the partial file."""


class _Restart(Exception):
    """The partial file cannot be continued (the server's answer does not fit it): start over."""


@dataclass
class _Partial:
    """``<name>.partial`` and its sidecar, which says which URL and server version it came from."""

    path: Path
    meta: Path

    @classmethod
    def beside(cls, final: Path) -> _Partial:
        return cls(final.with_name(final.name + ".partial"), final.with_name(final.name + ".partial.json"))

    def resumable_size(self, url: str, sha256: str | None) -> tuple[int, str | None]:
        """Bytes that may be continued and the validator to send as If-Range: a partial without
        a known hash is continued only when the server named its version (ETag, Last-Modified),
        or a file that changed in between would be pinned as a mix of two versions."""
        if not self.path.is_file():
            return 0, None
        try:
            recorded = json.loads(self.meta.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            recorded = {}
        validator = recorded.get("validator") if isinstance(recorded, dict) else None
        if not isinstance(recorded, dict) or recorded.get("url") != url:
            return 0, None
        if sha256 is None and not validator:
            return 0, None
        return self.path.stat().st_size, validator if isinstance(validator, str) else None

    def remember(self, url: str, validator: str | None) -> None:
        self.meta.write_text(json.dumps({"url": url, "validator": validator}), encoding="utf-8")

    def discard(self) -> None:
        self.path.unlink(missing_ok=True)
        self.meta.unlink(missing_ok=True)


def _validator(response: requests.Response) -> str | None:
    etag = response.headers.get("ETag")
    if etag and not etag.startswith("W/"):  # If-Range accepts only strong validators
        return etag
    return response.headers.get("Last-Modified")


def _content_length(response: requests.Response) -> int | None:
    text = response.headers.get("Content-Length", "")
    return int(text) if text.isdigit() else None


def _tail(hint: str) -> str:
    return f"; {hint}" if hint else ""


def _start_offset(response: requests.Response, offset: int) -> int:
    """Where this response's body starts in the file: ``offset`` for a matching 206, 0 for a 200
    (a server that ignores Range, or a file that changed since the partial was written)."""
    if response.status_code == 200:
        return 0
    content_range = response.headers.get("Content-Range", "")
    match = re.fullmatch(r"bytes (\d+)-\d+/(\d+|\*)", content_range.strip())
    if not match or int(match.group(1)) != offset:
        raise _Restart(f"the server answered a range that does not continue the file ({content_range!r})")
    return offset


class _TooLarge(Exception):
    def __init__(self, size: int) -> None:
        super().__init__(size)
        self.size = size


@dataclass
class _Transfer:
    """One URL into one partial file, over as many requests as it takes (up to ``attempts``)."""

    session: requests.Session
    url: str
    partial: _Partial
    sha256: str | None
    label: str
    max_bytes: int
    hint: str

    def too_large(self, size: int) -> DownloadError:
        self.partial.discard()
        return DownloadError(
            self.url,
            f"the file is {size} bytes or more, over the limit of {self.max_bytes} bytes; nothing was "
            f"kept (check the URL, or raise the limit if the file really is that large){_tail(self.hint)}",
        )

    def run(self, attempts: int) -> tuple[str, int, int]:
        """(sha256, size, bytes resumed from) of the complete partial file."""
        problem = ""
        for attempt in range(1, attempts + 1):
            try:
                return self.attempt()
            except _Restart as exc:
                self.partial.discard()
                problem = str(exc)
            except _Cut as exc:
                problem = str(exc)
                if attempt < attempts:
                    time.sleep(RETRY_PAUSE_S * attempt)
        kept = self.partial.path.stat().st_size if self.partial.path.is_file() else 0
        where = (
            f"{kept} bytes are kept in {self.partial.path}: run the same command again to resume"
            if kept
            else "nothing was kept"
        )
        raise DownloadError(
            self.url, f"the transfer failed after {attempts} attempt(s): {problem}; {where}{_tail(self.hint)}"
        )

    def open(self, offset: int, validator: str | None) -> requests.Response:
        import requests

        headers = {"Accept-Encoding": "identity"}  # the bytes as stored: their sha256 is what we check
        if offset:
            headers["Range"] = f"bytes={offset}-"
            if validator:
                headers["If-Range"] = validator
        try:
            return self.session.get(
                self.url,
                headers=headers,
                stream=True,
                timeout=(CONNECT_TIMEOUT_S, READ_TIMEOUT_S),
                allow_redirects=True,
            )
        except requests.exceptions.ConnectionError as exc:
            unreachable = _unreachable(exc)
            if unreachable is None:  # reached, then dropped before answering: worth another try
                raise _Cut(f"the connection was dropped ({_reason(exc)})") from None
            raise HostOffline(
                self.url, f"host is offline or the URL is unreachable: {unreachable}{_tail(self.hint)}"
            ) from None
        except requests.exceptions.Timeout:
            raise _Cut(f"no response within {READ_TIMEOUT_S:g} s") from None
        except requests.exceptions.RequestException as exc:
            raise DownloadError(self.url, f"the request failed: {exc}{_tail(self.hint)}") from None

    def check_status(self, response: requests.Response, offset: int) -> None:
        status = response.status_code
        if status == 416 and offset:
            raise _Restart("the server refused the range (the partial file is longer than the file)")
        if status == 200 or (status == 206 and offset):
            return
        problem = f"the server answered HTTP {status} {response.reason or ''}".rstrip()
        if status >= 500 or status == 429:
            raise _Cut(problem)  # the server's trouble, maybe passing: try again
        raise DownloadError(self.url, f"{problem}; check the URL{_tail(self.hint)}")

    def attempt(self) -> tuple[str, int, int]:
        """One request: continue or start the partial file."""
        offset, validator = self.partial.resumable_size(self.url, self.sha256)
        with self.open(offset, validator) as response:
            self.check_status(response, offset)
            start = _start_offset(response, offset)
            length = _content_length(response)
            total = start + length if length is not None else None
            if total is not None and total > self.max_bytes:
                raise self.too_large(total)
            digest = hashlib.sha256()
            if start:
                with self.partial.path.open("rb") as kept:
                    for block in iter(lambda: kept.read(1 << 20), b""):
                        digest.update(block)
            self.partial.remember(self.url, _validator(response))
            with (
                self.partial.path.open("ab" if start else "wb") as target,
                byte_progress(self.label, total, initial=start) as advance,
            ):
                try:
                    size = self.stream(response, target, digest, start, advance)
                finally:
                    target.flush()
                    os.fsync(target.fileno())
        if total is not None and size != total:
            raise _Cut(f"the body ended at {size} of {total} bytes")
        return digest.hexdigest(), size, start

    def stream(
        self,
        response: requests.Response,
        target: BinaryIO,
        digest: hashlib._Hash,
        written: int,
        advance: Advance | None,
    ) -> int:
        import requests

        try:
            for block in response.iter_content(_BLOCK):
                written += len(block)
                if written > self.max_bytes:
                    raise self.too_large(written)
                target.write(block)
                digest.update(block)
                if advance is not None:
                    advance(len(block))
        except (requests.exceptions.ChunkedEncodingError, requests.exceptions.ConnectionError) as exc:
            raise _Cut(f"the connection was cut ({_reason(exc)})") from None
        except requests.exceptions.Timeout:
            raise _Cut(f"no data for {READ_TIMEOUT_S:g} s") from None
        return written


def download(
    url: str,
    *,
    sha256: str | None,
    destination: Path,
    name: str,
    label: str | None = None,
    hint: str = "",
    mismatch_fix: str = "if the file was meant to change, update the expected sha256; otherwise do not "
    "use this source",
    max_bytes: int = DEFAULT_MAX_BYTES,
    attempts: int = ATTEMPTS,
) -> Downloaded:
    """``destination/name``, downloaded from ``url`` unless the cache already holds it intact.

    ``sha256`` None trusts the first download (the caller pins what it returns, see
    ``fetch_pinned``); ``hint`` ends the error of an unreachable host or an HTTP error with what
    this caller's user can do (an offline setting, a mirror), and ``mismatch_fix`` says what to do
    when the bytes do not match ``sha256``."""
    _check_arguments(url, name, max_bytes)
    expected = normalise_sha256(sha256, url) if sha256 is not None else None
    final = destination / name
    with _locked(destination / f".{name}.lock"):
        if final.is_file():
            digest = sha256_of(final)
            if expected is None or digest == expected:
                return Downloaded(final, digest, final.stat().st_size, fetched=False)
            final.unlink()  # damaged at rest: fetch it again
        partial = _Partial.beside(final)
        import requests

        with requests.Session() as session:
            session.headers["User-Agent"] = f"edgelab/{__version__}"
            transfer = _Transfer(session, url, partial, expected, label or name, max_bytes, hint)
            digest, size, resumed_from = transfer.run(max(attempts, 1))
        if expected is not None and digest != expected:
            partial.discard()
            raise DownloadError(
                url,
                f"sha256 mismatch: expected {expected}, got {digest}; the {size} downloaded bytes were "
                f"deleted. {mismatch_fix[:1].upper()}{mismatch_fix[1:]}",
            )
        os.replace(partial.path, final)
        partial.meta.unlink(missing_ok=True)
        return Downloaded(final, digest, size, fetched=True, resumed_from=resumed_from)


# -- pins: the sha256 of a file seen on its first fetch ------------------------------------------


class Pin(BaseModel):
    """The hash a URL's file had when this cache first fetched it."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    sha256: str = Field(pattern=r"^[0-9a-f]{64}$")
    size_bytes: int = Field(ge=0)
    pinned_at: str


class _PinsFile(BaseModel):
    model_config = ConfigDict(extra="forbid")

    pins: dict[str, Pin] = Field(default_factory=dict)


class Pins:
    """``url -> Pin`` in one JSON file of the cache; later fetches of the URL must match it."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def _read(self) -> _PinsFile:
        if not self.path.is_file():
            return _PinsFile()
        try:
            return _PinsFile.model_validate_json(self.path.read_bytes())
        except (ValidationError, OSError) as exc:
            first = str(exc).splitlines()[0]
            raise DownloadError(
                str(self.path), f"the pins file is unreadable ({first}); delete it to pin again on next fetch"
            ) from None

    def all(self) -> dict[str, Pin]:
        return dict(self._read().pins)

    def get(self, url: str) -> Pin | None:
        return self._read().pins.get(url)

    def record(self, url: str, sha256: str, size_bytes: int) -> Pin:
        """Keep the first pin of a URL: a second process that fetched the same URL meanwhile
        does not overwrite it (its bytes are checked against it by the caller)."""
        with _locked(self.path.with_name(f".{self.path.name}.lock")):
            current = self._read()
            if url in current.pins:
                return current.pins[url]
            stamp = datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
            pin = Pin(sha256=sha256, size_bytes=size_bytes, pinned_at=stamp)
            current.pins[url] = pin
            staging = self.path.with_name(f".{self.path.name}.{os.getpid()}")
            staging.write_text(current.model_dump_json(indent=2) + "\n", encoding="utf-8")
            os.replace(staging, self.path)
            return pin


def fetch_pinned(
    url: str,
    *,
    cache: Path,
    name: str,
    pins: Pins,
    sha256: str | None = None,
    label: str | None = None,
    hint: str = "",
    max_bytes: int = DEFAULT_MAX_BYTES,
) -> Downloaded:
    """``<cache>/<sha256>/<name>`` for ``url``: verified against ``sha256`` when given, else
    against the pin of its first fetch, which this call records when there is none yet."""
    pin = pins.get(url) if sha256 is None else None
    expected = sha256 if sha256 is not None else (pin.sha256 if pin else None)
    if expected is not None:
        fix = (
            f"the file at this URL changed since it was pinned on {pin.pinned_at}: if that is "
            f"intended, delete its entry from {pins.path} to pin the new file; otherwise do not trust "
            "this source"
            if pin is not None
            else "if the file was meant to change, update the expected sha256; otherwise do not use "
            "this source"
        )
        expected = normalise_sha256(expected, url)
        return download(
            url,
            sha256=expected,
            destination=cache / expected,
            name=name,
            label=label,
            hint=hint,
            mismatch_fix=fix,
            max_bytes=max_bytes,
        )
    staging = cache / ".incoming" / hashlib.sha256(url.encode()).hexdigest()[:16]
    got = download(
        url, sha256=None, destination=staging, name=name, label=label, hint=hint, max_bytes=max_bytes
    )
    recorded = pins.record(url, got.sha256, got.size_bytes)
    if recorded.sha256 != got.sha256:  # another process pinned a different file first
        got.path.unlink()
        raise DownloadError(
            url,
            f"sha256 mismatch: expected {recorded.sha256} (pinned in {pins.path} by another fetch), "
            f"got {got.sha256}; the downloaded bytes were deleted. The file at this URL is changing: "
            "check the source",
        )
    final = cache / got.sha256 / name
    final.parent.mkdir(parents=True, exist_ok=True)
    os.replace(got.path, final)
    with contextlib.suppress(OSError):
        (staging / f".{name}.lock").unlink()
        staging.rmdir()
    return Downloaded(final, got.sha256, got.size_bytes, fetched=got.fetched, resumed_from=got.resumed_from)
