"""Motion-planning demonstrations recorded into the episode store.

ManiSkill ships a scripted solver per task (`mani_skill.examples.motionplanning
.panda.solutions`); each resets the env with a seed, plans screw motions and
drives the env itself through `env.step`. Rather than copying the solvers, we
hand them a thin gym wrapper (`StepRecorder`) that records every step they
take, so the recording is exactly what was executed.

Frame convention (LeRobot's): frame t holds the observation *before* action t
(state and camera images rendered at that moment), action t itself, and the
timestamp t / control_freq. An episode of T actions has T frames; the state
reached after the last action is not a frame, and the oracle success flag in
the episode attributes refers to that final state.

What a user wants is N successful demonstrations, so a failed solve (planner
gave up, or the task's success check is false at the end) is logged and
skipped by default, and new seeds are tried until N are recorded or
`max_attempts` is used up; `keep_failed=True` stores failures too, with
`oracle_success=False`. The solvers plan with `sim.planner.ScrewPlanner`
(mplib does not run under numpy 2; see that module).
"""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import importlib
import io
import json
import logging
import math
import os
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import gymnasium as gym
import numpy as np

from recordings.episode import Episode, EpisodeMeta, Frame
from sim.errors import SimError
from sim.maniskill_env import ManiSkillEnv, SimEnvConfig, check_env_id, envs_with_solver, make_sim_env
from recordings.store import EpisodeStore

logger = logging.getLogger(__name__)

POLICY_ID = "motionplanning"
SOLVER_PACKAGE = "mani_skill.examples.motionplanning.panda.solutions"


class StepRecorder(gym.Wrapper):
    """The env a solver drives: forwards reset/step to a ManiSkillEnv and records a Frame per step.

    `frames[t]` = observation before action t (state + captured images), action t,
    timestamp t / control_freq. `reset` starts a new list.
    """

    def __init__(self, sim_env: ManiSkillEnv) -> None:
        super().__init__(sim_env.raw_env)
        self.sim_env = sim_env
        self.frames: list[Frame] = []
        self.last_action: np.ndarray | None = None

    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None) -> tuple[Any, dict[str, Any]]:
        if options:
            raise ValueError("StepRecorder.reset takes no options")
        self.sim_env.reset(seed=seed)
        self.frames = []
        self.last_action = None
        return {}, {"success": self.sim_env.success}

    def step(self, action: Any) -> tuple[Any, float, bool, bool, dict[str, Any]]:
        env = self.sim_env
        action = np.asarray(action, dtype=np.float32)
        frame = Frame(
            images=env.capture(),
            state=env.state(),
            action=action,
            timestamp=env.step_index / env.control_freq,
        )
        obs, info = env.step(action)
        self.frames.append(frame)
        self.last_action = action
        return obs, info["dense_reward"], info["terminated"], info["truncated"], info


@dataclass
class DemoReport:
    """What `record_demos` did."""

    env_id: str
    task: str
    requested: int
    store_path: str
    recorded: int = 0  # episodes written to the store
    successes: int = 0  # successful episodes among them
    attempts: int = 0  # solver runs (one seed each)
    planner_failures: int = 0  # runs where the planner gave up (no path) or raised
    task_failures: int = 0  # runs that finished but the task's success check was false
    seeds: list[int] = field(default_factory=list)  # seeds of the recorded episodes
    failed_seeds: list[int] = field(default_factory=list)
    episode_indices: list[int] = field(default_factory=list)  # their indices in the store
    frames: int = 0  # frames written
    elapsed_s: float = 0.0

    @property
    def complete(self) -> bool:
        return self.successes >= self.requested

    def summary(self) -> str:
        failed = self.planner_failures + self.task_failures
        line = (
            f"{self.env_id}: {self.successes}/{self.requested} successful demonstrations recorded "
            f"({self.recorded} episodes, {self.frames} frames) into {self.store_path} in {self.elapsed_s:.1f} s; "
            f"{self.attempts} attempts, {failed} failed ({self.planner_failures} planner, {self.task_failures} task)"
        )
        if not self.complete:
            line += f"; gave up after {self.attempts} attempts"
        return line


def solver_for(env_id: str) -> Callable[..., Any]:
    """ManiSkill's motion-planning `solve(env, seed, debug, vis)` for an env id.

    Only the table's ids can have one (`envs_with_solver`).
    """
    spec = check_env_id(env_id)
    if spec is None or spec.solver is None:
        with_solver = ", ".join(envs_with_solver())
        raise SimError(f"no motion-planning solver for {env_id}; demos exist for: {with_solver}")
    from sim.planner import quiet_planner_imports
    from sim.vulkan import prepare_sim_env

    prepare_sim_env()  # the solver modules import mani_skill, which reads MS_ASSET_DIR at import
    with quiet_planner_imports():  # the solver modules import mplib and toppra
        return importlib.import_module(f"{SOLVER_PACKAGE}.{spec.solver}").solve


