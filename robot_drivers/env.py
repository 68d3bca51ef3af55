"""Real hardware behind the project's Env interface (the same seam as sim/env.py).

`reset() -> Observation`, `step(action) -> (Observation, info)`,
`capture() -> {camera: (H, W, 3) uint8}`, `camera_names`, `task`, `close()`.
The observation mirrors sim's `Observation` field by field (state, task,
step, images; plus depth where a camera has it); it is defined here, not
imported, so that robot_drivers does not depend on sim.

State and action are the arm's joint positions in LeRobot's units and joint
order (`joint_names`; degrees and 0..100 for the gripper on an SO-101 with
use_degrees). Every action passes the safety filter; see robot_drivers/safety.py.

Threads: the control loop calls reset/step/capture; a watchdog thread holds
the arm when actions stop coming or the episode time cap passes; any thread
(a UI key) may trigger the emergency stop, which commands a hold at once.
Arm I/O is serialised by one lock because LeRobot's buses are not thread-safe.

Faults: an arm or camera that fails during an episode raises a `RobotFault`
(ArmFault, CameraFault, EmergencyStopped) after the arm was commanded to hold
(if it still answers). The caller keeps what it recorded and commits the
episode as aborted; the next `reset()` tries the hardware again.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from robot_drivers.arms import Arm, make_arm
from robot_drivers.cameras import make_cameras
from robot_drivers.config import RobotEnvConfig
from robot_drivers.errors import ArmFault, EmergencyStopped, RobotConfigError, RobotError, RobotFault
from robot_drivers.safety import EmergencyStop, EpisodeTimer, ResetGate, SafetyFilter, Watchdog
from robot_drivers.timing import ControlRate, RateStats

logger = logging.getLogger(__name__)


@dataclass
class Observation:
    """Field for field sim.env.Observation, plus `depth` (camera -> (H, W) uint16) for depth cameras."""

    state: np.ndarray
    task: str
    step: int
    images: dict[str, np.ndarray] = field(default_factory=dict)
    depth: dict[str, np.ndarray] = field(default_factory=dict)


@dataclass
class EpisodeReport:
    """What happened to the limits and the clock during one episode (the operator's summary)."""

    steps: int = 0
    duration_s: float = 0.0
    rate: RateStats | None = None
    clipped_bounds: int = 0
    clipped_delta: int = 0
    clipped_joints: int = 0
    rejected: int = 0
    watchdog_holds: int = 0
    time_capped: bool = False
    fault: str | None = None

    def summary(self) -> str:
        parts = [f"{self.steps} steps in {self.duration_s:.1f} s"]
        if self.rate is not None:
            parts.append(self.rate.summary())
        parts.append(
            f"safety: {self.clipped_bounds} bound / {self.clipped_delta} change / {self.clipped_joints} joint-limit "
            f"clip(s), {self.rejected} rejected, {self.watchdog_holds} watchdog hold(s)"
            + (", time cap reached" if self.time_capped else "")
        )
        if self.fault:
            parts.append(f"aborted: {self.fault}")
        return "; ".join(parts)


class RobotEnv:
    def __init__(
        self,
        config: RobotEnvConfig,
        arm: Arm | None = None,
        cameras: dict[str, Any] | None = None,
        *,
        operator_ready: Callable[[], bool] | None = None,
    ) -> None:
        self.config = config
        self.task: str = config.task
        self.arm = arm if arm is not None else make_arm(config.arm)
        self.cameras = cameras if cameras is not None else make_cameras(config.cameras)
        try:
            self.safety = SafetyFilter(config.safety, self.arm.num_joints)
        except ValueError as exc:  # per-joint lists can only be checked once the arm's joints are known
            raise RobotConfigError(f"{exc} ({', '.join(self.arm.joint_names)})") from None
        if config.safety.joint_low is None:
            logger.warning("%s has no joint limits configured (safety.joint_low/joint_high)", self.arm.name)
        self.estop = EmergencyStop()
        self.estop.add_listener(self._on_estop)
        self.watchdog = Watchdog(config.safety.watchdog_timeout_s)
        self.timer = EpisodeTimer(config.safety.episode_time_cap_s)
        self.rate = ControlRate(config.control_hz)
        self.reset_gate = ResetGate(operator_ready)
        self._io = threading.RLock()
        self._commanded: np.ndarray | None = None
        self._in_episode = False
        self._step = 0
        self._holding: str | None = None  # why the arm is holding (watchdog, time cap, e-stop, fault)
        self._background_fault: RobotFault | None = None
        self._report = EpisodeReport()
        self._stop_thread = threading.Event()
        self._thread: threading.Thread | None = None
        self.connected = False
        self.last_fault: RobotFault | None = None
        self.last_depth: dict[str, np.ndarray] = {}  # camera -> (H, W) uint16, from the last capture()

    # -- the Env interface -------------------------------------------------------------

    @property
    def camera_names(self) -> list[str]:
        return list(self.cameras)

    @property
    def joint_names(self) -> list[str]:
        return list(self.arm.joint_names)

    @property
    def state_size(self) -> int:
        """Length of Observation.state: one measured position per joint."""
        return self.arm.num_joints

    @property
    def action_shape(self) -> tuple[int, ...]:
        """One target position per joint, in the same order and units as the state."""
        return (self.arm.num_joints,)

    @property
    def control_freq(self) -> float:
        return self.config.control_hz

    @property
    def holding(self) -> str | None:
        return self._holding

    def connect(self) -> None:
        """Connect the arm and every camera; a set-up failure is a RobotError naming the part."""
        if self.connected:
            return
        self.arm.connect()
        try:
            for camera in self.cameras.values():
                camera.connect()
        except Exception:
            self._disconnect_all()
            raise
        self._commanded = self.arm.read_positions()
        self.connected = True
        self._stop_thread.clear()
        self._thread = threading.Thread(target=self._guard_loop, name="robot-env-watchdog", daemon=True)
        self._thread.start()

    def reset(self, seed: int | None = None) -> Observation:
        """End any episode, hold (or go home), wait for the operator, then start a new episode.

        `seed` is accepted for interface parity with the simulator and ignored:
        the real world does not take seeds.
        """
        self.estop.check()
        self.connect()
        self._end_episode()
        self._hold_now("reset")
        if self.config.reset.home is not None:
            self._go_home(np.asarray(self.config.reset.home, dtype=np.float64))
        if self.config.reset.wait_for_operator:
            logger.info("reset phase: waiting for the operator to confirm the scene is ready")
            if not self.reset_gate.wait(self.estop, self.config.reset.timeout_s):
                raise RobotError(f"the operator did not confirm the reset within {self.config.reset.timeout_s} s")
        self.estop.check()
        with self._io:
            position = self._read_joints()
            self._commanded = position.copy()
        self._step = 0
        self._holding = None
        self._background_fault = None
        self._report = EpisodeReport()
        self.rate.restart()
        self.rate.wait()  # the first tick of the episode
        self.timer.start()
        self.watchdog.feed()
        self._in_episode = True
        return self._observation(position)

    def step(self, action: np.ndarray) -> tuple[Observation, dict[str, Any]]:
        """Wait for the next control tick, send the action through the safety filter, read the joints.

        info: step, time_s, period_s (since the previous tick), achieved_hz
        (this episode so far), target (what was commanded), clipped_bounds,
        clipped_delta, clipped_joints, rejected, safety_notes, watchdog_hold
        (the arm had been held since the last step), truncated (time cap
        reached: the action was replaced by a hold), terminated (False: the
        real world reports no success; the reward model judges it).
        """
        self.estop.check()
        if not self._in_episode:
            raise RobotError("step() before reset(): the episode has not started")
        self._raise_background_fault()
        self.rate.wait()
        watchdog_hold = self._holding == "watchdog"
        self.watchdog.feed()
        truncated = self.timer.expired()
        with self._io:
            self.estop.check()  # a stop triggered during the wait wins over this action
            assert self._commanded is not None
            if truncated:
                safe = None
                target = self._commanded if self._holding == "time cap" else self._read_joints()
                self._holding = "time cap"
            else:
                safe = self.safety.apply(action, self._commanded)
                target = safe.target
                self._holding = None
            try:
                sent = self.arm.send_positions(target)
                position = self.arm.read_positions()
            except ArmFault as exc:
                raise self._fault(exc) from exc
            self._commanded = sent
        self._step += 1
        report = self._report
        report.steps = self._step
        report.duration_s = self.timer.elapsed()
        report.time_capped = report.time_capped or truncated
        if safe is not None:
            report.clipped_bounds += int(safe.clipped_bounds)
            report.clipped_delta += int(safe.clipped_delta)
            report.clipped_joints += int(safe.clipped_joints)
            report.rejected += int(safe.rejected)
        info: dict[str, Any] = {
            "step": self._step,
            "time_s": self.timer.elapsed(),
            "period_s": self.rate.last_period,
            "achieved_hz": self.rate.achieved_hz(),
            "target": sent.astype(np.float32),
            "clipped_bounds": bool(safe and safe.clipped_bounds),
            "clipped_delta": bool(safe and safe.clipped_delta),
            "clipped_joints": bool(safe and safe.clipped_joints),
            "rejected": bool(safe and safe.rejected),
            "safety_notes": list(safe.notes) if safe else ["time cap: holding"],
            "watchdog_hold": watchdog_hold,
            "truncated": truncated,
            "terminated": False,
        }
        return self._observation(position), info

    def capture(self) -> dict[str, np.ndarray]:
        """Read every camera now: name -> (H, W, 3) uint8; depth of the same read is in `last_depth`."""
        images: dict[str, np.ndarray] = {}
        depth: dict[str, np.ndarray] = {}
        for name, camera in self.cameras.items():
            try:
                images[name] = camera.read()
            except RobotFault as exc:
                raise self._fault(exc) from exc
            d = camera.read_depth()
            if d is not None:
                depth[name] = d
        self.last_depth = depth
        return images

    def capture_one(self, name: str) -> np.ndarray:
        """Read one camera (robot-check times each camera on its own); a failure is a fault as in capture()."""
        try:
            return self.cameras[name].read()
        except RobotFault as exc:
            raise self._fault(exc) from exc

    def read_joints(self) -> np.ndarray:
        """The measured joint positions (float32), outside the episode logic (robot-check, the UI)."""
        with self._io:
            return self._read_joints().astype(np.float32)

    def end_episode(self) -> EpisodeReport:
        """Hold the arm and stop the episode clock; returns the episode's report."""
        self._end_episode()
        try:
            self._hold_now("episode ended")
        except RobotFault as exc:
            logger.warning("could not hold at the end of the episode: %s", exc)
        return self._report

    @property
    def report(self) -> EpisodeReport:
        return self._report

    def emergency_stop(self, reason: str = "operator") -> None:
        """Latch the stop and hold the arm now; any thread may call this."""
        self.estop.trigger(reason)

    def clear_emergency_stop(self) -> None:
        """Un-latch the stop; the arm stays held until the next reset() starts an episode."""
        self.estop.clear()

    def close(self) -> None:
        self._end_episode()
        self._stop_thread.set()
        if self._thread is not None:
            self._thread.join(timeout=2.0)
            self._thread = None
        if self.connected:
            try:
                self._hold_now("closing")
            except RobotFault as exc:
                logger.warning("could not hold before disconnecting: %s", exc)
        self._disconnect_all()
        self.connected = False

    def __enter__(self) -> RobotEnv:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- internals -------------------------------------------------------------------------

    def _observation(self, position: np.ndarray) -> Observation:
        images = self.capture() if self.config.capture_every_step else {}
        depth = dict(self.last_depth) if images else {}
        return Observation(state=position.astype(np.float32), task=self.task, step=self._step, images=images, depth=depth)

    def _read_joints(self) -> np.ndarray:
        try:
            return self.arm.read_positions()
        except ArmFault as exc:
            raise self._fault(exc) from exc

    def _hold_now(self, reason: str) -> None:
        """Command the measured position; the arm stops where it is."""
        with self._io:
            position = self.arm.read_positions()
            self._commanded = self.arm.send_positions(position)
            self._holding = reason

    def _on_estop(self, reason: str) -> None:
        logger.warning("EMERGENCY STOP (%s): holding the arm", reason)
        self._in_episode = False
        try:
            self._hold_now("e-stop")
        except RobotFault as exc:
            logger.error("emergency stop: the arm did not take the hold command: %s", exc)

    def _fault(self, exc: RobotFault) -> RobotFault:
        """End the episode on a fault: hold the arm if it still answers, remember why."""
        was_in_episode = self._in_episode
        self._in_episode = False
        logger.error("fault at step %d: %s", self._step, exc)
        if not isinstance(exc, EmergencyStopped):
            try:
                self._hold_now("fault")
            except RobotFault as hold_exc:
                logger.error("could not hold the arm after the fault: %s", hold_exc)
        self.last_fault = exc
        if was_in_episode:
            self._report.fault = str(exc)
        return exc

    def _raise_background_fault(self) -> None:
        fault, self._background_fault = self._background_fault, None
        if fault is not None:
            raise self._fault(fault)

    def _end_episode(self) -> None:
        if self._in_episode:
            self._report.rate = self.rate.stats()
            self._report.duration_s = self.timer.elapsed()
        self._in_episode = False
        self.watchdog.disarm()

    def _go_home(self, home: np.ndarray) -> None:
        """Move to `home` through the safety filter at the control rate (the max change per tick limits the speed)."""
        deadline = time.monotonic() + self.config.reset.home_timeout_s
        self.rate.restart()
        while True:
            self.estop.check()
            with self._io:
                position = self._read_joints()
                if np.max(np.abs(position - self.safety.clip_to_joints(home))) <= self.config.reset.home_tolerance:
                    return
                assert self._commanded is not None
                safe = self.safety.apply(home, self._commanded)
                try:
                    self._commanded = self.arm.send_positions(safe.target)
                except ArmFault as exc:
                    raise self._fault(exc) from exc
            if time.monotonic() > deadline:
                raise RobotError(f"{self.arm.name} did not reach the home position within {self.config.reset.home_timeout_s} s")
            self.rate.wait()

    def _guard_loop(self) -> None:
        """Background: hold the arm when the watchdog expires or the time cap passes without a step."""
        period = min(self.config.safety.watchdog_timeout_s / 4, 0.05)
        while not self._stop_thread.wait(period):
            if not self._in_episode or self._holding is not None:
                continue
            why = "watchdog" if self.watchdog.expired() else "time cap" if self.timer.expired() else None
            if why is None:
                continue
            logger.warning("%s: no fresh action in time; holding position", why)
            try:
                self._hold_now(why)
                if why == "watchdog":
                    self._report.watchdog_holds += 1
                else:
                    self._report.time_capped = True
            except RobotFault as exc:
                self._background_fault = exc

    def _disconnect_all(self) -> None:
        for camera in self.cameras.values():
            try:
                camera.disconnect()
            except Exception as exc:
                logger.warning("camera disconnect failed: %s", exc)
        self.arm.disconnect()


def make_robot_env(config: RobotEnvConfig, *, connect: bool = True, **kwargs: Any) -> RobotEnv:
    """Build the env a config describes and (by default) connect its hardware."""
    env = RobotEnv(config, **kwargs)
    if connect:
        try:
            env.connect()
        except BaseException:
            env.close()
            raise
    return env
