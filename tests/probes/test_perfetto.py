"""Reading Perfetto traces and the sysfs sampler's output into the agent's records. Traces are
built with the ``perfetto`` package's own generated protos; the sampler runs under Debian's mksh."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest
from google.protobuf import text_format
from perfetto.protos.perfetto.trace import perfetto_trace_pb2 as pb

from harness.errors import ParseError
from harness.probes import perfetto
from harness.probes.sysfs_sampler import SAMPLER, parse_sysfs_samples, sampler_argv
from harness.probes.thermal import judge

S = 1_000_000_000
BASE = 1000 * S


def packet(t: int, **fields) -> pb.TracePacket:
    return pb.TracePacket(timestamp=t, **fields)


def synthetic_trace() -> bytes:
    """4 s: temps rise, the policy4 ceiling drops at 2 s, rails and battery every 0.5 s, three
    inferences (Invoke@0/0 inside invoke@-1/0) of 10, 20 and 30 ms."""
    packets = [packet(BASE, trace_config=text_format.Parse(perfetto.trace_config(4), pb.TraceConfig()))]
    info = packet(BASE)
    for frequencies in ([300000, 1704000],) * 4 + ([400000, 2367000],) * 4:
        info.cpu_info.cpus.add(processor="test").frequencies.extend(frequencies)
    packets.append(info)
    rails = packet(BASE)
    rails.power_rails.rail_descriptor.add(index=0, rail_name="S4M_VDD_CPUCL0")
    rails.power_rails.rail_descriptor.add(index=1, rail_name="VSYS_PWR_DISPLAY")
    packets.append(rails)
    for step in range(9):
        t = BASE + step * S // 2
        energy = packet(t)
        energy.power_rails.energy_data.add(
            index=0, timestamp_ms=t // 1_000_000, energy=step * 1_000_000
        )  # 2 W
        energy.power_rails.energy_data.add(index=1, timestamp_ms=t // 1_000_000, energy=step * 500_000)  # 1 W
        packets.append(energy)
        packets.append(packet(t, battery={"current_ua": -500_000, "voltage_uv": 4_000_000}))
        stats = packet(t)
        stats.sys_stats.thermal_zone.add(name="thermal_zone0", temp=40 + step, type="BIG")
        stats.sys_stats.cpufreq_khz.extend([1704000] * 4 + [2367000 if t < BASE + 2 * S else 1426000] * 4)
        packets.append(stats)
    ftrace = packet(BASE + 4 * S)
    events = ftrace.ftrace_events
    for step in range(9):
        t = BASE + step * S // 2
        events.event.add(
            timestamp=t, thermal_temperature={"id": 0, "temp": 40_000 + step * 1_500, "thermal_zone": "BIG"}
        )
    events.event.add(
        timestamp=BASE + 2 * S - 1,
        cpu_frequency_limits={"min_freq": 400000, "max_freq": 1426000, "cpu_id": 4},
    )
    start = BASE + S
    for duration_ms in (10, 20, 30):
        end = start + duration_ms * 1_000_000
        for t, buf in (
            (start, "B|42|invoke@-1/0\n"),
            (start, "B|42|Invoke@0/0\n"),
            (end, "E|42\n"),
            (end, "E|42\n"),
        ):
            events.event.add(timestamp=t, pid=42, print={"buf": buf})
        start = end + 5_000_000
    packets.append(ftrace)
    return pb.Trace(packet=packets).SerializeToString()


def test_trace_config_is_a_valid_traceconfig_with_the_sources_the_runner_needs():
    config = text_format.Parse(
        perfetto.trace_config(30, poll_ms=200, max_file_bytes=8 << 20), pb.TraceConfig()
    )
    assert config.duration_ms == 30_000 and config.write_into_file and config.max_file_size_bytes == 8 << 20
    names = [source.config.name for source in config.data_sources]
    assert names == ["android.power", "linux.sys_stats", "linux.system_info", "linux.ftrace"]
    power = config.data_sources[0].config.android_power_config
    assert power.battery_poll_ms == 200 and power.collect_power_rails
    ftrace = config.data_sources[3].config.ftrace_config
    assert "power/cpu_frequency_limits" in ftrace.ftrace_events and list(ftrace.atrace_apps) == ["*"]
    with pytest.raises(ValueError, match="poll_ms 50"):
        perfetto.trace_config(10, poll_ms=50)


def test_start_and_stop_commands():
    argv = perfetto.start_argv("/data/local/tmp/c.pbtxt", "/data/misc/perfetto-traces/r1.perfetto-trace")
    assert argv[:2] == ["sh", "-c"] and "perfetto --background --txt -c - -o" in argv[2]
    with pytest.raises(ValueError, match="only under /data/misc/perfetto-traces/"):
        perfetto.start_argv("/data/local/tmp/c.pbtxt", "/data/local/tmp/r1")
    assert "kill -TERM 1234" in perfetto.stop_argv(1234)[2]
    assert perfetto.parse_pid("5678\n") == 5678
    with pytest.raises(ParseError, match="no pid"):
        perfetto.parse_pid("Could not connect\n")


def test_parse_trace_gives_inferences_thermal_trace_and_energy():
    trace = perfetto.parse_trace(synthetic_trace())
    invokes = trace.inferences()
    assert [s.duration_ns for s in invokes] == [10_000_000, 20_000_000, 30_000_000]
    assert {s.name for s in trace.slices} == {"Invoke@0/0", "invoke@-1/0"}
    thermal = trace.thermal_trace(BASE + S)
    assert thermal.zones == ("BIG",) and thermal.policies == ("policy0", "policy4")
    assert thermal.cpuinfo_max_khz == (1704000, 2367000)
    assert thermal.samples[0].offset_s == -1.0 and thermal.samples[0].temps_c == (40.0,)  # millidegree events
    assert thermal.samples[-1].temps_c == (52.0,) and thermal.period_s == 0.5
    assert thermal.samples[0].max_khz == (None, None)  # no limits event yet: not read, not assumed
    assert thermal.samples[-1].max_khz == (None, 1426000) and thermal.samples[-1].cur_khz == (
        1704000,
        1426000,
    )
    verdict = judge(thermal, [], [])
    assert verdict.throttled and verdict.reasons[0].startswith(
        "frequency cap: policy4 ceiling 2367000 -> 1426000 kHz"
    )
    report = trace.energy.report((BASE, BASE + 4 * S), None, 3)
    assert trace.energy.source == "odpm" and report.avg_power_w == pytest.approx(3.0)
    assert report.mj_per_inference == pytest.approx(4000.0)
    battery = trace.battery.report((BASE, BASE + 4 * S), None, 3)
    assert battery.avg_power_w == pytest.approx(2.0)


def test_parse_trace_refuses_what_is_not_a_trace(tmp_path: Path):
    with pytest.raises(ParseError, match="empty"):
        perfetto.parse_trace(b"")
    with pytest.raises(ParseError, match="not a Perfetto trace"):
        perfetto.parse_trace(b"\xff\xff\xff\xff not a trace at all")
    with pytest.raises(ParseError, match="no trace packets"):
        perfetto.parse_trace(b"\x12\x03abc")  # a valid protobuf, but no packet in it
    big = tmp_path / "big.perfetto-trace"
    big.write_bytes(synthetic_trace())
    with pytest.raises(ParseError, match="over the 100-byte bound"):
        perfetto.read_trace(big, max_bytes=100)
    assert perfetto.read_trace(big).packets > 10


@pytest.fixture
def fake_sysfs(tmp_path: Path) -> Path:
    root = tmp_path / "sys"
    for index, (kind, temp) in enumerate((("BIG", 45500), ("skin", 33000))):
        zone = root / f"class/thermal/thermal_zone{index}"
        zone.mkdir(parents=True)
        (zone / "type").write_text(kind + "\n")
        (zone / "temp").write_text(f"{temp}\n")
    policy = root / "devices/system/cpu/cpufreq/policy4"
    policy.mkdir(parents=True)
    for name, value in (
        ("scaling_cur_freq", 1426000),
        ("scaling_max_freq", 1426000),
        ("cpuinfo_max_freq", 2367000),
    ):
        (policy / name).write_text(f"{value}\n")
    supply = root / "class/power_supply/battery"
    supply.mkdir(parents=True)
    (supply / "current_now").write_text("-400000\n")
    (supply / "voltage_now").write_text("4000000\n")
    return root


def test_sysfs_sampler_runs_under_mksh_and_parses(fake_sysfs: Path):
    mksh = shutil.which("mksh")
    if mksh is None:
        pytest.skip("mksh is not installed (apt-get install -y mksh)")
    script = SAMPLER.replace("/sys/", f"{fake_sysfs}/")
    done = subprocess.run(
        ["timeout", "1", mksh, "-c", script, "sampler", "0.2"], capture_output=True, text=True, check=False
    )
    samples = parse_sysfs_samples(done.stdout)
    assert len(samples.times_ns) >= 3
    assert samples.zones == ("BIG", "skin") and samples.policies == ("policy4",)
    thermal = samples.thermal_trace(samples.times_ns[0])
    assert thermal.samples[0].temps_c == (45.5, 33.0) and thermal.samples[0].max_khz == (1426000,)
    assert judge(thermal, [], []).reasons[0].startswith("frequency capped from the start")
    assert samples.battery.rows[0][4] == pytest.approx(1_600_000.0)  # 1.6 W in uW
    assert sampler_argv(0.5)[-1] == "0.5"


def test_sysfs_samples_bad_input_names_the_line():
    with pytest.raises(ParseError, match="line 1: a reading before"):
        parse_sysfs_samples("z 0 BIG 40000\n")
    with pytest.raises(ParseError, match="line 2: unknown line"):
        parse_sysfs_samples("t 12.5\nbogus\n")
    with pytest.raises(ParseError, match="empty"):
        parse_sysfs_samples("  \n")
