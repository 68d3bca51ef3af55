"""The self-improvement rounds, top to bottom, resumable at every step.

    demos -> train-0 -> eval-0 -> [calibration] -> [judge-train] ->
    for r in 1..R: rollouts-r -> judge-r -> train-r -> eval-r   (report after each round)

- demos: motion-planning demonstrations into OUT/store (source "demo");
- train-r: round 0 trains the base policy on the demonstrations; round r >= 1
  fine-tunes round r-1's checkpoint on the selection (app.improve.selection);
- eval-r: the simulator's success rate of round r's policy on the same
  `eval.episodes` fresh seeds every round (paired), with a 95% interval;
- calibration (optional): base-policy rollouts on their own seeds, every frame
  rendered, labelled by the oracle (sim) or the operator, for the judge only;
- judge-train: the compact completion model trained on the demonstrations
  (and calibration episodes), never on a rollout it judges;
- rollouts-r: N episodes of round r-1's policy through `app.rollout.run_rollout`
  (the function the operator UI drives), recorded as they happen, tagged
  round r and slot i (seed rollout_seed + (r-1) N + i);
- judge-r: the completion verdict and score of every rollout of round r,
  written into the episode's attributes next to the operator's verdict and
  the oracle's flag.

Resume: OUT/state.json (app.improve.state) lists the finished steps. An
unfinished step continues from what is on disk: demos and rollouts already
committed in the store are counted, not redone (a slot is done when a
committed episode carries its round and slot; the store discards the torn
tail of an episode killed mid-recording), the judge skips episodes that have
a verdict, training resumes from the trainer's checkpoint. So the same
command, run again after Ctrl-C or SIGKILL, continues where it stopped and
never duplicates an episode.
"""

from __future__ import annotations

import dataclasses
import logging
import shutil
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from app.errors import UsageError
from app.improve.config import CALIBRATION_SEED, ImproveConfig
from app.improve.judge import judge_episode, train_judge
from app.improve.report import build_report, write_report
from app.improve.selection import select_for_round
from app.improve.state import RunState
from app.rollout import RolloutControl, run_rollout
from recordings.episode import EpisodeMeta

log = logging.getLogger(__name__)

__all__ = ["EmergencyStop", "ImproveRun"]

Events = Callable[[str, dict[str, Any]], None]


class EmergencyStop(UsageError):
    """The operator stopped everything; the run continues from here when started again."""


