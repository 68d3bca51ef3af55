"""Expected failures of the hardware layer.

Two families, because a rollout loop treats them differently:

- `RobotError`: set-up problems (a bad config, a camera serial that is not
  plugged in, an uncalibrated arm). Nothing has moved; the CLI prints one
  line and exits 2.
- `RobotFault`: something went wrong *during* an episode (an arm or camera
  stopped answering, the emergency stop). The env has already commanded the
  arm to hold (when the arm still answers); the rollout loop commits what it
  recorded so far with `commit(aborted=True)` and stops the episode.
"""

from __future__ import annotations


class RobotError(Exception):
    """Base class of every expected `robot_drivers` error; one line, names the culprit."""


class RobotConfigError(RobotError, ValueError):
    """A robot config that cannot describe real hardware (unknown type, bad option)."""


class RobotFault(RobotError):
    """An episode must end as aborted; `component` names the part that failed ("arm", "camera:front", "e-stop")."""

    def __init__(self, message: str, *, component: str) -> None:
        super().__init__(message)
        self.component = component


class ArmFault(RobotFault):
    """The arm stopped answering (unplugged cable, power loss, bus error)."""


class CameraFault(RobotFault):
    """A camera delivered no frame, even after reconnection attempts."""


class EmergencyStopped(RobotFault):
    """The emergency stop is latched; nothing moves until an operator clears it."""
