"""Safety limits for a real arm, pure and hardware-free so that each one can be tested alone.

The env (robot_drivers/env.py) runs every action through these before it
reaches a motor:

1. `SafetyFilter`: a non-finite action becomes "hold"; then per-action bounds,
   then a maximum change of the commanded target per control tick, then the
   joint limits. The joint limits come last so that they hold whatever the
   other two did.
2. `Watchdog`: no fresh action within a deadline means hold position (a
   policy that hangs must not leave the arm chasing its last target).
3. `EmergencyStop`: latched, thread-safe, wins over everything; cleared only by
   an explicit `clear()`.
4. `EpisodeTimer`: the episode time cap (30 s by default, as in the paper's
   real-robot rollouts).
5. `ResetGate`: between episodes the env waits until an operator says the
   scene is reset (a key in the UI, or a callable).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np

from robot_drivers.errors import EmergencyStopped

Clock = Callable[[], float]


@dataclass
class SafetyConfig:
    """Limits in the arm's own action units (degrees for SO-100/101 with use_degrees, 0..100 for grippers).

    Lists have one value per joint in the arm's joint order; `None` disables a
    limit (the env logs a warning for a real arm without joint limits).
    """

    action_low: list[float] | None = None
    action_high: list[float] | None = None
    joint_low: list[float] | None = None
    joint_high: list[float] | None = None
    # Largest change of the commanded target in one control tick: one value for all joints, or one per joint.
    max_delta_per_tick: float | list[float] | None = 5.0
    watchdog_timeout_s: float = 0.5
    episode_time_cap_s: float = 30.0

    def __post_init__(self) -> None:
        for low_name, high_name in (("action_low", "action_high"), ("joint_low", "joint_high")):
            low, high = getattr(self, low_name), getattr(self, high_name)
            if (low is None) != (high is None):
                raise ValueError(f"{low_name} and {high_name} must be given together")
            if low is not None and high is not None:
                if len(low) != len(high):
                    raise ValueError(f"{low_name} has {len(low)} values but {high_name} has {len(high)}")
                bad = [i for i, (lo, hi) in enumerate(zip(low, high)) if not lo < hi]
                if bad:
                    raise ValueError(f"{low_name}[{bad[0]}] must be below {high_name}[{bad[0]}]")
        delta = self.max_delta_per_tick
        deltas = delta if isinstance(delta, list) else [delta] if delta is not None else []
        if any(d <= 0 for d in deltas):
            raise ValueError(f"max_delta_per_tick must be positive, got {delta}")
        if self.watchdog_timeout_s <= 0:
            raise ValueError(f"watchdog_timeout_s must be positive, got {self.watchdog_timeout_s}")
        if self.episode_time_cap_s <= 0:
            raise ValueError(f"episode_time_cap_s must be positive, got {self.episode_time_cap_s}")

    def check_joints(self, num_joints: int) -> None:
        """Every per-joint list must have one value per joint of the arm it guards."""
        for name in ("action_low", "action_high", "joint_low", "joint_high", "max_delta_per_tick"):
            value = getattr(self, name)
            if isinstance(value, list) and len(value) != num_joints:
                raise ValueError(f"safety.{name} has {len(value)} values but the arm has {num_joints} joints")


@dataclass
class SafeAction:
    """What the filter let through, and which limits it had to apply (the UI shows them)."""

    target: np.ndarray
    rejected: bool = False  # non-finite or wrongly shaped input: the target is the reference (hold)
    clipped_bounds: bool = False
    clipped_delta: bool = False
    clipped_joints: bool = False
    notes: list[str] = field(default_factory=list)

    @property
    def modified(self) -> bool:
        return self.rejected or self.clipped_bounds or self.clipped_delta or self.clipped_joints


class SafetyFilter:
    """Turns a policy's action into a target that respects every static limit."""

    def __init__(self, config: SafetyConfig, num_joints: int) -> None:
        config.check_joints(num_joints)
        self.config = config
        self.num_joints = num_joints

        def vec(value: float | list[float] | None) -> np.ndarray | None:
            if value is None:
                return None
            return np.broadcast_to(np.asarray(value, dtype=np.float64), (num_joints,)).copy()

        self._action_low, self._action_high = vec(config.action_low), vec(config.action_high)
        self._joint_low, self._joint_high = vec(config.joint_low), vec(config.joint_high)
        self._max_delta = vec(config.max_delta_per_tick)

    def clip_to_joints(self, position: np.ndarray) -> np.ndarray:
        """A position moved inside the joint limits (used for hold targets, too)."""
        if self._joint_low is None or self._joint_high is None:
            return np.asarray(position, dtype=np.float64).copy()
        return np.clip(position, self._joint_low, self._joint_high)

    def apply(self, action: np.ndarray, reference: np.ndarray) -> SafeAction:
        """The safe target for `action`, given `reference` = the target commanded on the previous tick.

        The change per tick is measured from the previous command, not from the
        measured position, so that a slow arm cannot accumulate a backlog of
        large jumps.
        """
        reference = np.asarray(reference, dtype=np.float64)
        raw = np.asarray(action, dtype=np.float64)
        if raw.shape != (self.num_joints,) or not np.all(np.isfinite(raw)):
            why = f"shape {raw.shape}" if raw.shape != (self.num_joints,) else "non-finite values"
            return SafeAction(target=self.clip_to_joints(reference), rejected=True, notes=[f"rejected: {why}"])
        result = SafeAction(target=raw.copy())
        if self._action_low is not None and self._action_high is not None:
            bounded = np.clip(result.target, self._action_low, self._action_high)
            result.clipped_bounds = bool(np.any(bounded != result.target))
            result.target = bounded
        if self._max_delta is not None:
            limited = np.clip(result.target, reference - self._max_delta, reference + self._max_delta)
            result.clipped_delta = bool(np.any(limited != result.target))
            result.target = limited
        inside = self.clip_to_joints(result.target)
        result.clipped_joints = bool(np.any(inside != result.target))
        result.target = inside
        for flag, note in (
            (result.clipped_bounds, "action bounds"),
            (result.clipped_delta, "max change per tick"),
            (result.clipped_joints, "joint limits"),
        ):
            if flag:
                result.notes.append(f"clipped: {note}")
        return result