def config_hash(config: SimEnvConfig) -> str:
    """Short stable hash of the env config, stored with each episode."""
    fields = dataclasses.asdict(config)
    if fields["task"] is None:  # a config that leaves the task to the table hashes as it did before `task` existed
        del fields["task"]
    text = json.dumps(fields, sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:12]


def run_solver(recorder: StepRecorder, solve: Callable[..., Any], seed: int, settle_steps: int,
               hold_steps: int = 0) -> str | None:
    """Run one solve; returns None if the planner completed, else why it did not.

    After the solver, if the task is not yet successful (e.g. a released object
    still rolling), the last action is held for up to `settle_steps` steps,
    stopping as soon as it is. Once successful, the last action is held for
    `hold_steps` more steps: a policy cloned from demos that end at the
    moment of success has never seen what to do next and drifts away, one
    cloned from demos that hold learns to stay done until the episode ends.
    """
    from sim.planner import screw_planner_installed

    chatter = io.StringIO()  # the solvers print planner failures; route them to the log
    failure: str | None = None
    try:
        with contextlib.redirect_stdout(chatter), screw_planner_installed():
            result = solve(recorder, seed=seed, debug=False, vis=False)
        if isinstance(result, int) and result == -1:
            failure = "planner found no path"
    except Exception as exc:  # a solver bug or a numerical failure: one failed attempt, not a crash
        failure = f"solver raised {type(exc).__name__}: {exc}"
    for line in chatter.getvalue().splitlines():
        logger.debug("solver (seed %d): %s", seed, line)
    if failure is None and recorder.last_action is not None:
        for _ in range(settle_steps):
            if recorder.sim_env.success:
                break
            recorder.step(recorder.last_action)
        if recorder.sim_env.success:
            for _ in range(hold_steps):
                recorder.step(recorder.last_action)
    return failure


def record_demos(
    env_id: str,
    n: int,
    store_path: str | os.PathLike[str],
    *,
    seed: int = 0,
    camera_size: tuple[int, int] = (128, 128),
    max_attempts: int | None = None,
    progress: bool = True,
    keep_failed: bool = False,
    settle_steps: int = 10,
    hold_steps: int = 0,
    env_config: SimEnvConfig | None = None,
) -> DemoReport:
    """Record `n` successful motion-planning demonstrations of `env_id` into the store at `store_path`.

    Seeds `seed`, `seed + 1`, ... are tried in turn until `n` successes or
    `max_attempts` solver runs (default 3 * n). `camera_size` is (height,
    width). `env_config` overrides every other env setting (its env_id must
    match). The store is created if missing; its fps is the env's control
    frequency. `hold_steps`: steps the successful end state is held and
    recorded (`run_solver`). Returns a DemoReport; a failed solve never raises.
    """

    if n <= 0:
        raise ValueError(f"n must be positive, got {n}")
    # Before the config: a task without a solver is refused as such, not for a missing task sentence.
    solve = solver_for(env_id)
    height, width = camera_size
    config = env_config or SimEnvConfig(env_id=env_id, camera_width=width, camera_height=height)
    if config.env_id != env_id:
        raise ValueError(f"env_config is for {config.env_id}, not {env_id}")
    if config.control_mode not in ("pd_joint_pos", "pd_joint_pos_vel"):
        raise SimError(f"motion-planning demos need control_mode pd_joint_pos, got {config.control_mode}")
    max_attempts = 3 * n if max_attempts is None else max_attempts
    started = time.perf_counter()

    env = make_sim_env(config)
    report = DemoReport(env_id=env_id, task=env.task, requested=n, store_path=str(store_path))
    try:
        cameras = {name: (config.camera_height, config.camera_width) for name in env.camera_names}
        store = EpisodeStore.open(
            store_path,
            mode="a",
            fps=env.control_freq,
            cameras=cameras,
            state_dim=env.state_size,
            action_dim=int(np.prod(env.action_shape)),
        )
        with store:
            _check_store_schema(store, cameras, env)
            recorder = StepRecorder(env)
            bar = _progress_bar(n, env_id, enabled=progress)
            try:
                while report.successes < n and report.attempts < max_attempts:
                    success = _attempt(
                        recorder,
                        solve,
                        store,
                        config,
                        seed + report.attempts,
                        report,
                        keep_failed=keep_failed,
                        settle_steps=settle_steps,
                        hold_steps=hold_steps,
                    )
                    bar.update(int(success))
                    bar.set_postfix(attempts=report.attempts, failed=len(report.failed_seeds))
            finally:
                bar.close()
    finally:
        env.close()
    report.elapsed_s = time.perf_counter() - started
    if not report.complete:
        logger.warning("%s", report.summary())
    else:
        logger.info("%s", report.summary())
    return report


