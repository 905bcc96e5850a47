"""The root of a stock Android phone: Debian's mksh as /system/bin/sh, Debian's toybox for the
usual tools, getprop/setprop/dumpsys, and no Python reachable from the shell.

The phone's own services (perfetto) and the runtimes' tools (benchmark_model,
onnxruntime_perf_test) are small sh clients of the lab's device service (``lab/services.py``).
Limits: toybox has no awk, so these scripts use sh arithmetic; the binaries are x86_64.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from collections.abc import Mapping
from pathlib import Path

from harness.lab.profiles import DeviceProfile
from harness.lab.sandbox import DeviceRoot, SandboxError

STOCK_PATH = ("/system/bin", "/system/xbin", "/vendor/bin")
SHELL = "/system/bin/sh"
MKSH_CANDIDATES = ("/bin/mksh", "/usr/bin/mksh")
TOYBOX_CANDIDATES = ("/usr/bin/toybox", "/bin/toybox")
RPC_DIR = "/data/vendor/edgelab/rpc"  # the device service's request FIFO and per-call folders
STANDIN_DIR = "/data/vendor/edgelab/standins"  # stand-in pid -> pid of the host process it drives
PROPS_FILE = "/data/vendor/edgelab/props"  # what setprop changed
TRACES_DIR = "/data/misc/perfetto-traces"  # the one folder perfetto may write on a user build
# Tools with their own script here: toybox must not shadow them.
OWN_TOOLS = ("sh", "getprop", "setprop", "dumpsys", "perfetto")


def stock_root(state_dir: Path, writable: Mapping[str, str]) -> DeviceRoot:
    return DeviceRoot(state_dir, writable=writable, share_host=False, shell=SHELL, path=STOCK_PATH)


def _first_existing(candidates: tuple[str, ...], package: str) -> Path:
    for candidate in candidates:
        if os.path.exists(candidate):
            return Path(candidate)
    raise SandboxError(f"no {package} on this host; install it (apt-get install -y {package})")


def _libraries(binary: Path) -> list[Path]:
    """The shared libraries (and the loader) a host binary needs, from ldd."""
    completed = subprocess.run(["ldd", str(binary)], capture_output=True, text=True, timeout=30, check=False)
    found = []
    for line in completed.stdout.splitlines():
        parts = line.split()
        for part in parts:
            if part.startswith("/") and os.path.exists(part):
                found.append(Path(part))
    return found


def _toybox_applets(toybox: Path) -> list[str]:
    completed = subprocess.run([str(toybox)], capture_output=True, text=True, timeout=30, check=False)
    return [name for name in completed.stdout.split() if name not in OWN_TOOLS and "/" not in name]


def _install(source: Path, target: Path, mode: int = 0o755) -> None:
    target.parent.mkdir(parents=True, exist_ok=True)
    temporary = target.with_name(f".{target.name}.tmp")
    shutil.copyfile(source, temporary)
    temporary.chmod(mode)
    os.replace(temporary, target)


def _write(target: Path, text: str, mode: int = 0o755) -> None:
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_text(text)
    target.chmod(mode)


def provision_stock(root: DeviceRoot, profile: DeviceProfile, props_text: str) -> None:
    """Lay out /system (shell, toybox and its links, the phone's tools), the libraries the two
    binaries load, and the /data folders a phone has."""
    system = root.state_dir / "system"
    mksh = _first_existing(MKSH_CANDIDATES, "mksh")
    toybox = _first_existing(TOYBOX_CANDIDATES, "toybox")
    _install(mksh, system / "bin" / "sh")
    _install(toybox, system / "bin" / "toybox")
    for applet in _toybox_applets(toybox):
        link = system / "bin" / applet
        if link.is_symlink() or link.exists():
            link.unlink()
        link.symlink_to("toybox")
    for library in {*_libraries(mksh), *_libraries(toybox)}:
        _install(library.resolve(), root.rootfs / str(library).lstrip("/"), 0o755)
    (system / "etc" / "edgelab").mkdir(parents=True, exist_ok=True)
    (system / "etc" / "edgelab.prop").write_text(props_text)
    _write(system / "bin" / "getprop", GETPROP)
    _write(system / "bin" / "setprop", SETPROP)
    _write(system / "bin" / "dumpsys", DUMPSYS)
    _write(system / "etc" / "edgelab" / "call.sh", CALL, 0o644)
    perfetto = system / "bin" / "perfetto"
    if profile.sdk >= 28:  # Android 9 and 10 ship it behind persist.traced.enable, 11+ enabled
        _write(perfetto, PERFETTO)
    elif perfetto.exists():
        perfetto.unlink()
    data = root.state_dir / "data"
    for folder in ("local/tmp", "media/0", "misc/perfetto-traces"):
        (data / folder).mkdir(parents=True, exist_ok=True)
    for folder in (RPC_DIR, STANDIN_DIR):
        path = root.host_path(folder)
        shutil.rmtree(path, ignore_errors=True)  # calls of an earlier lab are gone
        path.mkdir(parents=True, exist_ok=True)
    sdcard = root.rootfs / "sdcard"
    if not sdcard.is_symlink():
        sdcard.symlink_to("/data/media/0")
    for name in ("proc", "dev", "sys", "tmp"):
        (root.rootfs / name).mkdir(parents=True, exist_ok=True)


GETPROP = f"""#!/system/bin/sh
# getprop of the virtual stock phone: the profile's props, then what setprop changed.
ro=/system/etc/edgelab.prop
rw={PROPS_FILE}
if [ "$#" -eq 0 ]; then
  {{
    cat "$rw" 2>/dev/null
    while IFS= read -r line; do
      grep -q "^${{line%%=*}}=" "$rw" 2>/dev/null || printf '%s\\n' "$line"
    done < "$ro"
  }} | sort | while IFS='=' read -r key value; do printf '[%s]: [%s]\\n' "$key" "$value"; done
  exit 0
fi
value=$(grep -m1 "^$1=" "$rw" 2>/dev/null | cut -d= -f2-)
[ -n "$value" ] || value=$(grep -m1 "^$1=" "$ro" | cut -d= -f2-)
if [ -z "$value" ] && [ "$#" -ge 2 ]; then value=$2; fi
printf '%s\\n' "$value"
"""

SETPROP = f"""#!/system/bin/sh
# setprop of the virtual stock phone: read-only (ro.*) props that are set stay as they are.
rw={PROPS_FILE}
if [ "$#" -ne 2 ]; then echo "setprop: Need 2 arguments" >&2; exit 1; fi
case "$1" in
  ro.*)
    if grep -q "^$1=" /system/etc/edgelab.prop "$rw" 2>/dev/null; then
      echo "setprop: failed to set property '$1' to '$2'" >&2; exit 1
    fi ;;
