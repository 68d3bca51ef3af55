"""The control rate: an absolute schedule, restarts after overruns, and what it reports."""

from __future__ import annotations

import math
import time

import pytest

from robot_drivers.timing import ControlRate


class FakeTime:
    def __init__(self) -> None:
        self.now = 0.0
        self.slept: list[float] = []

    def clock(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.slept.append(seconds)
        self.now += seconds


def test_schedule_absorbs_work_time_and_reports_the_rate():
    t = FakeTime()
    rate = ControlRate(10.0, t.clock, t.sleep)
    for _ in range(11):
        rate.wait()
        t.now += 0.03  # work inside the tick
    stats = rate.stats()
    assert stats.ticks == 11
    assert stats.achieved_hz == pytest.approx(10.0)
    assert stats.period_p99_ms == pytest.approx(100.0)
    assert stats.overruns == 0
    assert all(s == pytest.approx(0.07) for s in t.slept)


def test_an_overrun_restarts_the_schedule_instead_of_bursting():
    t = FakeTime()
    rate = ControlRate(10.0, t.clock, t.sleep)
    rate.wait()
    t.now += 0.35  # a stall of three and a half periods
    rate.wait()
    t.slept.clear()
    rate.wait()
    assert t.slept == [pytest.approx(0.1)]  # no catch-up ticks
    stats = rate.stats()
    assert stats.overruns == 1 and stats.period_max_ms == pytest.approx(350.0)


def test_real_clock_rate_close_to_target():
    rate = ControlRate(100.0)
    for _ in range(31):
        rate.wait()
    assert 50.0 < rate.achieved_hz() <= 101.0  # the machine is shared; the schedule never runs fast
    assert "Hz achieved of 100 Hz over 31 ticks" in rate.stats().summary()


def test_fewer_than_two_ticks_have_no_rate():
    rate = ControlRate(30.0)
    assert math.isnan(rate.stats().achieved_hz)
    with pytest.raises(ValueError):
        ControlRate(0)
