"""The agent's thermal sampler: reads a sysfs tree on its own thread, on the timed loop's clock."""

from __future__ import annotations

import importlib.util
import time

from harness.runners.python_agent import AGENT_FILE

spec = importlib.util.spec_from_file_location("edgelab_agent", AGENT_FILE)
assert spec is not None and spec.loader is not None
agent = importlib.util.module_from_spec(spec)
spec.loader.exec_module(agent)


def make_sysfs(root, zones, policies):
    for index, (name, temp) in enumerate(zones):
        folder = root / "class" / "thermal" / f"thermal_zone{index}"
        folder.mkdir(parents=True)
        (folder / "type").write_text(name + "\n")
        if temp is not None:
            (folder / "temp").write_text(f"{temp}\n")
    for name, top, cap in policies:
        folder = root / "devices" / "system" / "cpu" / "cpufreq" / name
        folder.mkdir(parents=True)
        (folder / "cpuinfo_max_freq").write_text(f"{top}\n")
        (folder / "scaling_max_freq").write_text(f"{cap}\n")
        (folder / "scaling_cur_freq").write_text(f"{cap}\n")


def test_sampler_reads_zones_and_policies_in_natural_order(tmp_path):
    zones = [(f"zone{i}", 30000 + i) for i in range(11)] + [("broken", None)]
    make_sysfs(tmp_path, zones, [("policy4", 2000000, 2000000), ("policy0", 1000000, 900000)])
    sampler = agent.ThermalSampler(0.01, sysfs=str(tmp_path))
    started = time.perf_counter_ns()
    sampler.start()
    time.sleep(0.1)
    (tmp_path / "devices/system/cpu/cpufreq/policy4/scaling_max_freq").write_text("1500000\n")
    time.sleep(0.1)
    document = sampler.stop()
    assert document["zones"] == [f"zone{i}" for i in range(11)]  # zone10 after zone9; unreadable left out
    assert document["policies"] == ["policy0", "policy4"]
    assert document["cpuinfo_max_khz"] == [1000000, 2000000]
    samples = document["samples"]
    assert len(samples) >= 5
    assert all(started <= t for t, *_ in samples) and [s[0] for s in samples] == sorted(s[0] for s in samples)
    assert samples[0][1][10] == 30010
    assert samples[0][3] == [900000, 2000000] and samples[-1][3] == [900000, 1500000]


def test_sampler_without_thermal_files_reports_empty_lists(tmp_path):
    sampler = agent.ThermalSampler(0.01, sysfs=str(tmp_path / "absent"))
    sampler.start()
    document = sampler.stop()
    assert document["zones"] == [] and document["policies"] == []
    assert all(sample[1:] == [[], [], [], None] for sample in document["samples"])  # no energy source
