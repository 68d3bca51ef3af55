"""The self-improvement rounds, top to bottom, resumable at every step.

    demos -> train-0 -> eval-0 -> [calibration] -> [judge-train] ->
    for r in 1..R: rollouts-r -> judge-r -> train-r -> eval-r   (report after each round)

(on a robot eval-0 comes after judge-train: its verdicts need the judge)

The env is the config's `env` section (app.env_choice): ManiSkill or a robot.

- demos: motion-planning demonstrations (simulation), or the successful
  episodes of an existing store (`demos.source: store`), into OUT/store
  (source "demo");
- train-r: round 0 trains the base policy on the demonstrations; round r >= 1
  fine-tunes round r-1's checkpoint on the selection (recordings.selection);
- eval-r: the simulator's success rate of round r's policy on the same
  `eval.episodes` fresh seeds every round (paired), with a 95% interval;
  on a robot (no oracle) `eval.episodes` rollouts of round r's policy
  through the same `run_rollout` (phase "eval", slots like rollouts, in
  OUT/eval-store so that no selection ever trains on them), each judged by
  the operator's verdict where given, else the LRM's;
- calibration (optional): base-policy rollouts on their own seeds, every frame
  rendered, labelled by the oracle (sim) or the operator, for the judge only;
- judge-train: the compact completion model trained on the demonstrations
  (and calibration episodes), never on a rollout it judges;
- rollouts-r: N episodes of round r-1's policy through `app.rollout.run_rollout`
  (the function the operator UI drives), recorded as they happen, tagged
  round r and slot i (seed rollout_seed + (r-1) N + i, moved by the run seed: config.RUN_SEED_STRIDES);
- judge-r: the completion verdict and score of every rollout of round r,
  written into the episode's attributes next to the operator's verdict and
  the oracle's flag, at the threshold the judge's precision floor allows
  (app.improve.rules, rule 1: measured first on the held-out calibration
  episodes; a round whose judge cannot reach the floor skips its selection:
  train-r then trains nothing and round r's policy is the one it started from);
- after eval-r (app.improve.rules, rule 2): a policy significantly worse than
  the best so far on the same seeds is not carried forward: round r+1 rolls
  out and fine-tunes the best checkpoint instead. Both decisions are recorded
  in the step's state (judge-r's `calibration_check`, eval-r's `carry`), so
  a resumed run follows them.

Metrics: after each round, its row (app.improve.report.round_metrics: success,
the judge's precision / recall, kept counts, timings) goes to the run's
tracker (`report_to`: OUT/metrics.jsonl, TensorBoard, W&B; common.tracking),
step = the round; each round's trainer reports into OUT/policy/round-<r>.

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
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from app.env_choice import build_env, camera_sizes, episode_fields
from app.errors import UsageError
from app.improve.config import ImproveConfig
from app.improve.judge import (calibration_label, held_out_calibration, held_out_scores, load_judge,
                               train_judge)
from app.improve.report import build_report, judged_success, phase_records, round_metrics, write_report
from app.improve.round import (
    EmergencyStop,
    done_slots,
    evaluate_round,
    finetune,
    judge_rollout,
    rollout_slot,
    unjudged,
)
from app.improve.rules import carry_forward, check_threshold
from app.improve.state import RunState, in_run, run_path
from app.rollout import RolloutConfig, RolloutControl
from common.outputs import remove_output_dir
from common.progress import progress_bar
from common.tracking import Tracker, make_tracker, read_rows
from policies.base import Policy
from recordings.selection import EpisodeFilter, select_for_round, selection_for_round
from recordings.store import EpisodeStore
from sim.env import Env
from app.improve.demos import copy_demos, planned_store_path, replay_demos
from common.config import config_to_dict

log = logging.getLogger(__name__)

__all__ = ["EmergencyStop", "ImproveRun", "reset_run"]

Events = Callable[[str, dict[str, Any]], None]
EVAL_STORE = "eval-store"


class ImproveRun:
    """One run directory: `run()` does (or finishes) every step and returns the report.

    `events(name, info)` is called at step boundaries and after every rollout
    step, rollout and verdict (for progress display, and for the tests that
    kill the process at a chosen point). `control` is handed to every rollout
    (an operator UI pauses, aborts or re-records through it).
    """

    def __init__(self, config: ImproveConfig, *, events: Events | None = None,
                 control: RolloutControl | None = None, env_factory: Callable[[Any], Any] = build_env) -> None:
        self.config = config
        self.env_factory = env_factory  # EnvSection -> env (a test or a UI may wrap or reuse the env)
        self.out = Path(config.output_dir)
        self.events = events or (lambda name, info: None)
        self.control = control or RolloutControl()
        self.state: RunState | None = None
        self.store: EpisodeStore | None = None
        self.env: Env | None = None
        self.eval_store: EpisodeStore | None = None  # robot runs: OUT/eval-store
        self._judge_model: Any = None
        self._held_out: tuple[list[int], list[list[float]], list[Any]] | None = None  # _held_out_calibration's
        self.tracker: Tracker | None = None
        self._logged_rounds: set[int] = set()

    # -- the whole run -------------------------------------------------------------------------

    def run(self) -> dict[str, Any]:
        cfg = self.config
        if cfg.num_threads:
            import torch

            torch.set_num_threads(cfg.num_threads)
        self.state = RunState.load_or_create(self.out, cfg.fingerprint())
        self._open_tracker()
        try:
            return self._run()
        finally:
            self.tracker.close()
            self.tracker = None

    def _open_tracker(self) -> None:
        """The run's tracker; rows of rounds not finished (by state.json) are dropped, to be logged again."""
        finished = [r for r in range(self.config.rounds + 1) if self.state.done(f"eval-{r}")]
        last = max(finished, default=-1)
        self.tracker = make_tracker(self.config.report_to, self.out, run_name=f"improve-{self.out.name}",
                                    config=config_to_dict(self.config), resume_step=last)
        # finished rounds were logged when they finished (a run killed in between logs them now, from the JSONL)
        logged = {r.get("step") for r in read_rows(self.tracker.path)} if "jsonl" in self.tracker.report_to else set(finished)
        self._logged_rounds = {r for r in finished if r in logged}

    def _run(self) -> dict[str, Any]:
        cfg = self.config
        if all(self.state.done(step) for step in self.steps()):
            log.info("%s: every step is done; the report again", self.out)
            with EpisodeStore.open(self.out / "store", mode="r") as self.store:
                if (self.out / EVAL_STORE).is_dir():
                    with EpisodeStore.open(self.out / EVAL_STORE, mode="r") as self.eval_store:
                        return self._write_report()
                return self._write_report()
        robot = cfg.env.is_robot
        self.env = self.env_factory(cfg.env)
        try:
            cameras = camera_sizes(cfg.env, self.env)
            self.store = EpisodeStore.open(self.out / "store", mode="a", durable=cfg.durable)
            if self.store.cameras and self.store.cameras != cameras:
                raise UsageError(f"{self.out / 'store'} holds cameras {self.store.cameras}, the env gives {cameras}")
            if robot:
                self.eval_store = EpisodeStore.open(self.out / EVAL_STORE, mode="a", durable=cfg.durable)
            self._step("demos", self._demos)
            self._step("train-0", lambda: self._train(0))
            if not robot:
                self._step("eval-0", lambda: self._eval(0))
            if cfg.judge.calibration_episodes:
                self._step("calibration", self._calibration)
            if cfg.judge.train_from_store:
                self._step("judge-train", self._judge_train)
            if robot:
                self._step("eval-0", lambda: self._eval(0))
            self._write_report()
            for r in range(1, cfg.rounds + 1):
                self._step(f"rollouts-{r}", lambda r=r: self._rollouts(r))
                self._step(f"judge-{r}", lambda r=r: self._judge(r))
                self._step(f"train-{r}", lambda r=r: self._train(r))
                self._step(f"eval-{r}", lambda r=r: self._eval(r))
                self._write_report()
            return self._write_report()
        finally:
            for store in (self.store, self.eval_store):
                if store is not None:
                    store.close()
            self.store = self.eval_store = None
            self.env.close()

    def steps(self) -> list[str]:
        """Every step of the run, in order (the names in state.json)."""
        cfg = self.config
        names = ["demos", "train-0"] + ([] if cfg.env.is_robot else ["eval-0"])
        names += ["calibration"] if cfg.judge.calibration_episodes else []
        names += ["judge-train"] if cfg.judge.train_from_store else []
        names += ["eval-0"] if cfg.env.is_robot else []
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
        report = build_report(self.config, self.state.steps, self.store, self.eval_store)
        write_report(report, self.out)
        self._log_rounds(report)
        return report

    def _log_rounds(self, report: dict[str, Any]) -> None:
        """Each finished round's metrics to the tracker, once (app.improve.report.round_metrics)."""
        if self.tracker is None:
            return
        for r in range(self.config.rounds + 1):
            if r in self._logged_rounds:
                continue
            row = round_metrics(report, self.state.steps, r)
            if row is None:
                break  # rounds finish in order
            self.tracker.log({k: v for k, v in row.items() if k != "round"}, r)
            self._logged_rounds.add(r)

    # -- steps -----------------------------------------------------------------------------------

    def _demos(self) -> dict[str, Any]:
        """Plan the missing demonstrations without cameras, then replay them into the store (app.improve.demos).

        A resumed run counts what both stores already hold: nothing is planned or replayed twice.
        """
        from sim.demos import config_hash, record_demos

        cfg = self.config
        if cfg.demos.source == "store":
            return self._copy_demos()
        sim = cfg.env.sim
        path = planned_store_path(self.out)
        plan_env = dataclasses.replace(sim, cameras=[])
        first_seed = cfg.seed_of("demos")
        have, next_seed = 0, first_seed
        if path.exists():
            with EpisodeStore.open(path, mode="a", durable=cfg.durable) as planned:  # 'a' repairs a torn tail
                demos = planned.episodes(source="demo", oracle_success=True)
                have = len(demos)
                next_seed = max([first_seed - 1, *(r.meta.seed for r in planned.episodes())]) + 1
        missing = cfg.demos.count - have
        if missing > 0:
            report = record_demos(sim.env_id, missing, path, seed=next_seed, env_config=plan_env,
                                  max_attempts=cfg.demos.max_attempts, hold_steps=cfg.demos.hold_steps,
                                  progress=cfg.progress)
            if not report.complete:
                raise UsageError(f"only {have + report.successes} of {cfg.demos.count} demonstrations succeeded "
                                 f"({report.attempts} attempts); lower demos.count or raise demos.max_attempts")
        dataset = cfg.judge.train.dataset
        with EpisodeStore.open(path, mode="r") as planned:
            replay_demos(planned, self.store, self.env, env_id=sim.env_id, config_hash=config_hash(sim),
                         num_keyframes=dataset.num_keyframes, clip_fractions=list(dataset.clip_fractions),
                         every_frame=cfg.demos.render == "every_frame", events=self.events, progress=cfg.progress)
        demos = self.store.episodes(source="demo")
        return {"demos": len(demos), "frames": sum(r.length for r in demos),
                "replay_failures": sum(not r.meta.oracle_success for r in demos),
                "seeds": [r.meta.seed for r in demos]}

    def _copy_demos(self) -> dict[str, Any]:
        """The successful episodes of `demos.store` into the run's store (app.improve.demos.copy_demos)."""

        cfg = self.config
        try:
            return copy_demos(Path(cfg.demos.store), self.store, self.env, camera_sizes(cfg.env, self.env),
                              count=cfg.demos.count, episode_fields=episode_fields(cfg.env, self.env),
                              events=self.events)
        except ValueError as exc:
            raise UsageError(str(exc)) from None

    def _policy_dir(self, round_: int) -> Path:
        return self.out / "policy" / f"round-{round_}"

    def _checkpoint(self, round_: int) -> Path:
        """Round r's policy: what train-r recorded (a skipped round records the checkpoint it started from)."""
        trained = self.state.get(f"train-{round_}") if self.state is not None else None
        if trained and trained.get("checkpoint"):
            return run_path(trained["checkpoint"], self.out)
        return self._policy_dir(round_) / "checkpoints" / "last"

    def _start_round(self, round_: int) -> int:
        """The round whose policy round r (>= 1) rolls out and fine-tunes: r-1, unless eval-(r-1) did not carry it."""
        carry = (self.state.get(f"eval-{round_ - 1}") or {}).get("carry") or {}
        return int(carry.get("next_from", round_ - 1))

    def _skipped_rounds(self, upto: int) -> list[int]:
        """Rounds up to `upto` whose selection the judge's precision floor skipped (judge-r's calibration check).

        Only a selection that follows the judge's verdicts is skipped (an oracle-selection ablation that reuses
        a judged run's state trains as it would have)."""
        if self.config.selection.rollouts != "accepted":
            return []
        return [r for r in range(1, upto + 1)
                if ((self.state.get(f"judge-{r}") or {}).get("calibration_check") or {}).get("action") == "skip"]

    def _train(self, round_: int) -> dict[str, Any]:
        cfg = self.config
        if round_ == 0:
            indices = [r.index for r in self.store.episodes(source="demo")]
            select, counts = [EpisodeFilter(source=["demo"])], {"demos": len(indices), "rollouts": 0}
            init_from = None
        else:
            start = self._start_round(round_)
            init_from = self._checkpoint(start)
            if round_ in self._skipped_rounds(round_):
                log.info("round %d: selection skipped (the judge is below judge.min_precision); no fine-tuning, "
                         "round %d's policy is round %d's", round_, round_, start)
                start_checkpoint = in_run(init_from, self.out)
                return {"skipped": "the judge's precision on held-out calibration episodes is below the floor",
                        "checkpoint": start_checkpoint, "train_loss": None, "selected": {"demos": 0, "rollouts": 0},
                        "episodes": [], "init_from": start_checkpoint, "start_round": start}
            skipped = self._skipped_rounds(round_)
            indices, counts = select_for_round(self.store, cfg.selection, round_, skipped)
            select = selection_for_round(cfg.selection, round_, skipped)
        log.info("round %d: training on %d demonstrations + %d rollouts", round_, counts["demos"], counts["rollouts"])
        trained = finetune(cfg.policy, self.out / "store", self._policy_dir(round_), round_=round_, select=select,
                           init_from=init_from, num_threads=cfg.num_threads, progress=cfg.progress,
                           report_to=cfg.report_to, seed_offset=cfg.seed)
        # paths relative to the run directory (app.improve.state.in_run): the run can be moved or copied
        return {**trained, "checkpoint": in_run(trained["checkpoint"], self.out), "selected": counts,
                "episodes": indices, "init_from": None if init_from is None else in_run(init_from, self.out),
                **({} if round_ == 0 else {"start_round": self._start_round(round_)})}

    def _load_policy(self, round_: int) -> Policy:
        return self.config.policy.load(self._checkpoint(round_))

    def _eval(self, round_: int) -> dict[str, Any]:
        cfg = self.config
        if cfg.eval.episodes == 0:
            return {"episodes": 0}
        if cfg.env.is_robot:
            info = self._eval_rollouts(round_)
        else:
            info = evaluate_round(self._load_policy(round_), cfg.env.sim, episodes=cfg.eval.episodes,
                                  seed=cfg.eval.seed, max_steps=cfg.eval.max_steps or cfg.rollout.max_steps,
                                  round_=round_, progress=cfg.progress)
        if round_ >= 1:
            info["carry"] = self._carry(round_, info)
        return info

    def _carry(self, round_: int, info: dict[str, Any]) -> dict[str, Any]:
        """Rule 2 (app.improve.rules.carry_forward) against every earlier round's evaluation; a line if not carried."""
        earlier = {r: self.state.get(f"eval-{r}") or {} for r in range(round_)}
        carry = carry_forward(earlier, round_, info, alpha=self.config.eval.regression_alpha)
        if not carry["carried_forward"]:
            test = carry["vs_best"]
            log.warning("round %d: not carried forward: significantly worse than round %d on the same %d seeds "
                        "(%d gained, %d lost; exact McNemar p = %.3g < %g); round %d starts from round %d's checkpoint",
                        round_, carry["best_round"], test["seeds"], test["gained"], test["lost"], test["p_value"],
                        test["alpha"], round_ + 1, carry["next_from"])
        return carry

    def _eval_rollouts(self, round_: int) -> dict[str, Any]:
        """Robot evaluation: rollouts of round r's policy into OUT/eval-store, judged (operator over LRM)."""
        cfg = self.config
        rollout = dataclasses.replace(cfg.rollout, max_steps=cfg.eval.max_steps or cfg.rollout.max_steps)
        info = self._run_slots(round_, "eval", cfg.eval.episodes, cfg.eval.seed, round_, rollout, store=self.eval_store)
        self._judge_records(self.eval_store, round_, "eval")
        return {**judged_success(phase_records(self.eval_store, round_, "eval")), "indices": info["indices"],
                "store": EVAL_STORE}

    def _run_slots(self, round_: int, phase: str, n: int, seed0: int, policy_round: int, rollout_cfg: RolloutConfig,
                   store: EpisodeStore | None = None, stop_check: Any = None) -> dict[str, Any]:
        """Roll out slots 0..n-1 that have no committed episode yet; a re-recorded slot runs again."""
        cfg = self.config
        store = store if store is not None else self.store
        fields = episode_fields(cfg.env, self.env)
        done = done_slots(store, round_, phase)
        todo = [i for i in range(n) if i not in done]
        if done:
            log.info("%s round %d: %d of %d rollouts committed earlier; %d to go", phase, round_, len(done), n, len(todo))
        policy = self._load_policy(policy_round) if todo else None
        if policy is not None and hasattr(policy, "set_action_bounds") and hasattr(self.env, "action_space"):
            policy.set_action_bounds(self.env.action_space.low, self.env.action_space.high)
        noise = cfg.exploration.parameter_noise if phase in ("calibration", "rollout") else 0.0
        bar = _bar(len(todo), f"{phase} round {round_}", cfg.progress)
        try:
            for slot in todo:
                def on_step(event: Any, slot: int = slot) -> None:
                    self.events("rollout-step", {"round": round_, "phase": phase, "slot": slot, "step": event.step})

                acting, extra = policy, None
                if noise:  # the slot's own explorer: a resumed run rolls out the same one
                    acting = policy.perturbed(noise, seed0 + slot)
                    extra = {"exploration": {"parameter_noise": noise, "seed": seed0 + slot}}
                while True:
                    result = rollout_slot(self.env, acting, store, round_=round_, phase=phase, slot=slot,
                                          seed=seed0 + slot, policy_id=f"round-{policy_round}", fields=fields,
                                          run=self.state.fingerprint, rollout=rollout_cfg, control=self.control,
                                          on_step=on_step, stop_check=stop_check, extra=extra)
                    if result.status != "discarded":
                        break
                    log.info("slot %d re-recorded by the operator", slot)
                self.events("rollout-done", {"round": round_, "phase": phase, "slot": slot, "index": result.index,
                                             "oracle_success": result.oracle_success})
                bar.update(1)
        finally:
            bar.close()
        records = phase_records(store, round_, phase)
        return {"episodes": len(records), "indices": [r.index for r in records],
                "aborted": sum(r.meta.aborted for r in records),
                **({} if cfg.env.is_robot else {"oracle_successes": sum(bool(r.meta.oracle_success) for r in records)}),
                "frames": sum(r.length for r in records)}

    def _rollouts(self, round_: int) -> dict[str, Any]:
        cfg = self.config
        n = cfg.rollouts_per_round
        rollout, watch = cfg.rollout, None
        if cfg.judge.watch_every:
            from app.improve.judge import judge_cameras, watcher

            rollout = dataclasses.replace(rollout, render_every=cfg.judge.watch_every)
            watch = watcher(self._judge_backend(), cfg.judge, judge_cameras(cfg.judge, self.store), self.env.task)
        return self._run_slots(round_, "rollout", n, cfg.seed_of("rollouts") + (round_ - 1) * n, self._start_round(round_),
                               rollout, stop_check=watch)

    def _calibration(self) -> dict[str, Any]:
        """Base-policy rollouts on their own seeds, for the judge's training only (never selected, never judged)."""
        cfg = self.config
        # a watching judge is asked about any frame of a rollout: it learns from frames all along calibration ones
        rollout = dataclasses.replace(cfg.rollout, render_every=cfg.judge.watch_every)
        info = self._run_slots(0, "calibration", cfg.judge.calibration_episodes, cfg.seed_of("calibration"), 0,
                                 rollout)
        if cfg.judge.calibration_labels == "operator":
            for index in self._unlabelled(info["indices"]):
                # an operator at hand (`improve --operator`) labels episodes recorded before they were there
                slot = self.store.record(index).meta.extra["improve"]["slot"]
                self.events("unlabelled", {"phase": "calibration", "round": 0, "slot": slot, "index": index})
            unlabelled = self._unlabelled(info["indices"])
            if unlabelled:
                raise UsageError(f"calibration episodes {unlabelled[:5]} have no operator verdict yet; label them "
                                 "(lrm-robot improve --operator, or the operator UI) and run the same command again")
        return info

    def _unlabelled(self, indices: list[int]) -> list[int]:
        metas = {i: self.store.record(i).meta for i in indices}
        return [i for i, m in metas.items() if not m.aborted and m.operator_verdict is None]

    def _judge_train(self) -> dict[str, Any]:
        cfg = self.config
        demos = [r.index for r in self.store.episodes(source="demo", aborted=False)]
        calibration = [r.index for r in self.store.episodes(round=0, aborted=False)
                       if (r.meta.extra.get("improve") or {}).get("phase") == "calibration"]
        try:
            info = train_judge(self.store, demos, calibration, cfg.run_judge(), self.out / "judge",
                               label_source=cfg.judge.calibration_labels,
                               held_demos=cfg.demos.source == "plan" and cfg.demos.hold_steps > 0,
                               progress=cfg.progress)
            return {**info, "checkpoint": in_run(info["checkpoint"], self.out)}
        except ValueError as exc:
            raise UsageError(f"training the judge: {exc}") from None

    def _judge_backend(self) -> Any:
        if self._judge_model is None:
            if self.config.judge.train_from_store:
                self._judge_model = load_judge(self.config.judge, self.out / "judge")
            else:
                from lrm.backends import make_reward_backend

                self._judge_model = make_reward_backend(self.config.judge.backend)
        return self._judge_model

    def _judge(self, round_: int) -> dict[str, Any]:
        """A verdict for every rollout of the round that has none yet (a resumed run skips the judged ones),
        at the threshold the precision floor allows (`_calibration_check`)."""
        check = self._calibration_check(round_)
        judge = dataclasses.replace(self.config.judge, threshold=check["threshold"])
        judged = self._judge_records(self.store, round_, "rollout", judge)
        return {"judged": len(judged), "accepted_by_lrm": sum(bool(m.lrm_verdict) for m in judged),
                "mean_score": float(np.mean([m.lrm_score for m in judged])) if judged else None,
                "calibration_check": check}

    def _calibration_check(self, round_: int) -> dict[str, Any]:
        """Rule 1 (app.improve.rules.check_threshold) on the held-out calibration episodes, said in one line or two.

        Recomputed when a killed judge step runs again: the same judge on the same episodes gives the same answer.
        """
        cfg = self.config
        held_out, scores, labels = self._held_out_calibration()
        check = check_threshold(scores, labels, how=cfg.judge.combine, threshold=cfg.judge.threshold,
                                floor=cfg.judge.min_precision)
        check["held_out"] = held_out
        pct = lambda x: "n/a" if x is None else f"{100 * x:.1f}%"  # noqa: E731
        log.info("round %d judge: precision %s, recall %s on %d held-out calibration episodes (%d successes) at "
                 "threshold %g; floor %s", round_, pct(check["precision"]), pct(check["recall"]), len(held_out),
                 check["successes"], cfg.judge.threshold, pct(cfg.judge.min_precision))
        if cfg.selection.rollouts != "accepted" and check["action"] != "kept":
            # the selection does not follow the judge: nothing to guard
            log.info("round %d: selection.rollouts is %s, not the judge's verdicts: the floor changes nothing",
                     round_, cfg.selection.rollouts)
            check.update(action="kept", threshold=cfg.judge.threshold,
                         reason=f"selection.rollouts: {cfg.selection.rollouts} does not follow the judge")
        elif check["action"] == "raised":
            log.warning("round %d: the judge's precision %s is below judge.min_precision %s: threshold raised from %g "
                        "to %.4g (precision %s, recall %s there)", round_, pct(check["precision"]),
                        pct(cfg.judge.min_precision), cfg.judge.threshold, check["threshold"],
                        pct(check["precision_after"]), pct(check["recall_after"]))
        elif check["action"] == "skip":
            log.warning("round %d: the judge's precision %s is below judge.min_precision %s and no higher threshold "
                        "reaches it with a kept calibration success: round %d's selection is skipped (no fine-tuning "
                        "on judged rollouts)", round_, pct(check["precision"]), pct(cfg.judge.min_precision), round_)
        return check

    def _held_out_calibration(self) -> tuple[list[int], list[list[float]], list[Any]]:
        """(held-out calibration episodes, the judge's frame scores of each, their labels): the same every round
        of a run (one judge, calibration done before round 1), so scored once per process."""
        if self._held_out is None:
            cfg = self.config
            calibration = [r.index for r in phase_records(self.store, 0, "calibration") if not r.meta.aborted]
            held_out = held_out_calibration(self.store, calibration, cfg.run_judge(), cfg.judge.calibration_labels)
            scores = held_out_scores(self._judge_backend(), self.store, held_out, cfg.judge) if held_out else []
            labels = [calibration_label(self.store, i, cfg.judge.calibration_labels) for i in held_out]
            self._held_out = (held_out, scores, labels)
        return self._held_out

    def _judge_records(self, store: EpisodeStore, round_: int, phase: str, judge: Any = None) -> list[Any]:
        """Judge the round's unaborted episodes of `phase` that have no verdict yet; returns all their metas."""
        records, todo = unjudged(store, round_, phase)
        model = self._judge_backend() if todo else None
        for rec in todo:
            meta = judge_rollout(store, rec.index, model, judge or self.config.judge, self._judge_provenance())
            self.events("judged", {"round": round_, "phase": phase, "index": rec.index, "accepted": meta.lrm_verdict})
        return [store.record(r.index).meta for r in records]

    def _judge_provenance(self) -> dict[str, Any]:
        backend = self.config.judge.backend
        if self.config.judge.train_from_store:
            return {"backend": "lite", "checkpoint": str(self.out / "judge")}
        return backend.describe()


def _bar(total: int, desc: str, enabled: bool) -> Any:
    return progress_bar(total, desc=desc, unit="ep", enabled=enabled and total > 0)


def reset_run(out: Path) -> None:
    """Delete a run directory (the CLI's --fresh) if lrm-robot made it; FileError naming it otherwise."""
    remove_output_dir(out, "--fresh: output_dir")
