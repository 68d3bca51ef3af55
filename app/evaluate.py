"""A policy's success rate on fixed seeds, every episode through `app.rollout.run_rollout`.

An episode ends at the oracle's success (simulation) or after `max_steps`
actions, and counts as a success when the oracle says so at its final state.
Without a store nothing is recorded and the cameras render only when the
policy is about to look (on a CPU a frame costs ~20x a physics step); with one
every frame is rendered and recorded, tagged with the policy and round.
"""

from __future__ import annotations

import logging
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from app.rollout import RolloutConfig, run_rollout
from policies.base import Policy
from policies.errors import PolicyError
from policies.eval_report import EvalReport
from recordings.episode import EpisodeMeta
from recordings.store import EpisodeStore

if TYPE_CHECKING:
    from sim.env import Env
    from sim.maniskill_env import SimEnvConfig

log = logging.getLogger(__name__)

__all__ = ["evaluate_in_sim", "evaluate_policy"]


def evaluate_policy(
    policy: Policy,
    env: Env,
    episodes: int,
    *,
    seed: int = 10_000,
    max_steps: int | None = None,
    policy_id: str = "policy",
    store: EpisodeStore | None = None,
    round: int = 0,  # noqa: A002 - EpisodeMeta's field name
    progress: bool = True,
) -> EvalReport:
    """Run `episodes` episodes on env seeds seed, seed + 1, ... (the env stays open); optionally record them."""
    from common.progress import progress_bar

    if episodes <= 0:
        raise PolicyError(f"episodes must be positive, got {episodes}")
    env_id = getattr(getattr(env, "config", None), "env_id", "") or type(env).__name__
    _check_policy_fits(policy, env)
    if hasattr(policy, "set_action_bounds"):
        policy.set_action_bounds(env.action_space.low, env.action_space.high)
    limit = max_steps or getattr(env, "max_episode_steps", None) or RolloutConfig.max_steps
    rollout = RolloutConfig(max_steps=limit, time_limit_s=None, capture="every_step", record_terminal=False,
                            stop_on_success=True, record_oracle=False)
    meta = None
    if store is not None:
        extra = {key: getattr(env.config, key) for key in ("control_mode", "state_mode") if hasattr(env, "config")}
        meta = EpisodeMeta(task=env.task, source="sim", env_id=env_id, policy_id=policy_id, round=round,
                           config_hash=_config_hash(env), extra=extra)
    report = EvalReport(env_id=env_id, policy_id=policy_id)
    started = time.perf_counter()
    bar = progress_bar(episodes, desc=f"eval {env_id}", unit="ep", enabled=progress)
    try:
        for ep_seed in range(seed, seed + episodes):
            result = run_rollout(env, policy, store, meta, config=rollout, seed=ep_seed)
            success = bool(result.oracle_success)
            report.episodes += 1
            report.successes += int(success)
            report.seeds.append(ep_seed)
            report.success_flags.append(success)
            report.lengths.append(result.steps)
            report.max_dense_rewards.append(float(result.max_dense_reward or 0.0))
            if result.index is not None:
                report.recorded.append(result.index)
            bar.update(1)
            bar.set_postfix(success=f"{report.successes}/{report.episodes}")
    finally:
        bar.close()
    report.elapsed_s = time.perf_counter() - started
    log.info("%s", report.summary())
    return report


def evaluate_in_sim(policy: Policy, env_config: SimEnvConfig, episodes: int, *, record_to: str | Path | None = None,
                    **options: Any) -> EvalReport:
    """`evaluate_policy` in a ManiSkill env of its own, recording into the store at `record_to` if given."""
    from sim.maniskill_env import make_sim_env

    with make_sim_env(env_config) as env:
        _check_policy_fits(policy, env)  # before a store is created for nothing
        store = _open_store(record_to, env, env_config) if record_to is not None else None
        try:
            return evaluate_policy(policy, env, episodes, store=store, **options)
        finally:
            if store is not None:
                store.close()


def _open_store(path: str | Path, env: Env, env_config: SimEnvConfig) -> EpisodeStore:
    """The store to record into, created for this env's cameras and sizes, or refused when it holds others."""

    cameras = {name: (env_config.camera_height, env_config.camera_width) for name in env.camera_names}
    store = EpisodeStore.open(path, mode="a", fps=env.control_freq, cameras=cameras, state_dim=env.state_size,
                              action_dim=int(np.prod(env.action_shape)))
    if store.cameras and store.cameras != cameras:
        store.close()
        raise PolicyError(f"{path} holds cameras {store.cameras}, this env records {cameras}")
    if store.state_dim not in (None, env.state_size):
        store.close()
        raise PolicyError(f"{path} holds states of size {store.state_dim}, this env has {env.state_size}")
    return store


def _config_hash(env: Env) -> str:
    from sim.demos import config_hash

    return config_hash(env.config) if hasattr(env, "config") else ""


def _check_policy_fits(policy: Policy, env: Env) -> None:
    """A policy trained on other cameras or another state layout would act on garbage: refuse with a hint."""
    missing = [c for c in policy.camera_names if c not in env.camera_names]
    if missing:
        raise PolicyError(f"the policy needs camera {missing[0]!r}; the env renders "
                          f"{', '.join(env.camera_names) or 'none'} (check env.cameras)")
    config = getattr(env, "config", None)
    state_dim = getattr(policy, "state_dim", None)
    if state_dim and state_dim != env.state_size:
        raise PolicyError(
            f"the policy takes states of size {state_dim}, the env gives {env.state_size} with "
            f"state_mode {getattr(config, 'state_mode', '?')!r} (set env.state_mode to what the policy was trained on)"
        )
    action_dim = getattr(policy, "action_dim", None)
    if action_dim and action_dim != int(np.prod(env.action_shape)):
        raise PolicyError(f"the policy outputs actions of size {action_dim}, the env takes {env.action_shape} "
                          f"(control_mode {getattr(config, 'control_mode', '?')!r})")
