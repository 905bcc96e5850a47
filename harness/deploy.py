"""Content-addressed artifacts on the device: ``<workdir>/cas/<sha256>/<name>``.

One round trip hashes what is already there (and stamps it used: the cache is pruned least
recently used first); only missing or corrupted files are pushed. A push
streams the file into one device command and is checked before the file is moved into place:
over a link without integrity of its own (ADB) the command hashes the bytes as they arrive
(``tee`` into ``sha256sum``: no second pass over the file); over SSH, whose packets are each
MAC-checked, it checks the size written, as scp would trust the link, and the hash check at the
next use still catches a file damaged at rest. A push that lasts over a second shows a progress
bar on a terminal (harness/progress.py).
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import platform
import posixpath
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from harness.cachefile import sha256_file
from harness.errors import DeployError, EdgeLabError
from harness.progress import byte_progress
from harness.transport.base import Transport

_HASH_TIMEOUT_S = 300.0
# Push timeouts grow with the file: 1 MB/s is slower than any USB 2 or Wi-Fi link a lab uses.
_SLOWEST_LINK_BYTES_PER_S = 1 << 20

# Prints "<index> <sha256|missing>" for each path given as a positional argument. sha256sum is in
# coreutils, busybox and Android's toybox; the device's python is the fallback.
_HASH_SCRIPT = r"""
py="$1"; shift
pyhash='import hashlib,sys;print(hashlib.sha256(open(sys.argv[1],"rb").read()).hexdigest())'
i=0
for p in "$@"; do
  if [ -f "$p" ]; then
    if command -v sha256sum >/dev/null 2>&1; then h=$(sha256sum < "$p"); h=${h%% *}
    else h=$("$py" -c "$pyhash" "$p"); fi
    echo "$i ${h:-unreadable}"
  else
    echo "$i missing"
  fi
  i=$((i+1))
done
touch -c "$@" 2>/dev/null
true
"""

# Writes stdin to "$1" and prints "<sha256 of what arrived> <bytes on disk>" ("-" for the hash
# when $3 is "size"). The pipeline's status is sha256sum's, so a failed write shows up as a size
# short of what was sent.
_RECEIVE_SCRIPT = r"""
part="$1"; py="$2"; check="$3"
mkdir -p "${part%/*}" || exit 3
if [ "$check" = size ]; then
  cat > "$part" || exit 4
  h=-
elif command -v sha256sum >/dev/null 2>&1 && command -v tee >/dev/null 2>&1; then
  h=$(tee "$part" | sha256sum) || exit 4
  h=${h%% *}
