"""ManiSkill3 tasks behind the project's Env interface: numpy in, numpy out, pixels on demand.

The ManiSkill env is created with a state-only observation mode, so a `step`
never touches the renderer (~1.4 ms of physics on a CPU); `capture()` renders
the task's cameras when asked (~20-45 ms per 128x128 frame with lavapipe). It
runs on the CPU simulation backend with one env per process; ManiSkill returns
torch tensors with a leading batch dimension of 1, which are squeezed here.

The state vector (`state_mode`):
- "proprio" (default): robot joint positions, joint velocities, and the TCP pose
  in the world frame (x, y, z, qw, qx, qy, qz), concatenated; 9 + 9 + 7 = 25
  floats for the Panda. What a real robot also reports: no object poses.
- "full": ManiSkill's flattened "state" observation (the same proprioception
  plus the task's privileged extras: object and goal poses and the like);
  for policies trained on privileged state in simulation.
Both are float32 and of fixed size per env id (`state_size`).
"""

from __future__ import annotations

import difflib
import gc
import logging
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np

from common.numbers import Pixels, Seed, Steps
from sim.env import Observation
from sim.errors import MissingTaskError, UnknownCameraError, UnknownEnvError
from sim.vulkan import prepare_sim_env

logger = logging.getLogger(__name__)

__all__ = ["SUPPORTED_ENVS", "EnvSpec", "ManiSkillEnv", "Observation", "SimEnvConfig", "make_sim_env"]


@dataclass(frozen=True)
class EnvSpec:
    """What this project knows about a ManiSkill env id beyond ManiSkill itself."""

    task: str  # the natural-language instruction, phrased after what the cameras show
    solver: str | None = None  # module in mani_skill.examples.motionplanning.panda.solutions
    task_with_markers: str | None = None  # the instruction when goal markers are rendered


# Defaults for env ids that build offline on a CPU: task sentences and motion-planning solvers.
# Not a gate: any env id ManiSkill registers can be used with `SimEnvConfig.task` (its sentence);
# an id listed here may leave `task` out. Colours and objects are those of ManiSkill 3.0.1's scenes.
SUPPORTED_ENVS: dict[str, EnvSpec] = {
    # The green goal sphere is hidden from the cameras unless show_goal_markers is set.
    "PickCube-v1": EnvSpec(
        task="pick up the red cube and move it to the goal position",
        solver="pick_cube",
        task_with_markers="pick up the red cube and move it to the green goal sphere",
    ),
    "PushCube-v1": EnvSpec(task="push the blue cube forward onto the red and white target", solver="push_cube"),
    "PullCube-v1": EnvSpec(task="pull the blue cube back onto the red and white target", solver="pull_cube"),
    "StackCube-v1": EnvSpec(task="pick up the red cube and stack it on top of the green cube", solver="stack_cube"),
    "PegInsertionSide-v1": EnvSpec(
        task="pick up the orange and white peg and insert its orange end into the hole in the box",
        solver="peg_insertion_side",
    ),
    "PlaceSphere-v1": EnvSpec(task="pick up the blue ball and place it into the shallow bin", solver="place_sphere"),
    "LiftPegUpright-v1": EnvSpec(
        task="lift the red and blue peg lying on the table and stand it upright", solver="lift_peg_upright"
    ),
    "PullCubeTool-v1": EnvSpec(
        task="use the red L-shaped tool to pull the blue cube closer to the robot", solver="pull_cube_tool"
    ),
    "PokeCube-v1": EnvSpec(task="use the blue peg to push the red cube onto the red and white target"),
}

StateMode = Literal["proprio", "full"]


def envs_with_solver() -> list[str]:
    """The env ids `demos` (motion planning) can record: a solver is a script written for one scene."""
    return [env_id for env_id, spec in SUPPORTED_ENVS.items() if spec.solver]


def registered_env_ids() -> list[str]:
    """Every env id ManiSkill registers (imports mani_skill, so only asked for ids off the table)."""
    prepare_sim_env()  # mani_skill reads MS_ASSET_DIR when it is imported
    import mani_skill.envs  # noqa: F401  (registers the env ids)
    from mani_skill.utils.registration import REGISTERED_ENVS

    return sorted(REGISTERED_ENVS)


