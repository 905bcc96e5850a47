"""Step detection in history series (the penalized piecewise-constant fit)."""

from __future__ import annotations

import numpy as np
import pytest

from harness.step_detect import detect_steps


def noisy(levels, noise=0.01, seed=0):
    rng = np.random.default_rng(seed)
    return [level * float(np.exp(rng.normal(0, noise))) for level in levels]


def test_a_step_is_found_at_its_run_with_its_size():
    (step,) = detect_steps(noisy([10.0] * 12 + [11.5] * 8))
    assert step.index == 12 and step.change == pytest.approx(0.15, abs=0.02)


def test_noise_and_changes_below_the_floor_are_no_steps():
    found = sum(bool(detect_steps(noisy([10.0] * 30, seed=seed))) for seed in range(200))
    assert found <= 2  # 1% noise over 30 runs: almost never a step
    assert detect_steps(noisy([10.0] * 10 + [10.2] * 10, noise=0.001)) == []  # 2% < the 3% floor
    assert detect_steps([10.0, 10.0]) == [] and detect_steps([1.0, 0.0, 1.0]) == []


def test_the_newest_run_alone_can_be_a_step_but_one_odd_run_inside_is_not():
    (step,) = detect_steps(noisy([10.0] * 15 + [12.0]))
    assert step.index == 15
    assert detect_steps(noisy([10.0] * 7 + [12.0] + [10.0] * 7)) == []


def test_two_steps_in_one_series():
    steps = detect_steps(noisy([5.0] * 8 + [6.0] * 8 + [5.0] * 8, noise=0.005))
    assert [s.index for s in steps] == [8, 16]
    assert steps[0].change > 0 > steps[1].change
