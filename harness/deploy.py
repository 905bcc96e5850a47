"""Content-addressed artifacts on the device: ``<workdir>/cas/<sha256>/<name>``.

One round trip hashes what is already there; only missing or corrupted files are pushed. A push
streams the file into one device command and is checked before the file is moved into place:
over a link without integrity of its own (ADB) the command hashes the bytes as they arrive
(``tee`` into ``sha256sum``: no second pass over the file); over SSH, whose packets are each
MAC-checked, it checks the size written, as scp would trust the link, and the hash check at the
next use still catches a file damaged at rest. A push that lasts over a second shows a progress
bar on a terminal (harness/progress.py).
"""

from __future__ import annotations

import hashlib
import os
import posixpath
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from harness.errors import DeployError
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

_FINALIZE_SCRIPT = r"""
while [ "$#" -gt 1 ]; do mv -f "$1" "$2" || exit 1; shift 2; done
"""

_file_hash_cache: dict[tuple[str, int, int], str] = {}


def sha256_file(path: Path) -> str:
    """Hash a host file, remembered by (path, size, mtime) so a suite hashes each model once."""
    stat = path.stat()
    key = (str(path.resolve()), stat.st_size, stat.st_mtime_ns)
    cached = _file_hash_cache.get(key)
    if cached is None:
        digest = hashlib.sha256()
        with path.open("rb") as handle:
            for block in iter(lambda: handle.read(1 << 20), b""):
                digest.update(block)
        cached = digest.hexdigest()
        _file_hash_cache[key] = cached
    return cached


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

    def _push_verified(self, artifacts: Sequence[Artifact], report: DeployReport) -> None:
        staging = {a: f"{self.remote_path(a)}.partial-{os.getpid()}" for a in artifacts}
        for artifact, partial in staging.items():
            digest, size = self._receive(artifact, partial)
            report.bytes_pushed += size
            report.pushed.append(artifact.name)
            if size != artifact.size_bytes or digest not in ("-", artifact.sha256):
                self.transport.run(["rm", "-f", *staging.values()], timeout=60)
                got = digest if digest != "-" else "not hashed, the link checks integrity"
                raise DeployError(
                    f"device '{self.transport.device}': {artifact.name} arrived corrupted "
                    f"(sha256 expected {artifact.sha256}, got {got}; {size} of "
                    f"{artifact.size_bytes} bytes written); check free space on the device and "
                    "the link, then rerun"
                )
        moves = [p for a, partial in staging.items() for p in (partial, self.remote_path(a))]
        self.transport.run(["sh", "-c", _FINALIZE_SCRIPT, "edgelab-finalize", *moves], timeout=60, check=True)
        self._verified.update(self.remote_path(a) for a in artifacts)