def check_env_id(env_id: str) -> EnvSpec | None:
    """The table's defaults for `env_id`, None for a registered id the table lacks.

    An id ManiSkill does not register is a one-line `UnknownEnvError` naming it and its
    close matches. The table's ids skip the registry (importing mani_skill takes seconds).
    """
    if env_id in SUPPORTED_ENVS:
        return SUPPORTED_ENVS[env_id]
    registered = registered_env_ids()
    if env_id in registered:
        return None
    close = difflib.get_close_matches(env_id, registered, n=5, cutoff=0.6)
    hint = f"; close matches: {', '.join(close)}" if close else f"; built-in tasks: {', '.join(SUPPORTED_ENVS)}"
    raise UnknownEnvError(f"env id {env_id!r} is not registered in ManiSkill{hint}")


@dataclass
class SimEnvConfig:
    """Everything that decides how a ManiSkill env is built; YAML-friendly."""

    env_id: str = "PickCube-v1"
    # The task sentence observations carry (and reward models and policies read). None = the
    # table's (SUPPORTED_ENVS); required for an env id the table lacks.
    task: str | None = None
    control_mode: str = "pd_joint_pos"  # the motion-planning solvers need pd_joint_pos(_vel)
    camera_width: Pixels = 128
    camera_height: Pixels = 128
    # which cameras capture() renders; None = the task's sensor cameras. A task's human-render
    # camera (PickCube's "render_camera", a second viewpoint) may be named too, at the same size.
    cameras: list[str] | None = None
    max_episode_steps: Steps | None = None  # None = the limit ManiSkill registers for the env id
    seed: Seed | None = None  # seed of the first reset when reset() is given none
    state_mode: StateMode = "proprio"
    capture_every_step: bool = False  # fill Observation.images on every reset/step (slow on a CPU)
    show_goal_markers: bool = False  # render goal markers ManiSkill hides from cameras (PickCube's goal)
    robot_uids: str | None = None  # None = the env's default robot
    sim_backend: str = "physx_cpu"
    render_backend: str = "cpu"  # "gpu" where a GPU is present

    def __post_init__(self) -> None:
        if self.task is not None and not self.task.strip():
            raise ValueError("task must be a non-empty sentence or left out")
        if check_env_id(self.env_id) is None and self.task is None:
            raise MissingTaskError(
                f"{self.env_id} has no built-in task sentence: give one as `task:` next to `env_id:` in the config"
            )
        if self.camera_width <= 0 or self.camera_height <= 0:
            raise ValueError(f"camera size must be positive, got {self.camera_width}x{self.camera_height}")
        if self.max_episode_steps is not None and self.max_episode_steps <= 0:
            raise ValueError(f"max_episode_steps must be positive, got {self.max_episode_steps}")
        if self.state_mode not in ("proprio", "full"):
            raise ValueError(f"state_mode must be 'proprio' or 'full', got {self.state_mode!r}")

    @property
    def spec(self) -> EnvSpec:
        """The table's entry for env_id, or (off the table) one made of the config's task and no solver."""
        spec = check_env_id(self.env_id)
        return spec if spec is not None else EnvSpec(task=str(self.task))

    @property
    def task_sentence(self) -> str:
        """The sentence an env built from this config gives its observations: the config's, else the table's."""
        if self.task is not None:
            return self.task
        spec = self.spec
        return (spec.task_with_markers or spec.task) if self.show_goal_markers else spec.task

    def gym_kwargs(self) -> dict[str, Any]:
        """The `gym.make` keyword arguments of this config (one env here; vectorised PPO adds `num_envs`)."""
        kwargs: dict[str, Any] = dict(
            obs_mode="state_dict" if self.state_mode == "full" else "none",
            reward_mode="normalized_dense",
            control_mode=self.control_mode,
            sensor_configs=dict(width=self.camera_width, height=self.camera_height),
            human_render_camera_configs=dict(width=self.camera_width, height=self.camera_height),
            sim_backend=self.sim_backend,
            render_backend=self.render_backend,
        )
        if self.robot_uids is not None:
            kwargs["robot_uids"] = self.robot_uids
        return kwargs


_RENDER_KEEPALIVE: dict[str, Any] = {}


