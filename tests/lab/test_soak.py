"""The soak's machinery, short: a few pytest runs on virtual-pixel8 and virtual-rpi5 with one fault
of each kind (adbd killed, sshd killed, link cut, results DB locked, workdir full), then every
finished test stored once, no healthy device quarantined, and nothing left behind."""

from __future__ import annotations

import os
import shutil

import pytest

from benchmarks.soak import FAULTS, Soak
from tests.lab.conftest import lab_root


@pytest.mark.skipif(os.geteuid() != 0, reason="the virtual lab needs root")
def test_one_fault_of_each_kind_loses_nothing_and_leaves_nothing():
    health_dir = os.environ.get("EDGELAB_HEALTH_DIR")
    soak = Soak(lab_root("soak"), seed=1, log=lambda line: None)
    try:
        soak.up()
        soak.run_all(runs=len(FAULTS), every=1)
        figures = soak.check(wall_s=0.0, runs_requested=len(FAULTS))
    finally:
        left = soak.down()
    assert left == []  # `lab down` found nothing of the lab left (processes, mounts, links, cgroups)
    assert os.environ.get("EDGELAB_HEALTH_DIR") == health_dir  # the rest of the session's, unchanged
    assert figures.faults == dict.fromkeys(FAULTS, 1)
    assert figures.runs == len(FAULTS) + 1  # and the settling run
    assert figures.hung_runs == 0
    assert figures.tests_finished == 2 * figures.runs  # one test per device per run, each with an outcome
    assert (figures.results_stored, figures.duplicates, figures.lost, figures.extra) == (
        figures.tests_finished,
        0,
        [],
        [],
    )
    assert figures.outcomes.get("passed", 0) >= 2  # the settling run passed on both devices
    assert figures.quarantined_while_healthy == []
    assert figures.leftover_processes == [] and figures.leftover_files == []
    assert figures.held_leases == [] and figures.adb_forwards == []
    shutil.rmtree(soak.folder, ignore_errors=True)