class ImproveRun:
    """One run directory: `run()` does (or finishes) every step and returns the report.

    `events(name, info)` is called at step boundaries and after every rollout
    step, rollout and verdict (for progress display, and for the tests that
    kill the process at a chosen point). `control` is handed to every rollout
    (an operator UI pauses, aborts or re-records through it).
    """

    def __init__(self, config: ImproveConfig, *, events: Events | None = None,
                 control: RolloutControl | None = None) -> None:
        self.config = config
        self.out = Path(config.output_dir)
        self.events = events or (lambda name, info: None)
        self.control = control or RolloutControl()
        self.state: RunState | None = None
        self.store: Any = None
        self.env: Any = None
        self._judge_model: Any = None

    # -- the whole run -------------------------------------------------------------------------

    def run(self) -> dict[str, Any]:
        cfg = self.config
        if cfg.num_threads:
            import torch

            torch.set_num_threads(cfg.num_threads)
        self.state = RunState.load_or_create(self.out, cfg.fingerprint())
        from recordings.store import EpisodeStore
        from sim.maniskill_env import make_sim_env

        if all(self.state.done(step) for step in self.steps()):
            log.info("%s: every step is done; the report again", self.out)
            with EpisodeStore.open(self.out / "store", mode="r") as self.store:
                return self._write_report()
        self.env = make_sim_env(cfg.env)
        try:
            cameras = {n: (cfg.env.camera_height, cfg.env.camera_width) for n in self.env.camera_names}
            self.store = EpisodeStore.open(self.out / "store", mode="a", durable=cfg.durable)
            if self.store.cameras and self.store.cameras != cameras:
                raise UsageError(f"{self.out / 'store'} holds cameras {self.store.cameras}, env.cameras gives {cameras}")
            self._step("demos", self._demos)
            self._step("train-0", lambda: self._train(0))
            self._step("eval-0", lambda: self._eval(0))
            if cfg.judge.calibration_episodes:
                self._step("calibration", self._calibration)
            if cfg.judge.train_from_store:
                self._step("judge-train", self._judge_train)
            self._write_report()
            for r in range(1, cfg.rounds + 1):
                self._step(f"rollouts-{r}", lambda r=r: self._rollouts(r))
                self._step(f"judge-{r}", lambda r=r: self._judge(r))
                self._step(f"train-{r}", lambda r=r: self._train(r))
                self._step(f"eval-{r}", lambda r=r: self._eval(r))
                self._write_report()
            return self._write_report()
        finally:
            if self.store is not None:
                self.store.close()
                self.store = None
            self.env.close()

    def steps(self) -> list[str]:
        """Every step of the run, in order (the names in state.json)."""
        cfg = self.config
        names = ["demos", "train-0", "eval-0"]
        names += ["calibration"] if cfg.judge.calibration_episodes else []
        names += ["judge-train"] if cfg.judge.train_from_store else []
        for r in range(1, cfg.rounds + 1):
            names += [f"rollouts-{r}", f"judge-{r}", f"train-{r}", f"eval-{r}"]
        return names

    def _step(self, name: str, body: Callable[[], dict[str, Any]]) -> None:
        assert self.state is not None
        if self.state.done(name):
            log.info("%s: done earlier", name)
            return
        self.events("step-start", {"step": name})
        log.info("%s ...", name)
        started = time.perf_counter()
        info = body()
        info["seconds"] = round(time.perf_counter() - started, 2)
        self.state.mark(name, info)
        log.info("%s: done in %.1f s", name, info["seconds"])
        self.events("step-done", {"step": name, **info})

    def _write_report(self) -> dict[str, Any]:
        report = build_report(self.config, self.state.steps, self.store)
        write_report(report, self.out)
        return report

    # -- steps -----------------------------------------------------------------------------------

    def _demos(self) -> dict[str, Any]:
        """Plan the missing demonstrations without cameras, then replay them into the store (app.improve.demos).

        A resumed run counts what both stores already hold: nothing is planned or replayed twice.
        """
        from app.improve.demos import planned_store_path, replay_demos
        from recordings.store import EpisodeStore
        from sim.demos import config_hash, record_demos

        cfg = self.config
        path = planned_store_path(self.out)
        plan_env = dataclasses.replace(cfg.env, cameras=[])
        have, next_seed = 0, cfg.demos.seed
        if path.exists():
            with EpisodeStore.open(path, mode="a", durable=cfg.durable) as planned:  # 'a' repairs a torn tail
                demos = planned.episodes(source="demo", oracle_success=True)
                have = len(demos)
                next_seed = max([cfg.demos.seed - 1, *(r.meta.seed for r in planned.episodes())]) + 1
        missing = cfg.demos.count - have
        if missing > 0:
            report = record_demos(cfg.env.env_id, missing, path, seed=next_seed, env_config=plan_env,
                                  max_attempts=cfg.demos.max_attempts, progress=cfg.progress)
            if not report.complete:
                raise UsageError(f"only {have + report.successes} of {cfg.demos.count} demonstrations succeeded "
                                 f"({report.attempts} attempts); lower demos.count or raise demos.max_attempts")
        dataset = cfg.judge.train.dataset
        with EpisodeStore.open(path, mode="r") as planned:
            replay_demos(planned, self.store, self.env, env_id=cfg.env.env_id, config_hash=config_hash(cfg.env),
                         num_keyframes=dataset.num_keyframes, clip_fractions=list(dataset.clip_fractions),
                         every_frame=cfg.demos.render == "every_frame", events=self.events, progress=cfg.progress)
        demos = self.store.episodes(source="demo")
        return {"demos": len(demos), "frames": sum(r.length for r in demos),
                "replay_failures": sum(not r.meta.oracle_success for r in demos),
                "seeds": [r.meta.seed for r in demos]}

    def _policy_dir(self, round_: int) -> Path:
        return self.out / "policy" / f"round-{round_}"

    def _checkpoint(self, round_: int) -> Path:
        return self._policy_dir(round_) / "checkpoints" / "last"

    def _train(self, round_: int) -> dict[str, Any]:
        from policies.train import EpisodeFilter

        cfg = self.config
        out = self._policy_dir(round_)
        if round_ == 0:
            indices = [r.index for r in self.store.episodes(source="demo")]
            select, counts = [EpisodeFilter(source=["demo"])], {"demos": len(indices), "rollouts": 0}
            init_from = None
        else:
            from app.improve.selection import selection_clauses

            indices, counts = select_for_round(self.store, cfg.selection, round_)
            select = selection_clauses(cfg.selection, round_)
            init_from = self._checkpoint(round_ - 1)
        train_cfg = cfg.policy.train_config(self.out / "store", out, select, round_=round_, init_from=init_from)
        train_cfg.resume = (out / "checkpoints" / "last" / "training_state.pt").is_file()
        if hasattr(train_cfg, "num_threads") and train_cfg.num_threads is None:
            train_cfg.num_threads = cfg.num_threads
        train_cfg.progress = cfg.progress
        log.info("round %d: training on %d demonstrations + %d rollouts", round_, counts["demos"], counts["rollouts"])
        if cfg.policy.type == "bc":
            from policies.train import train_bc

            result = train_bc(train_cfg)
            loss = result.report.train_loss
        else:
            from policies.pi05_train import finetune_pi05

            result = finetune_pi05(train_cfg)
            loss = result.train_loss
        return {"checkpoint": str(result.checkpoint), "selected": counts, "episodes": indices,
                "init_from": None if init_from is None else str(init_from), "train_loss": loss}

    def _load_policy(self, round_: int) -> Any:
        ckpt = self._checkpoint(round_)
        if self.config.policy.type == "pi05":
            from policies.pi05 import Pi05Config, make_policy

            runtime = self.config.policy.runtime or Pi05Config()
            return make_policy(dataclasses.replace(runtime, pretrained=str(ckpt)))
        from policies.evaluate import load_policy

        return load_policy(ckpt)

    def _eval(self, round_: int) -> dict[str, Any]:
        from policies.evaluate import evaluate_policy

        cfg = self.config
        if cfg.eval.episodes == 0:
            return {"episodes": 0}
        report = evaluate_policy(
            self._load_policy(round_), cfg.env, cfg.eval.episodes, seed=cfg.eval.seed,
            max_steps=cfg.eval.max_steps or cfg.rollout.max_steps, policy_id=f"round-{round_}",
            progress=cfg.progress,
        )
        lo, hi = report.ci95
        return {"episodes": report.episodes, "successes": report.successes, "success_rate": report.success_rate,
                "ci95": [lo, hi], "seeds": [report.seeds[0], report.seeds[-1]],
                "mean_max_dense_reward": report.mean_max_dense_reward, "success_flags": report.success_flags}

    def _done_slots(self, round_: int, phase: str) -> set[int]:
        done = set()
        for rec in self.store.episodes(round=round_):
            tag = rec.meta.extra.get("improve") or {}
            if tag.get("phase") == phase:
                done.add(int(tag["slot"]))
        return done

    def _run_slots(self, round_: int, phase: str, n: int, seed0: int, policy_round: int, rollout_cfg: Any) -> dict[str, Any]:
        """Roll out slots 0..n-1 that have no committed episode yet; a re-recorded slot runs again."""
        from sim.demos import config_hash

        cfg = self.config
        done = self._done_slots(round_, phase)
        todo = [i for i in range(n) if i not in done]
        if done:
            log.info("%s round %d: %d of %d rollouts committed earlier; %d to go", phase, round_, len(done), n, len(todo))
        policy = self._load_policy(policy_round) if todo else None
        if policy is not None and hasattr(policy, "set_action_bounds"):
            policy.set_action_bounds(self.env.action_space.low, self.env.action_space.high)
        bar = _bar(len(todo), f"{phase} round {round_}", cfg.progress)
        try:
            for slot in todo:
                while True:
                    meta = EpisodeMeta(
                        task=self.env.task, source="sim", env_id=cfg.env.env_id, policy_id=f"round-{policy_round}",
                        round=round_, config_hash=config_hash(cfg.env),
                        extra={"improve": {"phase": phase, "slot": slot, "run": self.state.fingerprint},
                               "state_mode": cfg.env.state_mode, "control_mode": cfg.env.control_mode},
                    )

                    def on_step(event: Any, slot: int = slot) -> None:
                        self.events("rollout-step", {"round": round_, "phase": phase, "slot": slot, "step": event.step})

                    result = run_rollout(self.env, policy, self.store, meta, config=rollout_cfg, seed=seed0 + slot,
                                         control=self.control, on_step=on_step)
                    if result.status == "emergency_stop":
                        raise EmergencyStop(f"emergency stop during {phase} round {round_} slot {slot}: "
                                            f"{result.reason}; run the same command to continue")
                    if result.status != "discarded":
                        break
                    log.info("slot %d re-recorded by the operator", slot)
                self.events("rollout-done", {"round": round_, "phase": phase, "slot": slot, "index": result.index,
                                             "oracle_success": result.oracle_success})
                bar.update(1)
        finally:
            bar.close()
        records = [r for r in self.store.episodes(round=round_)
                   if (r.meta.extra.get("improve") or {}).get("phase") == phase]
        return {"episodes": len(records), "indices": [r.index for r in records],
                "aborted": sum(r.meta.aborted for r in records),
                "oracle_successes": sum(bool(r.meta.oracle_success) for r in records),
                "frames": sum(r.length for r in records)}

    def _rollouts(self, round_: int) -> dict[str, Any]:
        cfg = self.config
        n = cfg.rollouts_per_round
        return self._run_slots(round_, "rollout", n, cfg.rollout_seed + (round_ - 1) * n, round_ - 1, cfg.rollout)

    def _calibration(self) -> dict[str, Any]:
        """Base-policy rollouts on their own seeds, for the judge's training only (never selected, never judged)."""
        cfg = self.config
        info = self._run_slots(0, "calibration", cfg.judge.calibration_episodes, CALIBRATION_SEED, 0, cfg.rollout)
        if cfg.judge.calibration_labels == "operator":
            unlabelled = [i for i in info["indices"] if self.store.record(i).meta.operator_verdict is None]
            if unlabelled:
                raise UsageError(f"calibration episodes {unlabelled[:5]} have no operator verdict yet; label them "
                                 "(operator UI) and run the same command again")
        return info

    def _judge_train(self) -> dict[str, Any]:
        cfg = self.config
        demos = [r.index for r in self.store.episodes(source="demo", aborted=False)]
        calibration = [r.index for r in self.store.episodes(round=0, aborted=False)
                       if (r.meta.extra.get("improve") or {}).get("phase") == "calibration"]
        try:
            return train_judge(self.store, demos, calibration, cfg.judge, self.out / "judge",
                               label_source=cfg.judge.calibration_labels)
        except ValueError as exc:
            raise UsageError(f"training the judge: {exc}") from None

    def _judge_backend(self) -> Any:
        if self._judge_model is None:
            from lrm.backends import make_reward_backend

            backend = self.config.judge.backend
            if self.config.judge.train_from_store:
                lite = dataclasses.replace(backend.lite, checkpoint=str(self.out / "judge"))
                backend = dataclasses.replace(backend, lite=lite)
            self._judge_model = make_reward_backend(backend)
        return self._judge_model

    def _judge(self, round_: int) -> dict[str, Any]:
        """A verdict for every rollout of the round that has none yet (a resumed run skips the judged ones)."""
        cfg = self.config.judge
        records = [r for r in self.store.episodes(round=round_, aborted=False)
                   if (r.meta.extra.get("improve") or {}).get("phase") == "rollout"]
        todo = [r for r in records if r.meta.lrm_verdict is None]
        if todo:
            model = self._judge_backend()
        for rec in todo:
            verdict = judge_episode(model, self.store, rec.index, cfg)
            extra = {**rec.meta.extra, "judge": {**verdict.to_json(), "combine": cfg.combine,
                                                 "threshold": cfg.threshold, **self._judge_provenance()}}
            self.store.update_meta(rec.index, lrm_verdict=bool(verdict.accepted), lrm_score=float(verdict.score),
                                   extra=extra)
            self.events("judged", {"round": round_, "index": rec.index, "accepted": verdict.accepted})
        judged = [self.store.record(r.index).meta for r in records]
        return {"judged": len(judged), "accepted_by_lrm": sum(bool(m.lrm_verdict) for m in judged),
                "mean_score": float(np.mean([m.lrm_score for m in judged])) if judged else None}

    def _judge_provenance(self) -> dict[str, Any]:
        backend = self.config.judge.backend
        if self.config.judge.train_from_store:
            return {"backend": "lite", "checkpoint": str(self.out / "judge")}
        return backend.describe()


def _bar(total: int, desc: str, enabled: bool) -> Any:
    from tqdm.auto import tqdm

    return tqdm(total=total, desc=desc, unit="ep", disable=not enabled or total == 0, dynamic_ncols=True)


def reset_run(out: Path) -> None:
    """Delete a run directory (the CLI's --restart)."""
    shutil.rmtree(out, ignore_errors=True)
