"""Where a model's bytes are on this host: the zoo's wheel member, the team's file, or a URL's
download in the cache (``<cache>/models/<sha256>/<name>``, resumable, verified, with progress).

A file is checked against the sha256 it had when the run resolved it: a model edited during a
run would otherwise be measured and cached under the hash of other bytes.
"""

from __future__ import annotations

from pathlib import Path

from harness import cachefile, download
from harness.errors import DownloadError, ModelError
from harness.models import zoo
from harness.models.spec import FileSource, ModelSpec, UrlSource, WheelSource

OFFLINE_HINT = (
    "the host must reach it once; after that the cache in EDGELAB_CACHE serves it (edgelab models check "
    "fetches every project model)"
)


def fetch_url(url: str, sha256: str, name: str, label: str) -> Path:
    """The verified cache file of a URL model, downloaded only when the cache lacks it intact. A
    file whose bytes do not match ``sha256`` is deleted and refused (harness.download)."""
    try:
        got = download.download(
            url,
            sha256=sha256,
            destination=zoo.cache_dir() / "models" / download.normalise_sha256(sha256, url),
            name=name,
            label=label,
            hint=OFFLINE_HINT,
            mismatch_fix="if the model was meant to change, update its sha256 in models.yaml; otherwise "
            "do not use this source",
        )
    except DownloadError as exc:
        raise ModelError(f"model '{label}': {exc}") from None
    return got.path


def cached_url(url: str, sha256: str, name: str) -> Path | None:
    """The URL model's cache file when it is already there (no download, not re-hashed)."""
    candidate = zoo.cache_dir() / "models" / download.normalise_sha256(sha256, url) / name
    return candidate if candidate.is_file() else None


def local_file(spec: ModelSpec) -> Path:
    """The host file holding exactly ``spec``'s bytes."""
    source = spec.source
    if isinstance(source, WheelSource):
        return zoo.fetch(spec)
    if isinstance(source, UrlSource):
        return fetch_url(source.url, spec.sha256, spec.filename, spec.name)
    assert isinstance(source, FileSource)
    if not source.path.is_file():
        raise ModelError(f"model '{spec.name}': {source.path} is gone; it existed when the run started")
    digest = cachefile.sha256_file(source.path)
    if digest != spec.sha256:
        raise ModelError(
            f"model '{spec.name}': {source.path} changed during the run (sha256 {spec.sha256[:12]} when "
            f"resolved, {digest[:12]} now); run again"
        )
    return source.path