def _keep_render_context(device: Any) -> None:
    """Hold one empty SAPIEN render system per device for the life of the process.

    SAPIEN drops its Vulkan context, and with it every compiled shader pipeline,
    when the last render system is freed; with lavapipe the next env then spends
    ~7-10 s recompiling before its first frame. One idle render system keeps the
    context (measured: the second env's first capture takes 0.03 s instead of 10 s).
    """
    import sapien

    key = str(device)
    if key not in _RENDER_KEEPALIVE:
        _RENDER_KEEPALIVE[key] = sapien.render.RenderSystem(device)


def _squeeze(value: Any) -> Any:
    """Batch-of-one torch tensor -> numpy array, or a Python scalar if it has one element."""
    if hasattr(value, "detach"):
        array = value.detach().cpu().numpy()
        if array.ndim >= 1 and array.shape[0] == 1:
            array = array[0]
        return array.item() if array.ndim == 0 else array
    return value


_FROZEN = False


def _freeze_long_lived_objects() -> None:
    """Once per process, before the first scene: move what exists now out of the cyclic collector's sight.

    ManiSkill runs gc.collect() whenever it frees a scene (BaseEnv._clear), i.e. on every reset, because
    each reset rebuilds the scene. With torch, transformers and the app imported, that collection scans
    ~350k long-lived objects: a reset took 570-770 ms instead of 20-80 ms frozen (load ~5, this 2-core
    machine). Freezing only exempts the objects alive now (modules, loaded models); every scene built
    later is still collected. Collecting first keeps today's garbage from being frozen for good.
    """
    global _FROZEN
    if not _FROZEN:
        gc.collect()
        gc.freeze()
        _FROZEN = True