esac
grep -v "^$1=" "$rw" > "$rw.$$" 2>/dev/null
printf '%s=%s\\n' "$1" "$2" >> "$rw.$$"
mv "$rw.$$" "$rw"
"""

DUMPSYS = f"""#!/system/bin/sh
# dumpsys of the virtual stock phone: battery, thermalservice and power as the sensor model
# renders them; meminfo PID|NAME from the process's /proc/PID/smaps_rollup and status (rows
# split PSS and RSS into anon, file and shmem; the private and swap columns are totals only).
service=$1
dir=/sys/edgelab/dumpsys
if [ -z "$service" ]; then ls "$dir"; echo meminfo; exit 0; fi
if [ "$service" != meminfo ]; then
  if [ -f "$dir/$service" ]; then cat "$dir/$service"; exit 0; fi
  echo "Can't find service: $service" >&2
  exit 0
fi
shift
while [ "${{1#-}}" != "$1" ]; do shift; done
target=$1
case "$target" in
  '') echo "dumpsys meminfo: give a pid or a process name" >&2; exit 1 ;;
  *[!0-9]*) pid=$(pidof "$target" | cut -d' ' -f1) ;;
  *) pid=$target ;;
esac
if [ -z "$pid" ] || [ ! -r "/proc/$pid/status" ]; then echo "No process found for: $target"; exit 0; fi
name=$(cat "/proc/$pid/comm")
source=$pid
# A stand-in tool's inference runs in a host process of the lab: its memory is the tool's.
if [ -r "{STANDIN_DIR}/$pid" ]; then read -r source name < "{STANDIN_DIR}/$pid"; fi
if [ ! -r "/proc/$source/smaps_rollup" ]; then echo "No process found for: $target"; exit 0; fi
rss=0; pss=0; anon=0; file=0; shmem=0; dirty=0; clean=0; swap=0
while read -r key value unit; do
  case "$key" in
    Rss:) rss=$value ;; Pss:) pss=$value ;; Pss_Anon:) anon=$value ;; Pss_File:) file=$value ;;
    Pss_Shmem:) shmem=$value ;; Private_Dirty:) dirty=$value ;; Private_Clean:) clean=$value ;;
    SwapPss:) swap=$value ;;
  esac
done < "/proc/$source/smaps_rollup"
ranon=0; rfile=0; rshmem=0
while read -r key value unit; do
  case "$key" in RssAnon:) ranon=$value ;; RssFile:) rfile=$value ;; RssShmem:) rshmem=$value ;; esac
