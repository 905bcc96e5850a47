"""The POSIX sh script the native runner runs on a device around a runtime's own tool, and the
reader of what it prints: one device command per measurement, no Python on the device.

It takes the TraceConfig on stdin, starts Perfetto (or the sysfs sampler), sleeps the idle
window, runs the tool once (``once``) or once per sample (``samples``), reads Android's thermal
status every ``status_period_s`` and snapshots the tool's memory with ``dumpsys meminfo`` while
it runs, stops the recording and prints every file it
produced between marker lines. Limits: uptime marks have /proc/uptime's 10 ms steps; printed
files are cut at SECTION_MAX_BYTES.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any, Literal

from harness.errors import ParseError
from harness.probes.sysfs_sampler import SAMPLER

KIND = "native-run"
SECTION_MAX_BYTES = 16 << 20
Mode = Literal["once", "samples"]
Tracing = Literal["perfetto", "sysfs", "none"]

# Positional arguments: token, run dir, mode, idle s, tracing, trace path, sampler period,
# pss (1/0), tflite sections (1/0), Android thermal status period, samples, then "links" pairs
# (file, path in the run dir: a hard link, else a copy; a tool resolves its data beside the path it
# was given, not a symlink's target),
# then per-sample inputs as triples (sample-major file, bytes per sample, file the tool reads),
# then "--" and the tool's argv. Every line the script prints itself starts with the token.
_BODY = r"""
t=$1 d=$2 mode=$3 idle=$4 tracing=$5 trace=$6 period=$7 pss=$8 sections=$9
shift 9
status_s=$1
shift
samples=$1 n=$2
shift 2
mkdir -p "$d" || { echo "$t failed mkdir $d"; exit 0; }
cat > "$d/trace.pbtxt"
mark() { read -r up rest < /proc/uptime; echo "$t mark $1 $up"; }
section() { echo "$t begin $1"; head -c @MAX@ "$2" 2>/dev/null; echo; echo "$t end $1"; }
i=0
while [ "$i" -lt "$n" ]; do
  mkdir -p "$(dirname "$d/$2")" && { ln -f "$1" "$d/$2" 2> /dev/null || cp -f "$1" "$d/$2"; } ||
    { echo "$t failed link $2"; exit 0; }
  shift 2; i=$((i + 1))
done
k=$1; shift; i=0
while [ "$i" -lt "$k" ]; do eval "if$i=\$1 ib$i=\$2 ic$i=\$3"; shift 3; i=$((i + 1)); done
[ "$1" = -- ] && shift
sampler() {
@SAMPLER@
}
if command -v dumpsys > /dev/null 2>&1; then android=1; else android=; fi
for g in /sys/devices/system/cpu/cpufreq/policy*/scaling_governor; do
  [ -r "$g" ] && read -r v < "$g" && echo "$t governor ${g%/scaling_governor} $v"
done
for s in /sys/class/power_supply/*; do
  [ -r "$s/type" ] && read -r ty < "$s/type" && [ "$ty" = Battery ] || continue
  c=; st=; read -r c < "$s/capacity"; read -r st < "$s/status"
  echo "$t battery ${c:-?} ${st:-?}"; break
done 2>/dev/null
if [ -n "$android" ]; then
  dumpsys power > "$d/power.txt" 2>&1; dumpsys thermalservice > "$d/thermal-before.txt" 2>&1
fi
old=
if [ "$tracing" = perfetto ]; then
  if [ "$sections" = 1 ]; then old=$(getprop debug.tflite.trace); setprop debug.tflite.trace 1; fi
  perfetto --background --txt -c - -o "$trace" < "$d/trace.pbtxt" > "$d/perfetto.out" 2> "$d/perfetto.err"
  prc=$?
  ppid=
  while read -r line; do case $line in ''|*[!0-9]*) ;; *) ppid=$line ;; esac; done < "$d/perfetto.out"
  if [ "$prc" -ne 0 ] || [ -z "$ppid" ]; then
    [ "$sections" = 1 ] && setprop debug.tflite.trace "${old:-0}"
    echo "$t failed perfetto $prc"
    section perfetto-stdout "$d/perfetto.out"; section perfetto-stderr "$d/perfetto.err"
    exit 0
  fi
  echo "$t perfetto $ppid"
elif [ "$tracing" = sysfs ]; then
  sampler "$period" > "$d/sysfs.txt" 2> /dev/null < /dev/null &
  spid=$!
fi
cpustat() {
  read -r cpu s1 s2 s3 s4 s5 s6 s7 s8 rest < /proc/stat; echo "$t stat $1 $s1 $s2 $s3 $s4 $s5 $s6 $s7 $s8"
}
cpustat idle-start
mark idle-start
[ "$idle" = 0 ] || sleep "$idle"
mark idle-end
cpustat idle-end
spid2=
if [ -n "$android" ]; then
  (
    while :; do
      read -r up rest < /proc/uptime
      v=$(dumpsys thermalservice 2> /dev/null |
        sed -n 's/^[[:space:]]*Thermal Status:[[:space:]]*\([0-9][0-9]*\).*/\1/p')
      echo "$up ${v%%[!0-9]*}"
      sleep "$status_s"
    done
  ) > "$d/status.txt" 2> /dev/null < /dev/null &
  spid2=$!