class ManiSkillEnv:
    """A single ManiSkill3 env (CPU simulation) implementing the project's Env interface.

    `success` and `dense_reward` are the simulator's oracle values for the
    current state (ManiSkill's `info["success"]` and its normalized dense
    reward, in [0, 1]); they refer to the state after the last reset or step.
    """

    def __init__(self, config: SimEnvConfig) -> None:
        self.config = config
        self.task: str = config.task_sentence
        prepare_sim_env()
        import gymnasium as gym
        import mani_skill.envs  # noqa: F401  (registers the env ids)

        _freeze_long_lived_objects()
        self._gym_env = gym.make(config.env_id, **config.gym_kwargs())
        self.raw_env = self._gym_env.unwrapped  # the ManiSkill BaseEnv; stepped directly, no gym wrappers
        if self.raw_env.scene.can_render():
            _keep_render_context(self.raw_env.backend.render_device)
        self.max_episode_steps: int = config.max_episode_steps or gym.spec(config.env_id).max_episode_steps or 100

        from mani_skill.sensors.camera import Camera

        sensor_cameras = [name for name, sensor in self.raw_env.scene.sensors.items() if isinstance(sensor, Camera)]
        available = sensor_cameras + [n for n in self.raw_env.scene.human_render_cameras if n not in sensor_cameras]
        if config.cameras is None:
            self._camera_names = sensor_cameras
        else:
            missing = [name for name in config.cameras if name not in available]
            if missing:
                raise UnknownCameraError(f"{config.env_id} has no camera {missing[0]!r}; it has {', '.join(available)}")
            self._camera_names = list(config.cameras)

        self._step = 0
        self._raw_obs: Any = None
        self._info: dict[str, Any] = {}
        self._reward = 0.0
        self._seed_pending = config.seed
        self.action_space = self.raw_env.single_action_space
        self.action_shape: tuple[int, ...] = tuple(self.action_space.shape)
        self.state_size = int(self._state().shape[0])

    # -- Env interface ------------------------------------------------------

    @property
    def camera_names(self) -> list[str]:
        return list(self._camera_names)

    @property
    def control_freq(self) -> float:
        """Control steps per simulated second (timestamps are step / control_freq)."""
        return float(self.raw_env.control_freq)

    @property
    def step_index(self) -> int:
        return self._step

    @property
    def success(self) -> bool:
        return bool(_squeeze(self._info.get("success", False)))

    @property
    def dense_reward(self) -> float:
        return self._reward

    def reset(self, seed: int | None = None) -> Observation:
        if seed is None and self._seed_pending is not None:
            seed = self._seed_pending
        self._seed_pending = None
        # Rebuild the scene on every reset, so that an episode is a function of its seed alone (a resumed run
        # then equals an uninterrupted one). A plain ManiSkill reset only sets poses: its first observation
        # still reports the last episode's grasp (is_grasped reads the contacts of the last physics step), and
        # PhysX's contact caches steer the steps that follow. ManiSkill rebuilds on every reset by itself only
        # for tasks that draw their objects at build (PegInsertionSide). Costs ~20-80 ms per reset on a CPU
        # instead of ~5 ms once long-lived objects are frozen (_freeze_long_lived_objects; benchmarks/sim_reset.py).
        self._raw_obs, self._info = self.raw_env.reset(seed=seed, options={"reconfigure": True})
        self._step = 0
        self._reward = float(
            _squeeze(self.raw_env.compute_normalized_dense_reward(obs=self._raw_obs, action=None, info=self._info))
        )
        return self._observation()

    def step(self, action: np.ndarray) -> tuple[Observation, dict[str, Any]]:
        """Apply one action; returns the observation and a numpy info dict.

        The info holds ManiSkill's per-task evaluation (squeezed) plus
        `success`, `dense_reward`, `terminated` (success or failure) and
        `truncated` (max_episode_steps reached). Stepping past either is
        allowed; the caller decides when an episode ends.
        """
        array = np.asarray(action, dtype=np.float32)
        if array.shape != self.action_shape:
            raise ValueError(f"action must have shape {self.action_shape}, got {array.shape}")
        self._raw_obs, reward, terminated, _, self._info = self.raw_env.step(array)
        self._step += 1
        self._reward = float(_squeeze(reward))
        info = {key: _squeeze(value) for key, value in self._info.items()}
        info.update(
            success=self.success,
            dense_reward=self._reward,
            terminated=bool(_squeeze(terminated)),
            truncated=self._step >= self.max_episode_steps,
        )
        return self._observation(), info

    def capture(self) -> dict[str, np.ndarray]:
        """Render the cameras now: camera name -> (H, W, 3) uint8.

        Only RGB is read back (no depth or segmentation textures). Objects the
        task hides from its cameras (goal markers) stay hidden unless
        `show_goal_markers`.
        """
        env = self.raw_env
        for obj in env._hidden_objects:
            obj.show_visual() if self.config.show_goal_markers else obj.hide_visual()
        human = env.scene.human_render_cameras
        wanted_human = any(name in human and name not in env.scene.sensors for name in self._camera_names)
        env.scene.update_render(update_sensors=True, update_human_render_cameras=wanted_human)
        cameras = [env.scene.sensors[name] if name in env.scene.sensors else human[name] for name in self._camera_names]
        for camera in cameras:
            camera.capture()
        images = {}
        for name, camera in zip(self._camera_names, cameras, strict=True):
            rgb = camera.get_obs(rgb=True, depth=False, position=False, segmentation=False)["rgb"]
            images[name] = np.ascontiguousarray(rgb[0].cpu().numpy(), dtype=np.uint8)
        return images

    def close(self) -> None:
        if self._gym_env is not None:
            self._gym_env.close()
            self._gym_env = None

    def __enter__(self) -> ManiSkillEnv:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- helpers --------------------------------------------------------------

    def state(self) -> np.ndarray:
        """The state vector of the current simulator state (see the module docstring)."""
        return self._state()

    def _state(self) -> np.ndarray:
        env = self.raw_env
        if self.config.state_mode == "full":
            from mani_skill.utils import common

            raw = self._raw_obs if self._raw_obs is not None else env.get_obs()
            flat = common.flatten_state_dict(raw, use_torch=True)
        else:
            import torch

            robot = env.agent.robot
            flat = torch.cat([robot.get_qpos(), robot.get_qvel(), env.agent.tcp.pose.raw_pose], dim=-1)
        return np.asarray(flat[0].cpu().numpy(), dtype=np.float32)

    def _observation(self) -> Observation:
        images = self.capture() if self.config.capture_every_step else {}
        return Observation(state=self._state(), task=self.task, step=self._step, images=images)


def make_sim_env(config: SimEnvConfig | None = None, **overrides: Any) -> ManiSkillEnv:
    """Build the env a config describes; keyword overrides replace config fields."""
    if config is None:
        config = SimEnvConfig(**overrides)
    elif overrides:
        from dataclasses import replace

        config = replace(config, **overrides)
    return ManiSkillEnv(config)
