"""A fixed control rate, and a record of the rate actually achieved.

`ControlRate.wait()` sleeps until the next tick of an absolute schedule, so
small delays do not accumulate; after an overrun (a tick that came too late)
the schedule restarts from now rather than firing a burst of catch-up ticks,
which on an arm would be a burst of commands.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import asdict, dataclass

import numpy as np


@dataclass
class RateStats:
    """The measured control rate over a run of ticks."""

    target_hz: float
    ticks: int
    achieved_hz: float  # (ticks - 1) / (time of last tick - time of first tick); NaN below 2 ticks
    period_mean_ms: float
    period_p50_ms: float
    period_p99_ms: float
    period_max_ms: float
    overruns: int  # ticks later than 1.5 periods after the previous one

    def to_json(self) -> dict[str, float | int]:
        return asdict(self)

    def summary(self) -> str:
        if self.ticks < 2:
            return f"control rate: {self.ticks} tick(s), target {self.target_hz:g} Hz"
        return (
            f"control rate: {self.achieved_hz:.2f} Hz achieved of {self.target_hz:g} Hz over {self.ticks} ticks; "
            f"period mean {self.period_mean_ms:.1f} ms, p50 {self.period_p50_ms:.1f}, p99 {self.period_p99_ms:.1f}, "
            f"max {self.period_max_ms:.1f}; {self.overruns} overrun(s)"
        )


class ControlRate:
    def __init__(
        self,
        hz: float,
        clock: Callable[[], float] = time.perf_counter,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        if hz <= 0:
            raise ValueError(f"control rate must be positive, got {hz}")
        self.hz = float(hz)
        self.period = 1.0 / self.hz
        self._clock = clock
        self._sleep = sleep
        self._next: float | None = None
        self._ticks: list[float] = []

    def restart(self) -> None:
        """Forget the schedule and the measurements (a new episode)."""
        self._next = None
        self._ticks = []

    def wait(self) -> float:
        """Sleep until the next tick; returns the time of the tick. The first call does not sleep."""
        now = self._clock()
        if self._next is not None and now < self._next:
            self._sleep(self._next - now)
            now = self._clock()
        if self._next is None or now - self._next > self.period:
            self._next = now  # overrun: restart the schedule here
        self._next += self.period
        self._ticks.append(now)
        return now

    @property
    def last_period(self) -> float | None:
        return self._ticks[-1] - self._ticks[-2] if len(self._ticks) >= 2 else None

    def achieved_hz(self) -> float:
        if len(self._ticks) < 2:
            return float("nan")
        return (len(self._ticks) - 1) / (self._ticks[-1] - self._ticks[0])

    def stats(self) -> RateStats:
        periods = np.diff(np.asarray(self._ticks)) * 1e3
        if periods.size == 0:
            nan = float("nan")
            return RateStats(self.hz, len(self._ticks), nan, nan, nan, nan, nan, 0)
        return RateStats(
            target_hz=self.hz,
            ticks=len(self._ticks),
            achieved_hz=self.achieved_hz(),
            period_mean_ms=float(periods.mean()),
            period_p50_ms=float(np.percentile(periods, 50)),
            period_p99_ms=float(np.percentile(periods, 99)),
            period_max_ms=float(periods.max()),
            overruns=int(np.sum(periods > 1.5 * self.period * 1e3)),
        )