def _attempt(
    recorder: StepRecorder,
    solve: Callable[..., Any],
    store: EpisodeStore,
    config: SimEnvConfig,
    seed: int,
    report: DemoReport,
    *,
    keep_failed: bool,
    settle_steps: int,
    hold_steps: int = 0,
) -> bool:
    """One solver run on `seed`: judge it, store it if wanted, count it in `report`; True if successful."""
    env = recorder.sim_env
    report.attempts += 1
    failure = run_solver(recorder, solve, seed, settle_steps, hold_steps)
    success = failure is None and env.success
    if failure is not None:
        report.planner_failures += 1
    elif not success:
        report.task_failures += 1
        failure = "the task's success check is false at the end"
    if failure is not None:
        report.failed_seeds.append(seed)
        logger.info("%s seed %d: failed (%s)", config.env_id, seed, failure)
    if (success or keep_failed) and recorder.frames:
        index = store.append(_episode(recorder, env, config, seed, success, failure))
        report.recorded += 1
        report.successes += int(success)
        report.seeds.append(seed)
        report.episode_indices.append(index)
        report.frames += len(recorder.frames)
        logger.debug("%s seed %d: episode %d, %d frames", config.env_id, seed, index, len(recorder.frames))
    return success


def _episode(
    recorder: StepRecorder, env: ManiSkillEnv, config: SimEnvConfig, seed: int, success: bool, failure: str | None
) -> Episode:
    meta = EpisodeMeta(
        task=env.task,
        source="demo",
        env_id=config.env_id,
        policy_id=POLICY_ID,
        seed=seed,
        oracle_success=success,
        duration_s=len(recorder.frames) / env.control_freq,
        config_hash=config_hash(config),
        extra={
            "control_mode": config.control_mode,
            "control_freq": env.control_freq,
            "state_mode": config.state_mode,
            "planner": "sim.planner.ScrewPlanner",
            "failure": failure,
            "final_dense_reward": env.dense_reward,
            "frame_convention": "frame t = observation before action t, action t, t / control_freq",
        },
    )
    return Episode.from_frames(meta, recorder.frames)


def _check_store_schema(store: EpisodeStore, cameras: dict[str, tuple[int, int]], env: ManiSkillEnv) -> None:
    """Fail before any solving when an existing store was recorded with other cameras or sizes."""
    if store.cameras and store.cameras != cameras:
        raise SimError(f"{store.path} holds cameras {store.cameras}, this env records {cameras}")
    if store.state_dim is not None and store.state_dim != env.state_size:
        raise SimError(f"{store.path} holds state vectors of size {store.state_dim}, this env has {env.state_size}")
    action_dim = int(np.prod(env.action_shape))
    if store.action_dim is not None and store.action_dim != action_dim:
        raise SimError(f"{store.path} holds actions of size {store.action_dim}, this env has {action_dim}")
    if store.fps is not None and abs(store.fps - env.control_freq) > 1e-9:
        logger.warning("%s was recorded at %s fps, this env runs at %s Hz", store.path, store.fps, env.control_freq)


def _progress_bar(total: int, env_id: str, *, enabled: bool) -> Any:
    from common.progress import progress_bar

    return progress_bar(total, desc=f"demos {env_id}", unit="demo", enabled=enabled)


def horizon_from_demos(lengths: list[int], executed_steps: int = 1, margin: float = 1.25) -> int:
    """An episode length long enough for a policy cloned from demos of these lengths to succeed.

    The longest demonstration times `margin` (a cloned policy is slower and less direct than the
    planner), rounded up to whole decisions of `executed_steps`. A horizon cut below the demos'
    own success step makes every cloned rollout a failure, whatever PPO does.
    """
    if not lengths:
        raise ValueError("no demonstrations to choose a horizon from")
    if executed_steps < 1 or margin < 1:
        raise ValueError(f"executed_steps must be >= 1 and margin >= 1, got {executed_steps}, {margin}")
    steps = math.ceil(max(lengths) * margin)
    return -(-steps // executed_steps) * executed_steps
