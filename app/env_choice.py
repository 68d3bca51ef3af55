"""Where rollouts run, chosen by a config's `env` section: the simulator or a robot (operate and improve).

    env: {kind: sim, sim: {env_id: PickCube-v1, cameras: [base_camera], ...}}   # sim.maniskill_env.SimEnvConfig
    env: {kind: robot, robot: configs/robot/so101.yaml}                          # robot_drivers.config.RobotEnvConfig

Both envs implement the same Env interface, so a rollout loop never asks
where it runs; what differs (the episodes' source and env id, the store's
camera sizes, the oracle that only a simulator has) is answered here.
`robot_drivers` is imported only when a robot is asked for.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
from dataclasses import dataclass, field
from typing import Any, Literal, TYPE_CHECKING

from common.config import ConfigFile, config_file
from sim.maniskill_env import SimEnvConfig
from common.config import config_to_dict

if TYPE_CHECKING:
    from sim.env import Env

log = logging.getLogger(__name__)

__all__ = ["EnvSection", "build_env", "camera_sizes", "end_env_episode", "episode_fields"]


def _robot_env_config() -> type:
    """robot_drivers.config.RobotEnvConfig, imported when a config names a robot YAML."""
    try:
        from robot_drivers.config import RobotEnvConfig
    except ImportError as exc:
        raise ValueError(f"env.kind robot needs robot_drivers, which does not import here: {exc}") from None
    return RobotEnvConfig


@dataclass
class EnvSection:
    kind: Literal["sim", "robot"] = "sim"
    sim: SimEnvConfig = field(default_factory=lambda: SimEnvConfig(cameras=["base_camera"]))
    robot: ConfigFile | None = config_file(_robot_env_config, None)  # a robot YAML, loaded with this config

    def __post_init__(self) -> None:
        if self.kind not in ("sim", "robot"):
            raise ValueError(f"env.kind must be 'sim' or 'robot', got {self.kind!r}")
        if self.kind == "robot" and not self.robot:
            raise ValueError("env.kind is 'robot' but env.robot names no robot YAML (e.g. configs/robot/so101.yaml)")

    @property
    def is_robot(self) -> bool:
        return self.kind == "robot"

    @property
    def name(self) -> str:
        """What a report calls the env: the ManiSkill id, or the robot YAML."""
        return f"robot:{self.robot}" if self.is_robot else self.sim.env_id


def build_env(section: EnvSection, **robot_options: Any) -> Any:
    """The env the section names: ManiSkill, or a robot (connected) through robot_drivers.

    `robot_options` go to `robot_drivers.env.make_robot_env` (e.g. `operator_ready`, polled in the reset phase).
    """
    if not section.is_robot:
        from sim.maniskill_env import make_sim_env

        return make_sim_env(section.sim)
    config = section.robot.config
    from robot_drivers.env import make_robot_env

    return make_robot_env(config, **robot_options)


def camera_sizes(section: EnvSection, env: Env) -> dict[str, tuple[int, int]]:
    """camera -> (H, W) of the images the env delivers (what the episode store is created with)."""
    if not section.is_robot:
        return {n: (section.sim.camera_height, section.sim.camera_width) for n in env.camera_names}
    sizes = {}
    images = None
    for name in env.camera_names:
        cam = env.config.cameras[name]
        if cam.height is None or cam.width is None:  # a LeRobot camera at its device's default size
            images = images if images is not None else env.capture()
            sizes[name] = tuple(int(x) for x in images[name].shape[:2])
        else:
            sizes[name] = (int(cam.height), int(cam.width))
    return sizes


def episode_fields(section: EnvSection, env: Env) -> dict[str, Any]:
    """EpisodeMeta fields of a rollout in this env: source, env_id, config_hash, and the env's part of `extra`."""
    if not section.is_robot:
        from sim.demos import config_hash

        sim = section.sim
        return {"source": "sim", "env_id": sim.env_id, "config_hash": config_hash(sim),
                "extra": {"state_mode": sim.state_mode, "control_mode": sim.control_mode}}

    text = json.dumps(config_to_dict(env.config), sort_keys=True, default=str)
    return {"source": "robot", "env_id": "", "config_hash": hashlib.sha256(text.encode()).hexdigest()[:12],
            "extra": {"robot_config": str(section.robot), "joints": list(env.joint_names),
                      "control_hz": float(env.control_freq)}}


def end_env_episode(env: Env) -> dict[str, Any] | None:
    """A robot holds the arm between episodes; its report (summary, rate, safety clips) as JSON, or None.

    None for an env without episodes of its own (the simulator) and when the
    robot no longer answers (logged: the episode is kept without it).
    """
    end = getattr(env, "end_episode", None)
    if not callable(end):
        return None
    try:
        report = end()
    except Exception as exc:
        log.warning("end_episode failed: %s", exc)
        return None
    out = {"summary": report.summary()} if hasattr(report, "summary") else {}
    if dataclasses.is_dataclass(report):
        out.update(json.loads(json.dumps(dataclasses.asdict(report), default=str)))
    return out