else
  h=$("$py" -c '
import hashlib, sys
digest = hashlib.sha256()
with open(sys.argv[1], "wb") as out:
    for block in iter(lambda: sys.stdin.buffer.read(1 << 20), b""):
        digest.update(block)
        out.write(block)
print(digest.hexdigest())' "$part") || exit 4
fi
size=$(wc -c < "$part") || exit 5
echo "$h $size"
"""

# Lists the partial files under $1 (a cas folder), NUL-separated: first those not modified for
# $2 minutes, then a "//" marker, then the others.
_PARTIALS_SCRIPT = r"""
[ -d "$1" ] || exit 0
find "$1" -type f -name '*.partial-*' -mmin +"$2" -print0 2>/dev/null
printf '//\0'
find "$1" -type f -name '*.partial-*' ! -mmin +"$2" -print0 2>/dev/null
true
"""

# One line per cache entry of $1 (a cas folder): "<sha256> <bytes> <newest mtime>", then one
# "<sha256>/<file name>" line per file in it; the first line is the device's clock.
_ENTRIES_SCRIPT = r"""
date +%s
cd "$1" 2>/dev/null || exit 0
for e in *; do
  [ -d "$e" ] || continue
  size=0; newest=0
  for f in "$e"/* "$e"/.[!.]*; do
    [ -f "$f" ] || continue
    set -- $(stat -c '%s %Y' "$f" 2>/dev/null || echo "0 0")
    size=$((size + $1)); [ "$2" -gt "$newest" ] && newest=$2
    echo "F $f"
  done
  echo "E $e $size $newest"
done
"""

_FINALIZE_SCRIPT = r"""
while [ "$#" -gt 1 ]; do mv -f "$1" "$2" || exit 1; shift 2; done
"""

# A partial file is named for its writer: "<final path>.partial-<pid>-<host tag>". A writer on this
# host is gone when its pid is; one on another host (or an older name without a tag) when the file
# has not grown for STALE_FOREIGN_PARTIAL_MIN minutes (a push that slow has failed).
HOST_TAG = hashlib.sha256(platform.node().encode()).hexdigest()[:8]
STALE_FOREIGN_PARTIAL_MIN = 60
_PARTIAL = re.compile(r"\.partial-(?P<pid>\d+)(?:-(?P<host>[0-9a-f]{8}))?$")


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def partial_is_stale(path: str, old: bool) -> bool:
    """Whether the writer of partial file ``path`` is gone (``old``: not modified for
    STALE_FOREIGN_PARTIAL_MIN minutes)."""
    match = _PARTIAL.search(path)
    if match is None:
        return False
    if match["host"] == HOST_TAG:
        pid = int(match["pid"])
        return pid != os.getpid() and not _alive(pid)
    return old


@dataclass(frozen=True)
class CacheEntry:
    """One content-addressed folder ``cas/<sha256>`` on the device."""

    sha256: str
    size_bytes: int
    last_used: int  # device clock, seconds: the newest mtime in it (stamped at every check)
    files: tuple[str, ...]


@dataclass
class CacheStatus:
    device_clock: int
    entries: list[CacheEntry]

    @property
    def size_bytes(self) -> int:
        return sum(entry.size_bytes for entry in self.entries)


@dataclass
class PruneReport:
    removed: list[CacheEntry] = field(default_factory=list)
    partials_removed: list[str] = field(default_factory=list)
    size_before: int = 0
    size_after: int = 0


@dataclass(frozen=True)
class Artifact:
    """A host file to place on a device, named by content."""

    local: Path
    sha256: str
    name: str
    size_bytes: int

    @classmethod
    def from_file(cls, path: Path, name: str | None = None) -> Artifact:
        if not path.is_file():
            raise DeployError(f"artifact {path}: file not found on the host")
        return cls(path, sha256_file(path), name or path.name, path.stat().st_size)


@dataclass
class DeployReport:
    """What ``ensure`` did, for the results and for the 'warm run moves 0 bytes' check."""

    present: list[str] = field(default_factory=list)
    pushed: list[str] = field(default_factory=list)
    replaced: list[str] = field(default_factory=list)
    bytes_pushed: int = 0


def resolve_workdir(transport: Transport, workdir: str) -> str:
    """Turn ``~/...`` into an absolute path on the device: remote arguments are quoted, so the
    device shell never expands ``~`` for us."""
    if workdir == "~" or workdir.startswith("~/"):
        home = transport.run(["sh", "-c", 'printf %s "$HOME"'], timeout=30, check=True).stdout.strip()
        if not home:
            raise DeployError(f"device '{transport.device}': $HOME is empty; set an absolute workdir")
        workdir = home + workdir[1:]
    if not workdir.startswith("/"):
        raise DeployError(
            f"device '{transport.device}': workdir '{workdir}' must be absolute or start with ~/"
        )
    return workdir.rstrip("/") or "/"


class Deployer:
    """Keeps a device's artifact cache in step with what a run needs."""

    def __init__(self, transport: Transport, workdir: str, python: str = "python3") -> None:
        self.transport = transport
        self.workdir = workdir
        self.python = python
        self._verified: set[str] = set()  # device paths hashed or pushed by this deployer

    def forget(self, artifacts: Sequence[Artifact]) -> None:
        """Check these on the device again at the next ``ensure``, even when trusted."""
        self._verified.difference_update(self.remote_path(a) for a in artifacts)

    def remote_path(self, artifact: Artifact) -> str:
        return posixpath.join(self.workdir, "cas", artifact.sha256, artifact.name)

    def remote_hashes(self, paths: Sequence[str]) -> dict[str, str | None]:
        """sha256 of each device path (None when missing), in one round trip."""
        if not paths:
            return {}
        result = self.transport.run(
            ["sh", "-c", _HASH_SCRIPT, "edgelab-hash", self.python, *paths],
            timeout=_HASH_TIMEOUT_S,
            check=True,
        )
        found: dict[str, str | None] = {}
        for line in result.stdout.splitlines():
            index_text, _, value = line.strip().partition(" ")
            if not index_text.isdigit() or int(index_text) >= len(paths):
                raise DeployError(
                    f"device '{self.transport.device}': unexpected output from the hash check: {line!r}"
                )
            found[paths[int(index_text)]] = None if value == "missing" else value
        missing = [p for p in paths if p not in found]
        if missing:
            raise DeployError(
                f"device '{self.transport.device}': the hash check did not report {missing}; "
                f"stderr: {result.stderr.strip()[-500:]}"
            )
        return found

    def ensure(self, artifacts: Sequence[Artifact], *, trust_verified: bool = False) -> DeployReport:
        """Make every artifact present and intact on the device; push only what is not.

        ``trust_verified`` skips the device round trip when every artifact was already hashed or
        pushed by this deployer; the caller must then check them at use (the agent's --sha256)."""
        report = DeployReport()
        unique = list({a.sha256 + "/" + a.name: a for a in artifacts}.values())
        if trust_verified and all(self.remote_path(a) in self._verified for a in unique):
            report.present.extend(a.name for a in unique)
            return report
        hashes = self.remote_hashes([self.remote_path(a) for a in unique])
        to_push: list[Artifact] = []
        for artifact in unique:
            current = hashes[self.remote_path(artifact)]
            if current == artifact.sha256:
                report.present.append(artifact.name)
                self._verified.add(self.remote_path(artifact))
                continue
            if current is not None:
                report.replaced.append(artifact.name)
            to_push.append(artifact)
        if to_push:
            self._push_verified(to_push, report)
        return report

    def _receive(self, artifact: Artifact, partial: str) -> tuple[str, int]:
        """Stream one file to ``partial`` on the device; return the device's (sha256, size)."""
        timeout = _HASH_TIMEOUT_S + artifact.size_bytes / _SLOWEST_LINK_BYTES_PER_S
        check = "size" if self.transport.integrity_in_transit else "sha256"
        label = f"push {artifact.name} to {self.transport.device}"
        with byte_progress(label, artifact.size_bytes) as advance:
            result = self.transport.run(
                ["sh", "-c", _RECEIVE_SCRIPT, "edgelab-receive", partial, self.python, check],
                timeout=timeout,
                stdin_file=artifact.local,
                stdin_progress=advance,
            )
        digest, _, size_text = result.stdout.strip().rpartition("\n")[-1].partition(" ")
        if result.exit_code != 0 or len(digest) not in (1, 64) or not size_text.strip().isdigit():
            raise DeployError(
                f"device '{self.transport.device}': receiving {artifact.name} into {partial} failed "
                f"(exit {result.exit_code}, stdout {result.stdout.strip()[-200:]!r}, "
                f"stderr {result.stderr.strip()[-500:]!r}); check free space and permissions "
                "under the device's workdir"
            )
        return digest, int(size_text)

    # -- the cache itself: stale partial files, status, pruning --------------------------------

    @property
    def cas(self) -> str:
        return posixpath.join(self.workdir, "cas")

    def stale_partials(self) -> list[str]:
        """Partial files whose writer is gone (killed pushes), in one round trip."""
        result = self.transport.run(
            ["sh", "-c", _PARTIALS_SCRIPT, "edgelab-partials", self.cas, str(STALE_FOREIGN_PARTIAL_MIN)],
            timeout=_HASH_TIMEOUT_S,
            check=True,
        )
        old, _, recent = result.stdout.partition("//\0")
        found = [(path, True) for path in old.split("\0") if path]
        found += [(path, False) for path in recent.split("\0") if path]
        return [path for path, is_old in found if partial_is_stale(path, is_old)]

    def clean_partials(self) -> list[str]:
        """Remove partial files whose writer is gone; returns what was removed."""
        stale = self.stale_partials()
        if stale:
            self.transport.run(["rm", "-f", "--", *stale], timeout=60, check=True)
        return stale

    def status(self) -> CacheStatus:
        """Every cache entry with its size and when it was last used, in one round trip."""
        result = self.transport.run(
            ["sh", "-c", _ENTRIES_SCRIPT, "edgelab-cache", self.cas], timeout=_HASH_TIMEOUT_S, check=True
        )
        lines = result.stdout.splitlines()
        clock = int(lines[0]) if lines and lines[0].strip().isdigit() else 0
        entries: list[CacheEntry] = []
        files: list[str] = []
        for line in lines[1:]:
            kind, _, rest = line.partition(" ")
            if kind == "F":
                files.append(rest.partition("/")[2])
            elif kind == "E":
                sha, size, newest = ([*rest.split(), "", "0", "0"])[:3]
                if len(sha) == 64 and size.isdigit() and newest.isdigit():
                    entries.append(CacheEntry(sha, int(size), int(newest), tuple(files)))
                files = []
        return CacheStatus(clock, entries)

    def prune(self, max_bytes: int, *, keep: Sequence[str] = ()) -> PruneReport:
        """Remove stale partial files, then whole entries, least recently used first, until the
        cache holds at most ``max_bytes``. The caller holds the device's lease: no run uses the
        cache meanwhile. ``keep``: sha256s never removed (this session's agent, say)."""
        report = PruneReport(partials_removed=self.clean_partials())
        status = self.status()
        report.size_before = report.size_after = status.size_bytes
        doomed: list[CacheEntry] = []
        for entry in sorted(status.entries, key=lambda e: (e.last_used, e.sha256)):
            if report.size_after <= max_bytes:
                break
            if entry.sha256 in keep:
                continue
            doomed.append(entry)
            report.size_after -= entry.size_bytes
        if doomed:
            folders = [posixpath.join(self.cas, entry.sha256) for entry in doomed]
            self.transport.run(["rm", "-rf", "--", *folders], timeout=300, check=True)
            self._verified = {p for p in self._verified if not any(p.startswith(f + "/") for f in folders)}
        report.removed = doomed
        return report

    def _push_verified(self, artifacts: Sequence[Artifact], report: DeployReport) -> None:
        staging = {a: f"{self.remote_path(a)}.partial-{os.getpid()}-{HOST_TAG}" for a in artifacts}
        try:
            for artifact, partial in staging.items():
                digest, size = self._receive(artifact, partial)
                report.bytes_pushed += size
                report.pushed.append(artifact.name)
                if size != artifact.size_bytes or digest not in ("-", artifact.sha256):
                    got = digest if digest != "-" else "not hashed, the link checks integrity"
                    raise DeployError(
                        f"device '{self.transport.device}': {artifact.name} arrived corrupted "
                        f"(sha256 expected {artifact.sha256}, got {got}; {size} of "
                        f"{artifact.size_bytes} bytes written); check free space on the device and "
                        "the link, then rerun"
                    )
        except EdgeLabError:
            # A failed push (a full disk, a lost link) must not keep the space it took: remove its
            # partial files now; when the device is gone, the next session's clean_partials does.
            with contextlib.suppress(EdgeLabError):
                self.transport.run(["rm", "-f", "--", *staging.values()], timeout=60)
            raise
        moves = [p for a, partial in staging.items() for p in (partial, self.remote_path(a))]
        self.transport.run(["sh", "-c", _FINALIZE_SCRIPT, "edgelab-finalize", *moves], timeout=60, check=True)
        self._verified.update(self.remote_path(a) for a in artifacts)
