"""The whole robot env in one YAML-friendly dataclass: arm, cameras, control rate, safety, reset phase.

See configs/robot/*.yaml for commented examples (SO-101 + RealSense, Koch).
"""

from __future__ import annotations

from dataclasses import dataclass, field

from robot_drivers.arms.config import ArmConfig
from robot_drivers.cameras.config import CameraConfig
from robot_drivers.safety import SafetyConfig


@dataclass
class ResetConfig:
    """The phase between episodes: hold (or go home), then wait for the operator."""

    wait_for_operator: bool = True  # False only for unattended dry runs (simulated bus, recorded cameras)
    timeout_s: float | None = None  # None = wait as long as it takes
    home: list[float] | None = None  # joint targets to move to, within the safety limits, before waiting
    home_tolerance: float = 2.0  # largest joint error that counts as "home" (arm units)
    home_timeout_s: float = 10.0

    def __post_init__(self) -> None:
        if self.timeout_s is not None and self.timeout_s <= 0:
            raise ValueError(f"timeout_s must be positive, got {self.timeout_s}")
        if self.home_tolerance <= 0 or self.home_timeout_s <= 0:
            raise ValueError("home_tolerance and home_timeout_s must be positive")


@dataclass
class RobotEnvConfig:
    task: str = ""  # the instruction the policy and the reward model read
    arm: ArmConfig = field(default_factory=ArmConfig)
    cameras: dict[str, CameraConfig] = field(default_factory=dict)
    control_hz: float = 30.0
    capture_every_step: bool = False  # fill Observation.images on every reset/step
    safety: SafetyConfig = field(default_factory=SafetyConfig)
    reset: ResetConfig = field(default_factory=ResetConfig)

    def __post_init__(self) -> None:
        if not self.task.strip():
            raise ValueError("task must be a non-empty instruction")
        if self.control_hz <= 0:
            raise ValueError(f"control_hz must be positive, got {self.control_hz}")
        if self.safety.watchdog_timeout_s < 1.0 / self.control_hz:
            raise ValueError(
                f"safety.watchdog_timeout_s ({self.safety.watchdog_timeout_s}) is shorter than one control "
                f"period (1/{self.control_hz:g} s): it would fire between every two actions"
            )