fi
rc=0
if [ "$mode" = once ]; then
  mark tool-start
  "$@" > "$d/tool.out" 2> "$d/tool.err" < /dev/null &
  pid=$!
  echo "$t pid $pid"
  wpid=
  if [ "$pss" = 1 ] && [ -n "$android" ]; then
    (
      ds=5 m=0
      while :; do
        sleep "$((ds / 10)).$((ds % 10))"
        kill -0 "$pid" 2> /dev/null || exit 0
        m=$((m + 1)); dumpsys meminfo "$pid" > "$d/meminfo.$m" 2>&1
        ds=$((ds * 2))
      done
    ) > /dev/null 2>&1 < /dev/null &
    wpid=$!
  fi
  wait "$pid"; rc=$?
  mark tool-end
  [ -n "$wpid" ] && kill "$wpid" 2> /dev/null
else
  : > "$d/tool.out"; : > "$d/outputs.bin"
  i=0
  while [ "$i" -lt "$samples" ]; do
    j=0
    while [ "$j" -lt "$k" ]; do
      eval "f=\$if$j b=\$ib$j c=\$ic$j"
      tail -c "+$((i * b + 1))" "$f" 2> /dev/null | head -c "$b" > "$c"
      [ "$(wc -c < "$c")" -eq "$b" ] || { rc=97; break 2; }
      j=$((j + 1))
    done
    rm -f "$d/out.bin"
    mark "sample-$i"
    "$@" > "$d/sample.log" 2>&1 < /dev/null; rc=$?
    { echo "$t sample $i"; cat "$d/sample.log"; } >> "$d/tool.out"
    [ "$rc" -eq 0 ] || break
    [ -f "$d/out.bin" ] || { rc=98; break; }
    cat "$d/out.bin" >> "$d/outputs.bin"
    i=$((i + 1))
  done
  mark tool-end
  echo "$t samples-done $i"
fi
if [ "$tracing" = perfetto ]; then
  kill -TERM "$ppid" 2> /dev/null
  w=0; while kill -0 "$ppid" 2> /dev/null && [ "$w" -lt 300 ]; do sleep 0.1; w=$((w + 1)); done
  [ "$sections" = 1 ] && setprop debug.tflite.trace "${old:-0}"
  mark trace-stopped
elif [ "$tracing" = sysfs ]; then
  kill "$spid" 2> /dev/null
fi
[ -n "$spid2" ] && kill "$spid2" 2> /dev/null
[ -n "$android" ] && dumpsys thermalservice > "$d/thermal-after.txt" 2>&1
echo "$t rc $rc"
for f in tool.out tool.err result.csv sysfs.txt status.txt power.txt thermal-before.txt thermal-after.txt; do
  [ -f "$d/$f" ] && section "$f" "$d/$f"
