"""`robot-check`: connect, read joints and cameras at the control rate for a few seconds, report what came back.

Read-only: no joint target is sent beyond what LeRobot's own `connect()`
does (it re-enables torque, so the arm holds where it is). What a lab
engineer wants to know before the first rollout: does every part answer, at
what rate, with what images, and are the joints inside the configured limits.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

import numpy as np

from robot_drivers.env import RobotEnv
from robot_drivers.timing import ControlRate, RateStats


@dataclass
class CameraStats:
    name: str
    kind: str
    frames: int = 0
    shape: tuple[int, ...] = ()
    read_ms: list[float] = field(default_factory=list)
    mean_intensity: float = float("nan")  # of the last frame, 0..255: an all-black or blown-out image shows here
    changing_frames: int = 0  # frames that differ from the previous one (a frozen stream shows 0)
    depth_valid: float | None = None  # fraction of non-zero depth pixels in the last depth frame
    depth_median: float | None = None  # in depth units (millimetres on most RealSense models)
    reconnects: int = 0

    def summary(self) -> str:
        if not self.frames:
            return f"camera {self.name} ({self.kind}): no frames"
        ms = np.asarray(self.read_ms)
        text = (
            f"camera {self.name} ({self.kind}): {self.frames} frames {'x'.join(map(str, self.shape))}, "
            f"read p50 {np.percentile(ms, 50):.1f} ms p99 {np.percentile(ms, 99):.1f} ms, "
            f"mean intensity {self.mean_intensity:.1f}, {self.changing_frames} changing frames"
        )
        if self.depth_valid is not None:
            text += f", depth valid {100 * self.depth_valid:.0f}% median {self.depth_median:.0f}"
        if self.reconnects:
            text += f", {self.reconnects} reconnect(s)"
        return text


@dataclass
class CheckReport:
    arm: str
    joint_names: list[str]
    first: np.ndarray
    last: np.ndarray
    joint_reads: int
    joint_read_ms: list[float]
    rate: RateStats
    cameras: list[CameraStats]
    outside_limits: list[str]

    def summary(self) -> str:
        ms = np.asarray(self.joint_read_ms)
        joints = ", ".join(f"{n.removesuffix('.pos')} {v:.1f}" for n, v in zip(self.joint_names, self.last))
        lines = [
            f"{self.arm}: {self.joint_reads} joint reads, p50 {np.percentile(ms, 50):.1f} ms p99 {np.percentile(ms, 99):.1f} ms",
            f"joints now: {joints}",
            *(c.summary() for c in self.cameras),
            self.rate.summary(),
        ]
        if self.outside_limits:
            lines.append("WARNING outside the safety joint limits: " + ", ".join(self.outside_limits))
        return "\n".join(lines)


def check_robot(env: RobotEnv, seconds: float) -> CheckReport:
    """Read everything at the control rate for `seconds`; faults propagate as RobotFault."""
    env.connect()
    rate = ControlRate(env.control_freq)
    stats = {name: CameraStats(name, type(cam).__name__) for name, cam in env.cameras.items()}
    previous: dict[str, np.ndarray] = {}
    joint_ms: list[float] = []
    first = last = env.read_joints()
    deadline = time.perf_counter() + seconds
    while time.perf_counter() < deadline:
        rate.wait()
        start = time.perf_counter()
        last = env.read_joints()
        joint_ms.append((time.perf_counter() - start) * 1e3)
        for name, camera in env.cameras.items():
            start = time.perf_counter()
            image = env.capture_one(name)
            s = stats[name]
            s.read_ms.append((time.perf_counter() - start) * 1e3)
            s.frames += 1
            s.shape = image.shape
            s.mean_intensity = float(image.mean())
            if name in previous and not np.array_equal(previous[name], image):
                s.changing_frames += 1
            previous[name] = image
            depth = camera.read_depth()
            if depth is not None:
                s.depth_valid = float(np.count_nonzero(depth)) / depth.size
                s.depth_median = float(np.median(depth[depth > 0])) if np.any(depth) else 0.0
            s.reconnects = camera.reconnects
    outside = []
    low, high = env.config.safety.joint_low, env.config.safety.joint_high
    if low is not None and high is not None:
        for name, value, lo, hi in zip(env.joint_names, last, low, high):
            if not lo <= value <= hi:
                outside.append(f"{name} = {value:.1f} not in [{lo:g}, {hi:g}]")
    return CheckReport(
        arm=env.arm.name, joint_names=env.joint_names, first=first, last=last, joint_reads=len(joint_ms),
        joint_read_ms=joint_ms, rate=rate.stats(), cameras=list(stats.values()), outside_limits=outside,
    )
