"""The pure safety pieces, one limit at a time, with a fake clock where time matters."""

from __future__ import annotations

import threading
import time

import numpy as np
import pytest

from robot_drivers.errors import EmergencyStopped
from robot_drivers.safety import (
    EmergencyStop,
    EpisodeTimer,
    ResetGate,
    SafetyConfig,
    SafetyFilter,
    Watchdog,
)


class FakeClock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def make_filter(**fields) -> SafetyFilter:
    return SafetyFilter(SafetyConfig(**fields), num_joints=3)


def test_action_bounds_clip_each_joint():
    f = make_filter(action_low=[-1, -2, 0], action_high=[1, 2, 5], max_delta_per_tick=None)
    out = f.apply(np.array([3.0, -7.0, 2.5]), reference=np.zeros(3))
    np.testing.assert_allclose(out.target, [1.0, -2.0, 2.5])
    assert out.clipped_bounds and not out.clipped_delta and not out.clipped_joints


def test_max_change_per_tick_is_measured_from_the_previous_command():
    f = make_filter(max_delta_per_tick=[0.5, 1.0, 2.0])
    out = f.apply(np.array([10.0, -10.0, 1.0]), reference=np.array([1.0, 1.0, 1.0]))
    np.testing.assert_allclose(out.target, [1.5, 0.0, 1.0])
    assert out.clipped_delta and out.notes == ["clipped: max change per tick"]


def test_joint_limits_hold_after_every_other_limit():
    f = make_filter(joint_low=[-1, -1, -1], joint_high=[1, 1, 1], max_delta_per_tick=10.0, action_low=[-5] * 3, action_high=[5] * 3)
    rng = np.random.default_rng(0)
    reference = np.zeros(3)
    for _ in range(500):
        out = f.apply(rng.uniform(-20, 20, 3), reference)
        assert np.all(out.target >= -1) and np.all(out.target <= 1)
        assert np.all(np.abs(out.target - reference) <= 10.0 + 1e-12)
        reference = out.target


def test_non_finite_or_misshaped_actions_become_a_hold():
    f = make_filter(joint_low=[-1] * 3, joint_high=[1] * 3)
    reference = np.array([0.2, -0.3, 0.4])
    for bad in (np.array([np.nan, 0, 0]), np.array([np.inf, 0, 0]), np.zeros(4)):
        out = f.apply(bad, reference)
        assert out.rejected
        np.testing.assert_allclose(out.target, reference)


def test_unclipped_action_passes_unchanged():
    f = make_filter(joint_low=[-1] * 3, joint_high=[1] * 3, max_delta_per_tick=1.0)
    out = f.apply(np.array([0.1, 0.2, -0.3]), reference=np.zeros(3))
    np.testing.assert_allclose(out.target, [0.1, 0.2, -0.3])
    assert not out.modified


@pytest.mark.parametrize(
    "fields, message",
    [
        (dict(joint_low=[0, 0]), "given together"),
        (dict(joint_low=[0, 1], joint_high=[1, 1]), "joint_low[1] must be below"),
        (dict(max_delta_per_tick=0.0), "max_delta_per_tick must be positive"),
        (dict(watchdog_timeout_s=0), "watchdog_timeout_s"),
        (dict(episode_time_cap_s=-1), "episode_time_cap_s"),
    ],
)
def test_bad_safety_configs_are_refused(fields, message):
    with pytest.raises(ValueError, match=message.replace("[", r"\[")):
        SafetyConfig(**fields)


def test_per_joint_lists_must_match_the_arm():
    with pytest.raises(ValueError, match="joint_low has 2 values but the arm has 3 joints"):
        SafetyFilter(SafetyConfig(joint_low=[0, 0], joint_high=[1, 1]), num_joints=3)


def test_watchdog_expires_only_after_the_deadline_and_only_when_armed():
    clock = FakeClock()
    dog = Watchdog(0.5, clock)
    clock.now += 10
    assert not dog.expired()  # disarmed between episodes
    dog.feed()
    clock.now += 0.49
    assert not dog.expired()
    clock.now += 0.02
    assert dog.expired()
    dog.feed()
    assert not dog.expired()
    dog.disarm()
    clock.now += 5
    assert not dog.expired()


def test_emergency_stop_latches_until_cleared_and_runs_listeners():
    stop = EmergencyStop()
    heard: list[str] = []
    stop.add_listener(heard.append)
    stop.check()
    stop.trigger("key E")
    stop.trigger("second press")  # the first reason stays
    assert stop.is_set and stop.reason == "key E"
    assert heard == ["key E", "key E"]
    for _ in range(3):
        with pytest.raises(EmergencyStopped, match="key E"):
            stop.check()
    stop.clear()
    stop.check()
    assert not stop.is_set


def test_emergency_stop_from_many_threads_is_one_latched_stop():
    stop = EmergencyStop()
    barrier = threading.Barrier(8)

    def press(i: int) -> None:
        barrier.wait()
        stop.trigger(f"thread {i}")

    threads = [threading.Thread(target=press, args=(i,)) for i in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert stop.is_set and stop.reason.startswith("thread ")


def test_episode_timer_cap():
    clock = FakeClock()
    timer = EpisodeTimer(30.0, clock)
    assert not timer.expired()
    timer.start()
    clock.now += 29.9
    assert not timer.expired()
    clock.now += 0.1
    assert timer.expired() and timer.elapsed() == pytest.approx(30.0)


def test_reset_gate_waits_for_the_operator():
    gate, stop = ResetGate(), EmergencyStop()
    start = time.monotonic()
    threading.Timer(0.1, gate.confirm).start()
    assert gate.wait(stop, timeout=5.0)
    assert time.monotonic() - start >= 0.09
    assert not gate.wait(stop, timeout=0.05)  # a confirmation counts once


def test_reset_gate_polls_a_callable_and_yields_to_the_emergency_stop():
    presses = iter([False, False, True])
    gate = ResetGate(ready=lambda: next(presses))
    assert gate.wait(EmergencyStop(), timeout=2.0)
    stop = EmergencyStop()
    threading.Timer(0.05, stop.trigger, args=("during reset",)).start()
    with pytest.raises(EmergencyStopped, match="during reset"):
        ResetGate().wait(stop, timeout=5.0)
