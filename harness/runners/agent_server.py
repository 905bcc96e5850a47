"""Host side of the warm agent: one ``edgelab_agent.py serve`` per device and runtime.

The server imports numpy and the runtime once and forks a child per run, so a run costs a shell,
a FIFO and a fork instead of an interpreter start and two imports (0.2-0.4 s on phones and
boards). Each call is an ordinary ``Transport.run`` of a small POSIX sh client, so timeouts, lost
links and the kill on timeout behave exactly as for a cold run. A device where the server cannot
start (no ``mkfifo``, no ``fork``) runs cold, and the result says so.
"""

from __future__ import annotations

import contextlib
import json
import os
import posixpath
import shlex
import threading
import uuid
from collections.abc import Sequence

from harness.agent.edgelab_agent import SERVED_EXIT_MARKER
from harness.errors import AgentError, CommandTimeout, ConnectionLost, EdgeLabError, TransportError
from harness.transport.base import CommandResult, RunningCommand, Transport

_NO_SERVER = 86
_START_TIMEOUT_S = 120.0

# $1: the server's directory, $2: the agent's arguments as a JSON list. Exits 86 when no server
# listens or it dies during the call; otherwise prints the child's stdout and the exit trailer, and
# the child's stderr. The control FIFO is opened read-write, so writing to it never blocks; a
# watchdog ends the wait if the server dies (its output goes to /dev/null: nothing may hold the
# command's stdout open after the client exits). The request line carries digits only ("<pid>
# call-<pid>": the server finds the reply FIFO in its own directory), so no path, whatever it
# holds (a newline, a space), can split or forge a request; the arguments travel as JSON in a file.
_CLIENT_SCRIPT = r"""
d="$1"
pid=$(cat "$d/pid" 2>/dev/null) && [ -p "$d/control" ] && kill -0 "$pid" 2>/dev/null || exit 86
r="$d/call-$$"
rm -f "$r" "$r.err"
mkfifo "$r" || exit 87
printf '%s' "$2" > "$r.argv" || exit 87
cat "$r" & c=$!
( while kill -0 "$pid" 2>/dev/null; do sleep 1; done; kill "$c" ) >/dev/null 2>&1 & w=$!
echo "$$ call-$$" 1<>"$d/control"
wait "$c"
kill "$w" 2>/dev/null
cat "$r.err" >&2 2>/dev/null
rm -f "$r" "$r.err" "$r.argv"
kill -0 "$pid" 2>/dev/null || exit 86
"""


# $1: the servers folder. Removes the directory of every server that no longer runs (its device
# pid is dead; or it has no pid file and has not been touched for a minute: not one starting now)
# and prints each removed name. A session's own servers remove theirs on stop; these are the ones
# of sessions that were killed, or whose device was.
_CLEAN_SCRIPT = r"""
cd "$1" 2>/dev/null || exit 0
for d in *; do
  [ -d "$d" ] || continue
  p=$(cat "$d/pid" 2>/dev/null)
  if [ -n "$p" ]; then kill -0 "$p" 2>/dev/null && continue
  else [ -n "$(find "$d" -maxdepth 0 -mmin +1 2>/dev/null)" ] || continue
  fi
  rm -rf "$d" && echo "$d"
done
true
"""


def clean_stale_servers(transport: Transport, workdir: str) -> list[str]:
    """Remove what warm agents of killed sessions left under ``<workdir>/servers``; returns their
    directory names. Leases keep other sessions off the device, so nothing there is in use."""
    folder = posixpath.join(workdir, "servers")
    result = transport.run(["sh", "-c", _CLEAN_SCRIPT, "edgelab-clean", folder], timeout=60, check=True)
    return result.stdout.split()


class ServerGone(EdgeLabError):
    """The warm agent is not (or no longer) listening; the caller runs cold."""


class AgentServer:
    """A running ``serve`` on one device for one runtime."""

    def __init__(
        self,
        *,
        transport: Transport,
        directory: str,
        runtime: str,
        running: RunningCommand,
        pid: int,
    ) -> None:
        self.transport = transport
        self.directory = directory
        self.runtime = runtime
        self.pid = pid
        self._running = running

    @classmethod
    def start(
        cls, transport: Transport, python: str, agent_path: str, workdir: str, runtime: str
    ) -> AgentServer:
        """Spawn the server and wait for its ``serving`` line. Raises AgentError with what the
        device printed when it does not come up."""
        directory = posixpath.join(workdir, "servers", f"{os.getpid()}-{uuid.uuid4().hex[:8]}-{runtime}")
        running = transport.spawn([python, agent_path, "serve", "--dir", directory, "--runtime", runtime])
        first: list[str] = []

        def read_first_line() -> None:
            for line in running.lines():
                first.append(line)
                return

        reader = threading.Thread(target=read_first_line, daemon=True)
        reader.start()
        reader.join(_START_TIMEOUT_S)
        announced = _serving(first[0]) if first else None
        if announced is None:
            running.kill()
            detail = ""
            if not reader.is_alive():
                try:
                    ended = running.wait(5)
                    detail = f" (exit {ended.exit_code}; stderr: {ended.stderr.strip()[-800:]!r})"
                except EdgeLabError:
                    detail = ""
            raise AgentError(
                f"device '{transport.device}': the warm agent did not start{detail}; "
                f"it printed {first[:1]!r}. Set warm_agent: false for this device to run cold"
            )
        return cls(
            transport=transport,
            directory=directory,
            runtime=runtime,
            running=running,
            pid=announced,
        )

    def call(self, argv: Sequence[str], *, timeout: float) -> CommandResult:
        """Run ``argv`` (``[python, agent_path, command, ...]``, as for a cold run) in a child of
        the server. Raises ServerGone when the server is not listening."""
        client = ["sh", "-c", _CLIENT_SCRIPT, "edgelab-call", self.directory, json.dumps(list(argv[2:]))]
        try:
            result = self.transport.run(client, timeout=timeout)
        except CommandTimeout as exc:
            raise CommandTimeout(exc.device, f"{shlex.join(argv)} (warm agent)", exc.timeout_s) from None
        except TransportError as exc:
            # name the agent's command, not the client script, in what the user reads
            prefix, quoted = f"device '{exc.device}': ", shlex.join(client)
            if type(exc) not in (TransportError, ConnectionLost) or quoted not in str(exc):
                raise
            detail = str(exc).removeprefix(prefix).replace(quoted, f"{shlex.join(argv)} (warm agent)")
            raise type(exc)(exc.device, detail) from None
        body, marker, code = result.stdout.rpartition("\n" + SERVED_EXIT_MARKER)
        if not marker or not code.strip().isdigit():
            if result.exit_code == _NO_SERVER:
                raise ServerGone(f"device '{self.transport.device}': the warm agent ({self.pid}) is gone")
            raise AgentError(
                f"device '{self.transport.device}': the warm agent gave no exit status "
                f"(client exit {result.exit_code}; stdout {result.stdout.strip()[-500:]!r}; "
                f"stderr {result.stderr.strip()[-800:]!r})"
            )
        return CommandResult(tuple(argv), int(code.strip()), body, result.stderr, result.duration_s)

    def stop(self) -> None:
        """End the server (best effort) and remove its directory."""
        self._running.kill()
        with contextlib.suppress(EdgeLabError):
            self.transport.run(["rm", "-rf", self.directory], timeout=30)


def _serving(line: str) -> int | None:
    try:
        document = json.loads(line)
    except json.JSONDecodeError:
        return None
    if not isinstance(document, dict) or document.get("kind") != "serving":
        return None
    pid = document.get("pid")
    return pid if isinstance(pid, int) else None