done
for f in "$d"/meminfo.*; do [ -f "$f" ] && section "${f##*/}" "$f"; done
echo "$t done"
"""


def run_script() -> str:
    """The script with the sysfs sampler as its ``sampler`` function (the sampler's own text)."""
    return _BODY.replace("@SAMPLER@", SAMPLER.strip("\n")).replace("@MAX@", str(SECTION_MAX_BYTES)).lstrip()


@dataclass(frozen=True)
class ScriptArgs:
    """What one measurement asks of the script (device paths)."""

    token: str
    run_dir: str
    mode: Mode
    idle_s: float
    tracing: Tracing
    trace_path: str | None
    period_s: float
    pss: bool
    tflite_sections: bool
    tool_argv: tuple[str, ...]
    samples: int = 0
    status_period_s: float = 1.0  # Android's thermal status (dumpsys thermalservice) while the tool runs
    links: tuple[tuple[str, str], ...] = ()  # (target, path relative to the run dir)
    inputs: tuple[tuple[str, int, str], ...] = ()  # (sample-major file, bytes per sample, tool's file)

    def argv(self, script_path: str) -> list[str]:
        argv = [
            "sh",
            script_path,
            self.token,
            self.run_dir,
            self.mode,
            f"{self.idle_s:g}",
            self.tracing,
            self.trace_path or "-",
            f"{self.period_s:g}",
            "1" if self.pss else "0",
            "1" if self.tflite_sections else "0",
            f"{self.status_period_s:g}",
            str(self.samples),
            str(len(self.links)),
        ]
        for target, path in self.links:
            argv += [target, path]
        argv.append(str(len(self.inputs)))
        for source, size, current in self.inputs:
            argv += [source, str(size), current]
        return [*argv, "--", *self.tool_argv]


@dataclass(frozen=True)
class ScriptOutput:
    """What the script printed: uptime marks (boot-clock ns), the tool's pid and exit status,
    and the files it printed."""

    marks: dict[str, int] = field(default_factory=dict)
    pid: int | None = None
    exit_code: int | None = None
    failed: str | None = None  # "perfetto 1", "mkdir ...": the script stopped before the tool ran
    perfetto_pid: int | None = None
    samples_done: int | None = None
    governors: dict[str, str] = field(default_factory=dict)
    battery: tuple[int | None, str | None] | None = None
    cpu_stat: dict[str, tuple[int, ...]] = field(default_factory=dict)
    sections: dict[str, str] = field(default_factory=dict)
    done: bool = False
    token: str = ""

    def samples_output(self) -> list[str]:
        """tool.out of the per-sample loop, cut at its ``<token> sample I`` lines: one text per run."""
        parts: list[list[str]] = []
        for line in (self.section("tool.out") or "").split("\n"):
            if line == f"{self.token} sample {len(parts)}":
                parts.append([])
            elif parts:
                parts[-1].append(line)
        return ["\n".join(part) for part in parts]

    def section(self, name: str) -> str | None:
        return self.sections.get(name)

    def idle_busy_pct(self) -> float | None:
        """How busy the device's CPUs were during the idle window (as the agent measures it)."""
        before, after = self.cpu_stat.get("idle-start"), self.cpu_stat.get("idle-end")
        if not before or not after:
            return None
        total = sum(after) - sum(before)
        idle = (after[3] - before[3]) + (after[4] - before[4] if len(after) > 4 and len(before) > 4 else 0)
        return round(100.0 * (total - idle) / total, 2) if total > 0 else None


def _uptime_ns(text: str) -> int:
    return round(float(text) * 1e9)


class _Reader:
    """One pass over the script's stdout: its own lines (token first) and the files between
    ``begin NAME`` and ``end NAME``; anything else (a tool writing to the terminal) is ignored."""

    def __init__(self, token: str) -> None:
        self.token = token
        self.prefix = token + " "
        self.found = ScriptOutput(token=token)
        self.values: dict[str, Any] = {}
        self.open_name: str | None = None
        self.lines: list[str] = []
        self.seen = False

    def feed(self, line: str) -> None:
        if self.open_name is not None:
            if line == f"{self.prefix}end {self.open_name}":
                # the script adds one line end after the file: joined, the lines are the file exactly
                self.found.sections[self.open_name] = "\n".join(self.lines)
                self.open_name, self.lines = None, []
            else:
                self.lines.append(line)
            return
        if not line.startswith(self.prefix):
            return
        self.seen = True
        word, _, rest = line[len(self.prefix) :].partition(" ")
        try:
            self.word(word, rest, rest.split())
        except (ValueError, IndexError):
            raise ParseError(KIND, f"unreadable line from the device script: {line[:200]!r}") from None

    def word(self, word: str, rest: str, fields: list[str]) -> None:
        if word == "begin":
            self.open_name, self.lines = rest, []
        elif word == "mark" and len(fields) == 2:
            self.found.marks[fields[0]] = _uptime_ns(fields[1])
        elif word in ("pid", "perfetto", "rc", "samples-done"):
            self.values[word] = int(fields[0])
        elif word == "failed":
            self.values["failed"] = rest
        elif word == "governor" and len(fields) == 2:
            self.found.governors[fields[0].rsplit("/", 1)[-1]] = fields[1]
        elif word == "battery" and len(fields) >= 2:
            status = " ".join(fields[1:])
            self.values["battery"] = (
                int(fields[0]) if fields[0].isdigit() else None,
                None if status == "?" else status,
            )
        elif word == "stat" and len(fields) >= 5:
            self.found.cpu_stat[fields[0]] = tuple(int(v) for v in fields[1:] if v.isdigit())
        elif word == "done":
            self.values["done"] = True

    def result(self, text: str) -> ScriptOutput:
        if not self.seen:
            raise ParseError(
                KIND, f"the device script printed none of its lines; its output: {text.strip()[-400:]!r}"
            )
        if self.open_name is not None:
            raise ParseError(KIND, f"the device script's output stops inside its '{self.open_name}' section")
        return dataclasses.replace(
            self.found,
            pid=self.values.get("pid"),
            exit_code=self.values.get("rc"),
            failed=self.values.get("failed"),
            perfetto_pid=self.values.get("perfetto"),
            samples_done=self.values.get("samples-done"),
            battery=self.values.get("battery"),
            done=bool(self.values.get("done")),
        )


def parse_script_output(text: str, token: str) -> ScriptOutput:
    """The script's stdout; ParseError when it is not this run's script talking (no token line)."""
    reader = _Reader(token)
    for line in text.split("\n"):
        reader.feed(line)
    return reader.result(text)
