"""The arm section of a robot config: which LeRobot Robot to build, and how.

`type` is any robot LeRobot registers as a `RobotConfig` choice
(so100_follower, so101_follower, koch_follower, omx_follower, ...). `port`,
`id` and `calibration_dir` are the fields every serial follower has;
`options` passes any further field of that LeRobot config through unchanged
(e.g. `use_degrees`, `max_relative_target`), checked against the config class
so that a typo is an error, not a silently ignored key.
"""

from __future__ import annotations

import dataclasses
import difflib
import importlib
import logging
import pathlib
import pkgutil
from dataclasses import dataclass, field
from typing import Any

from robot_drivers.errors import RobotConfigError
from robot_drivers.lerobot_options import check_options

logger = logging.getLogger(__name__)

# Robot cameras are configured in the env's own `cameras` section, where a
# camera fault can be told apart from an arm fault; these LeRobot fields are refused in `options`.
_RESERVED_OPTIONS = ("cameras", "id", "calibration_dir", "port")


@dataclass
class SimulatedBusConfig:
    """The simulated motor bus (robot_drivers/arms/simulated_bus.py): a dry run without the arm."""

    command_latency_s: float = 0.002  # per bus transaction; a 6-motor sync read at 1 Mbaud takes ~1-2 ms
    max_speed: float = 180.0  # units per second a joint moves towards its goal (deg/s with use_degrees)
    # Position limit registers per motor name, in the bus's normalised units; others default by norm mode.
    position_limits: dict[str, list[float]] = field(default_factory=dict)
    start_positions: dict[str, float] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.command_latency_s < 0:
            raise ValueError(f"command_latency_s must not be negative, got {self.command_latency_s}")
        if self.max_speed <= 0:
            raise ValueError(f"max_speed must be positive, got {self.max_speed}")
        for motor, limits in self.position_limits.items():
            if len(limits) != 2 or not limits[0] < limits[1]:
                raise ValueError(f"position_limits.{motor} must be [low, high] with low < high, got {limits}")


@dataclass
class ArmConfig:
    type: str = "so101_follower"
    port: str | None = None
    id: str = "follower"
    calibration_dir: pathlib.Path | None = None  # None = LeRobot's default (~/.cache/huggingface/lerobot/calibration)
    options: dict[str, Any] = field(default_factory=dict)
    simulated: bool = False  # replace the motor bus by a simulated one: the robot class is still LeRobot's
    simulation: SimulatedBusConfig = field(default_factory=SimulatedBusConfig)

    def __post_init__(self) -> None:
        cls = robot_config_class(self.type)
        names = {f.name for f in dataclasses.fields(cls) if f.init}
        hints = {key: "the env's `cameras` section" if key == "cameras" else f"arm.{key}" for key in _RESERVED_OPTIONS}
        check_options(self.options, cls, reserved=_RESERVED_OPTIONS, reserved_hint=hints)
        if "port" in names and not self.port:
            raise ValueError(f"port is required for a {self.type} (e.g. /dev/ttyACM0)")


def _register_lerobot_robots() -> None:
    """Import every LeRobot robot config module so that its `RobotConfig` choice is registered.

    Only the config modules are imported (they need no vendor SDK); one that
    fails to import is skipped, with a debug log, so a missing optional
    dependency hides one robot type, not all of them.
    """
    import lerobot.robots as robots

    for package in pkgutil.iter_modules(robots.__path__):
        if not package.ispkg:
            continue
        for module in pkgutil.iter_modules([str(pathlib.Path(robots.__path__[0]) / package.name)]):
            if module.name.startswith("config"):
                name = f"lerobot.robots.{package.name}.{module.name}"
                try:
                    importlib.import_module(name)
                except Exception as exc:  # an optional dependency of one robot type
                    logger.debug("skipping %s: %s", name, exc)


def known_robot_types() -> list[str]:
    from lerobot.robots import RobotConfig

    _register_lerobot_robots()
    return sorted(RobotConfig.get_known_choices())


def robot_config_class(robot_type: str) -> type:
    from lerobot.robots import RobotConfig

    if robot_type not in RobotConfig.get_known_choices():
        _register_lerobot_robots()
    known = RobotConfig.get_known_choices()
    if robot_type not in known:
        close = difflib.get_close_matches(robot_type, sorted(known), n=1)
        hint = f" (did you mean '{close[0]}'?)" if close else ""
        raise RobotConfigError(f"unknown arm type {robot_type!r}{hint}; LeRobot knows {', '.join(sorted(known))}")
    return RobotConfig.get_choice_class(robot_type)


def lerobot_robot_config(config: ArmConfig) -> Any:
    """The LeRobot `RobotConfig` an `ArmConfig` describes."""
    cls = robot_config_class(config.type)
    names = {f.name for f in dataclasses.fields(cls) if f.init}
    kwargs: dict[str, Any] = {"id": config.id, **config.options}
    if config.calibration_dir is not None:
        kwargs["calibration_dir"] = pathlib.Path(config.calibration_dir).expanduser()
    if "port" in names:
        kwargs["port"] = config.port
    try:
        return cls(**kwargs)
    except (TypeError, ValueError) as exc:
        raise RobotConfigError(f"arm: LeRobot's {cls.__name__} refused the options: {exc}") from None
