"""The steps of one self-improvement round, once: roll out, judge, select, fine-tune, evaluate.

`lrm-robot improve` (app.improve.loop) runs them for every round of a run
directory; the operator session (app.operator.session) runs them under a
person's eye, judging and reviewing each rollout as it ends. Each step takes
what it needs (store, env, policy, judge, config) and keeps its state in the
store, so either caller resumes a round where it stopped:

- a slot is done when a committed episode carries the round, the phase and the
  slot in `extra["improve"]` (`done_slots`); a robot's fault or emergency
  stop says nothing about the policy, and an episode the operator retired
  ("re-record" in review) is not the slot's outcome, so those slots run again;
- an episode is judged when it has an LRM verdict (`judge_rollout` skips none:
  the caller asks only for those without);
- a fine-tuning continues from its trainer's checkpoint in its output folder.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from pathlib import Path
from typing import Any, TYPE_CHECKING

from app.env_choice import end_env_episode
from app.errors import UsageError
from app.evaluate import evaluate_in_sim
from app.improve.judge import judge_episode
from app.improve.report import phase_records
from app.rollout import RolloutConfig, RolloutControl, RolloutResult, StepEvent, run_rollout
from policies.base import Policy
from policies.factory import PolicyConfig, train_policy
from recordings.episode import EpisodeMeta

if TYPE_CHECKING:
    from lrm.types import RewardModel
    from recordings.store import EpisodeStore
    from sim.env import Env
    from sim.maniskill_env import SimEnvConfig

log = logging.getLogger(__name__)

__all__ = ["EmergencyStop", "done_slots", "evaluate_round", "finetune", "judge_rollout", "rollout_slot"]


class EmergencyStop(UsageError):
    """The operator stopped everything; the run continues from here when started again."""


def done_slots(store: EpisodeStore, round_: int, phase: str) -> set[int]:
    """The slots of `phase` in `round_` that hold a committed episode (module doc)."""
    done = set()
    for rec in store.episodes(round=round_):
        tag = rec.meta.extra.get("improve") or {}
        info = rec.meta.extra.get("rollout") or {}
        faulted = rec.meta.source == "robot" and rec.meta.aborted and info.get("status") in ("error", "emergency_stop")
        retired = faulted or rec.meta.extra.get("operator_rerecorded", False)
        if tag.get("phase") == phase and not retired:
            done.add(int(tag["slot"]))
    return done


def rollout_slot(env: Env, policy: Policy, store: EpisodeStore, *, round_: int, phase: str, slot: int, seed: int,
                 policy_id: str, fields: dict[str, Any], run: str, rollout: RolloutConfig,
                 control: RolloutControl, on_step: Callable[[StepEvent], None] | None = None,
                 stop_check: Any = None, reward_hook: Any = None, extra: dict[str, Any] | None = None
                 ) -> RolloutResult:
    """One rollout of a round's slot, tagged so that a resumed round finds it (module doc).

    `fields` are the env's episode fields (app.env_choice.episode_fields). A robot's fault ends
    the caller's work with one line (its episode is kept as aborted and the slot runs again); the
    robot's report of the episode (rate, safety clips) goes into the episode's attributes.
    """
    meta = EpisodeMeta(
        task=env.task, source=fields["source"], env_id=fields["env_id"], policy_id=policy_id, round=round_,
        config_hash=fields["config_hash"],
        extra={"improve": {"phase": phase, "slot": slot, "run": run}, **fields["extra"], **(extra or {})},
    )
    result = None
    try:
        result = run_rollout(env, policy, store, meta, config=rollout, seed=seed, control=control, on_step=on_step,
                             stop_check=stop_check, reward_hook=reward_hook)
    except Exception as exc:
        _raise_robot_fault(exc, f"{phase} round {round_} slot {slot}")
        raise
    finally:
        report = end_env_episode(env)
        if report is not None and result is not None and result.index is not None:
            rec = store.record(result.index)
            store.update_meta(result.index, extra={**rec.meta.extra, "robot": report})
    if result.status == "emergency_stop":
        raise EmergencyStop(f"emergency stop during {phase} round {round_} slot {slot}: {result.reason}; "
                            "run the same command to continue")
    return result


def _raise_robot_fault(exc: Exception, where: str) -> None:
    component = getattr(exc, "component", None)
    if component == "e-stop":
        raise EmergencyStop(f"emergency stop during {where}: {exc}; run the same command to continue") from None
    if component is not None:
        raise UsageError(f"robot fault ({component}) during {where}: {exc}; the episode is kept as aborted; "
                         "fix it and run the same command to continue") from None


def judge_rollout(store: EpisodeStore, index: int, model: RewardModel, judge: Any, provenance: dict[str, Any]) -> Any:
    """The completion verdict of a committed episode, written next to the operator's and the oracle's.

    `judge` is the JudgeConfig (camera, frames, combine, threshold); `provenance` names the model
    (backend and checkpoint) in the episode's attributes. Returns the updated EpisodeMeta.
    """
    verdict = judge_episode(model, store, index, judge)
    rec = store.record(index)
    extra = {**rec.meta.extra, "judge": {**verdict.to_json(), "combine": judge.combine, "threshold": judge.threshold,
                                         **provenance}}
    return store.update_meta(index, lrm_verdict=bool(verdict.accepted), lrm_score=float(verdict.score), extra=extra)


def unjudged(store: EpisodeStore, round_: int, phase: str) -> tuple[list[Any], list[Any]]:
    """(every unaborted episode of the round's phase, those of them without a verdict yet)."""
    records = [r for r in phase_records(store, round_, phase) if not r.meta.aborted]
    return records, [r for r in records if r.meta.lrm_verdict is None]


def finetune(policy: PolicyConfig, store_path: Path, out: Path, *, round_: int, select: list[Any],
             init_from: Path | None, num_threads: int | None, progress: bool,
             report_to: list[str] | None = None, seed_offset: int = 0) -> dict[str, Any]:
    """Train round `round_`'s policy on the selection (round 0 from scratch); resumes the trainer's checkpoint.

    `report_to` (None: the trainer config's) says where the trainer's metrics go (common.tracking);
    `seed_offset` (the improve run seed) moves the trainer's seed.
    """
    config = policy.train_config(store_path, out, select, round_=round_, init_from=init_from)
    config.seed += seed_offset
    config.resume = (out / "checkpoints" / "last" / "training_state.pt").is_file()
    if getattr(config, "num_threads", 0) is None:
        config.num_threads = num_threads
    config.progress = progress
    if report_to is not None:
        config.report_to = list(report_to)
    result = train_policy(config)
    return {"checkpoint": str(result.checkpoint), "train_loss": result.train_loss}


def evaluate_round(policy: Policy, env_config: SimEnvConfig, *, episodes: int, seed: int, max_steps: int,
                   round_: int, progress: bool, policy_id: str | None = None) -> dict[str, Any]:
    """The oracle's success of `policy` on the same `episodes` seeds every round (paired), with its interval.

    The evaluation has a ManiSkill env of its own. Its number depends on the seeds alone, not on what
    ran before it: every reset rebuilds the scene (`ManiSkillEnv.reset`).
    """
    report = evaluate_in_sim(policy, env_config, episodes, seed=seed, max_steps=max_steps,
                             policy_id=policy_id or f"round-{round_}", progress=progress)
    lo, hi = report.ci95
    return {"episodes": report.episodes, "successes": report.successes, "success_rate": report.success_rate,
            "ci95": [lo, hi], "seeds": [report.seeds[0], report.seeds[-1]],
            "mean_max_dense_reward": report.mean_max_dense_reward, "success_flags": report.success_flags}