class Watchdog:
    """Expires when no fresh action arrived within `timeout_s`; `feed()` on every fresh action."""

    def __init__(self, timeout_s: float, clock: Clock = time.monotonic) -> None:
        self.timeout_s = timeout_s
        self._clock = clock
        self._last: float | None = None
        self._lock = threading.Lock()

    def feed(self) -> None:
        with self._lock:
            self._last = self._clock()

    def disarm(self) -> None:
        """Between episodes nobody sends actions; the watchdog must not fire then."""
        with self._lock:
            self._last = None

    @property
    def armed(self) -> bool:
        return self._last is not None

    def age(self) -> float:
        with self._lock:
            return 0.0 if self._last is None else self._clock() - self._last

    def expired(self) -> bool:
        with self._lock:
            return self._last is not None and self._clock() - self._last > self.timeout_s


class EmergencyStop:
    """A latched stop that any thread may trigger; listeners run at once, on the triggering thread.

    The env registers a listener that commands the arm to hold, so a stop
    acts even while the control loop is blocked (e.g. in a slow policy call).
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._event = threading.Event()
        self._reason = ""
        self._listeners: list[Callable[[str], None]] = []

    @property
    def is_set(self) -> bool:
        return self._event.is_set()

    @property
    def reason(self) -> str:
        return self._reason

    def add_listener(self, listener: Callable[[str], None]) -> None:
        with self._lock:
            self._listeners.append(listener)

    def trigger(self, reason: str = "operator") -> None:
        with self._lock:
            if not self._event.is_set():
                self._reason = reason
                self._event.set()
            listeners = list(self._listeners)
        for listener in listeners:
            listener(self._reason)

    def clear(self) -> None:
        """Only an explicit call un-latches the stop; nothing in the env calls this by itself."""
        with self._lock:
            self._event.clear()
            self._reason = ""

    def check(self) -> None:
        """Raise EmergencyStopped while the stop is latched."""
        if self._event.is_set():
            raise EmergencyStopped(f"emergency stop is latched ({self._reason}); clear it to continue", component="e-stop")

    def wait(self, timeout: float | None = None) -> bool:
        return self._event.wait(timeout)


class EpisodeTimer:
    """Wall time since the episode started, and whether the cap is reached."""

    def __init__(self, cap_s: float, clock: Clock = time.monotonic) -> None:
        self.cap_s = cap_s
        self._clock = clock
        self._start: float | None = None

    def start(self) -> None:
        self._start = self._clock()

    def elapsed(self) -> float:
        return 0.0 if self._start is None else self._clock() - self._start

    def expired(self) -> bool:
        return self._start is not None and self.elapsed() >= self.cap_s


class ResetGate:
    """The reset phase between episodes: blocks until an operator confirms the scene is ready.

    `confirm()` is what a UI key calls; alternatively a `ready` callable is
    polled (e.g. a foot pedal). The emergency stop interrupts the wait.
    """

    def __init__(self, ready: Callable[[], bool] | None = None, poll_s: float = 0.02) -> None:
        self._event = threading.Event()
        self._ready = ready
        self._poll_s = poll_s
        self.waiting = False

    def confirm(self) -> None:
        self._event.set()

    def wait(self, estop: EmergencyStop, timeout: float | None = None) -> bool:
        """True once confirmed; False on timeout; EmergencyStopped if the stop latches meanwhile."""
        deadline = None if timeout is None else time.monotonic() + timeout
        self.waiting = True
        try:
            while True:
                estop.check()
                if self._event.is_set() or (self._ready is not None and self._ready()):
                    self._event.clear()
                    return True
                remaining = None if deadline is None else deadline - time.monotonic()
                if remaining is not None and remaining <= 0:
                    return False
                self._event.wait(self._poll_s if remaining is None else min(self._poll_s, remaining))
        finally:
            self.waiting = False