done < "/proc/$source/status"
read -r up idle < /proc/uptime
up=${{up%.*}}
echo "Applications Memory Usage (in Kilobytes):"
echo "Uptime: $((up * 1000)) Realtime: $((up * 1000))"
echo
echo "** MEMINFO in pid $pid [$name] **"
echo "                   Pss  Private  Private  SwapPss      Rss     Heap     Heap     Heap"
echo "                 Total    Dirty    Clean    Dirty    Total     Size    Alloc     Free"
echo "                ------   ------   ------   ------   ------   ------   ------   ------"
printf '%13s %8d %8d %8d %8d %8d\\n' "Native Heap" "$anon" 0 0 0 "$ranon"
printf '%13s %8d %8d %8d %8d %8d\\n' ".so mmap" "$file" 0 0 0 "$rfile"
printf '%13s %8d %8d %8d %8d %8d\\n' "Other mmap" "$shmem" 0 0 0 "$rshmem"
printf '%13s %8d %8d %8d %8d %8d\\n' "TOTAL" "$pss" "$dirty" "$clean" "$swap" "$rss"
printf ' \\n App Summary\\n'
printf '                       Pss(KB)                        Rss(KB)\\n'
printf '                        ------                         ------\\n'
printf '%20s %8d %30d\\n' "Native Heap:" "$anon" "$ranon"
printf '%20s %8d %30d\\n' "Code:" "$file" "$rfile"
printf '%20s %8d\\n' "Private Other:" "$shmem"
printf ' \\n%20s %8d %17s %8d %22s %8d\\n' "TOTAL PSS:" "$pss" "TOTAL RSS:" "$rss" "TOTAL SWAP PSS:" "$swap"
"""

CALL = f"""# Sourced by the phone's perfetto and the stand-in tools: hands one call to the lab's device
# service through a FIFO and relays its stdout, stderr and exit status. SIGTERM/SIGINT are
# passed on as a stop request, which is how perfetto is stopped.
edgelab_call() {{
  _tool=$1; shift
  _rpc={RPC_DIR}
  if [ ! -p "$_rpc/requests" ]; then
    echo "$_tool: the virtual lab's device service is not running" >&2
    return 1
  fi
  _dir=$(mktemp -d "$_rpc/call.XXXXXX") || return 1
  printf '%s\\0' "$@" > "$_dir/argv"
  pwd > "$_dir/cwd"
  printf '%s\\n' "$_cmdline" > "$_dir/cmdline"
  printf '%s\\n' "$_started" > "$_dir/notify"
  if [ -n "$_stdin" ]; then cat > "$_dir/stdin"; fi
  mkfifo "$_dir/out" "$_dir/err" "$_dir/ctl"
  # Held open (read-write: it never blocks) before the request, so the service's end of it
  # reads EOF only once this shell is gone.
  exec 3<>"$_dir/ctl"
  trap 'echo stop >&3' TERM INT
  echo "$_tool $BASHPID $_dir" > "$_rpc/requests"
  cat "$_dir/err" >&2 3>&- &
  _err=$!
  cat "$_dir/out" 3>&- &
  _out=$!
  while :; do
    wait "$_out"
    [ $? -gt 128 ] && kill -0 "$_out" 2>/dev/null && continue
    break
  done
  wait "$_err"
  _rc=$(cat "$_dir/status" 2>/dev/null)
  exec 3>&-
  rm -rf "$_dir"
  return "${{_rc:-1}}"
}}
"""

PERFETTO = """#!/system/bin/sh
# perfetto of the virtual phone: the lab's tracing service records the sensor model into a real
# Perfetto trace. --background returns once recording started, printing the pid to stop
# (kill -TERM PID ends the recording and writes the file, as with the real tool).
. /system/etc/edgelab/call.sh
_cmdline=$0
_stdin=
_started=
_background=
_previous=
for _arg in "$@"; do
  case "$_previous:$_arg" in
    -c:-|--config:-|*:--config=-) _stdin=1 ;;
  esac
  case "$_arg" in -d|--background|-D|--background-wait) _background=1 ;; esac
  _previous=$_arg
done
if [ -z "$_background" ]; then
  edgelab_call perfetto "$@"
  exit $?
fi
_log=$(mktemp -d /data/local/tmp/.perfetto.XXXXXX)
if [ -n "$_stdin" ]; then cat > "$_log/stdin"; else : > "$_log/stdin"; fi
# exec, not a redirection of the subshell: mksh would keep copies of adb's pipes open in it.
(
  exec < "$_log/stdin" > /dev/null 2> "$_log/err"
  trap '' HUP
  _started=$_log/started
  edgelab_call perfetto "$@"
  echo $? > "$_log/status"
) &
_child=$!
while [ ! -e "$_log/status" ] && [ ! -e "$_log/started" ]; do sleep 0.05; done
if [ -e "$_log/status" ]; then
  cat "$_log/err" >&2
  _rc=$(cat "$_log/status")
  rm -rf "$_log"
  exit "$_rc"
fi
echo "$_child"
(exec < /dev/null > /dev/null 2>&1; sleep 2; rm -rf "$_log") &
exit 0
"""

STANDIN = """#!/system/bin/sh
# {tool} of the virtual lab: a stand-in. It takes the real tool's flags and prints its output
# format; the inference is real, on the host runtime, in this phone's cgroup (see
# docs/virtual-lab.md). SIGTERM stops it as it would stop the real tool.
. /system/etc/edgelab/call.sh
_cmdline=$0
_stdin=
_started=
edgelab_call {tool} "$@"
exit $?
"""

STANDIN_TOOLS = {"tflite": "benchmark_model", "onnx": "onnxruntime_perf_test"}


def write_standin_tools(folder: Path) -> dict[str, str]:
    """The stand-ins as files on the host, for devices.yaml's native_tools (pushed like the real
    binaries would be)."""
    folder.mkdir(parents=True, exist_ok=True)
    paths = {}
    for model_format, tool in STANDIN_TOOLS.items():
        path = folder / tool
        _write(path, STANDIN.format(tool=tool))
        paths[model_format] = str(path)
    return paths
