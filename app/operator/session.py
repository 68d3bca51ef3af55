"""The operator session: rounds of rollouts, verdicts, overrides and fine-tuning, with no UI in it.

`OperatorSession.run()` is the whole job and blocks; a UI runs it in a worker
thread and calls the command methods (`toggle_pause`, `abort`,
`emergency_stop`, `rerecord`, `mark`, `next`, `shutdown`) from its own
thread. Everything the session does is reported through `emit(event)`
(app.operator.events), called from whichever thread did it, so a UI must
hand the event to its own thread (Textual: `post_message`).

One round, with the steps of `lrm-robot improve` (app.improve.round), but
with a person watching:

    for each slot: roll out (`rollout_slot`, live reward traces via
        lrm.interval_hold) -> the completion judge on the last frame(s)
        (`judge_rollout`) -> review: the operator may mark success or
        failure (stored as operator_verdict; the LRM's verdict stays),
        re-record the slot, or go on (`next`, or at once with auto_next)
    then: selection -> fine-tune (`finetune`, the policy's own trainer) ->
        optional oracle evaluation (`evaluate_round`, sim)

A session that died mid-round (a crash, a kill, a quit) is continued by the
next one as `improve` continues a run: its committed slots are kept, the
missing ones are rolled out on their own seeds, unjudged episodes are judged,
and the fine-tuning of a round whose slots are all done runs (or resumes);
`OUT/operate-state.json` records which rounds' fine-tunings finished.

Threading: the store, the env, the policy and the reward models are used by
the session's thread only. A mark given while a rollout runs is queued and
written between two steps of that rollout (the store allows attribute
updates while an episode is open). The emergency stop is the exception: it
calls the env's `emergency_stop()` at once from the caller's thread (a robot
env latches its own stop and holds the arm), latches the rollout control,
and ends the session; nothing restarts it.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, TYPE_CHECKING

import numpy as np

from app.env_choice import build_env, episode_fields
from app.improve.round import EmergencyStop, done_slots, evaluate_round, finetune, judge_rollout, rollout_slot, unjudged
from recordings.selection import select_for_round, selection_for_round
from app.improve.state import RunState, in_run, run_path
from app.operator.config import OperateConfig
from app.operator.events import (
    CameraStats,
    Notice,
    PhaseChanged,
    RolloutEnded,
    RolloutStarted,
    RoundStats,
    SessionEvent,
    StepUpdate,
    StoreInfo,
    VerdictChanged,
)
from app.rollout import RolloutControl, RolloutResult, StepEvent
from policies.base import Policy
from policies.scripted import HoldPolicy, RandomPolicy
from recordings.store import EpisodeStore

if TYPE_CHECKING:
    from lrm.types import RewardModel
    from sim.env import Env

log = logging.getLogger(__name__)

__all__ = ["EnvFactory", "LiveRewards", "OperatorSession", "make_env", "thumb_size", "thumbnail"]

EnvFactory = Callable[[OperateConfig], Any]
# Pixel columns of the live thumbnail; its rows follow the camera's aspect ratio. Half-block characters
# draw two roughly square pixels per text cell, so a 128x128 camera is 36x36 pixels on 18 text lines: a
# 3.6x reduction in which a cube still covers a few pixels, where the old 16x32 lost it and squashed the scene.
THUMB_COLS = 36
FRAME_INTERVAL_S = 0.25
STATE_FILE = "operate-state.json"
PHASE = "operator"  # the slot tag of an operated rollout (app.improve.round.done_slots)  # camera statistics and thumbnails go to the screen at most this often


def _read_json(path: Path) -> dict[str, Any]:
    """A JSON file as a dict; {} when it is missing or unreadable (history shown on a dashboard is optional)."""
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


class _Stopped(Exception):
    """The emergency stop or a quit ended the session."""


def make_env(config: OperateConfig) -> Any:
    """The env the config names: ManiSkill, or a robot through robot_drivers (app.env_choice)."""
    return build_env(config.env)


def thumb_size(height: int, width: int, cols: int = THUMB_COLS) -> tuple[int, int]:
    """(rows, cols) of the thumbnail of a height x width camera: its aspect ratio, an even row count."""
    cols = min(cols, width)
    rows = max(2, 2 * round(cols * height / width / 2))
    return rows, cols


def thumbnail(image: np.ndarray, size: tuple[int, int] | None = None) -> np.ndarray:
    """Box-filtered downsample to (rows, cols) pixels (default: `thumb_size`), uint8 RGB.

    Averaging each block, not picking one pixel of it, keeps a small object visible as a blend
    instead of letting it fall between the sampled pixels.
    """
    rows, cols = size or thumb_size(image.shape[0], image.shape[1])
    ys = np.linspace(0, image.shape[0], rows + 1).astype(int)
    xs = np.linspace(0, image.shape[1], cols + 1).astype(int)
    img = image[..., :3].astype(np.float32)
    # the mean of each block through cumulative sums: one pass, no Python loop per pixel
    c = np.pad(img.cumsum(0).cumsum(1), ((1, 0), (1, 0), (0, 0)))
    area = ((ys[1:] - ys[:-1])[:, None] * (xs[1:] - xs[:-1])[None, :])[..., None]
    total = c[ys[1:]][:, xs[1:]] - c[ys[:-1]][:, xs[1:]] - c[ys[1:]][:, xs[:-1]] + c[ys[:-1]][:, xs[:-1]]
    return np.ascontiguousarray(np.clip(np.rint(total / np.maximum(area, 1)), 0, 255).astype(np.uint8))


class LiveRewards:
    """The rollout's reward_hook: interval-hold queries every K steps, one trace per modality.

    Values go into the frame being recorded only on query steps (the store
    keeps NaN elsewhere, as `lrm-robot score` does); `held` keeps the last
    value of every trace for the live display.
    """

    def __init__(self, model: RewardModel, weights: dict[str, float], every: int, camera: str,
                 trace_name: Callable[[str], str]) -> None:
        from lrm.interval_hold import IntervalHoldConfig, IntervalHoldReward

        # The hold object queries on every call (every=1); this class decides when to call it, so a
        # frame without a render (or a paused step) never makes interval-hold fail for lack of a frame.
        self._hold = IntervalHoldReward(model, IntervalHoldConfig(every=1, weights=dict(weights)), num_envs=1)
        self.every = every
        self.camera = camera
        self.names = {m: trace_name(m) for m in weights}
        self.held: dict[str, float] = {}
        self._last: int | None = None
        self._unqueried: tuple[int, np.ndarray] | None = None  # the newest frame seen but not queried

    def start(self, task: str) -> None:
        self._hold.reset(0, task)
        self._last = None
        self._unqueried = None
        self.held = {}

    def __call__(self, observation: Any, step: int) -> dict[str, float]:
        image = (observation.images or {}).get(self.camera)
        if image is None:
            return {}
        if self._last is not None and step - self._last < self.every:
            self._unqueried = (step, image)
            return {}
        return self._query(image, step)

    def _query(self, image: np.ndarray, step: int) -> dict[str, float]:
        self._hold.step({0: image})
        self._last = step
        self._unqueried = None
        values = {self.names[m]: float(v) for m, v in self._hold.values(0).items() if m in self.names}
        self.held.update(values)
        return values

    def finish(self) -> dict[str, float]:
        """The held values at the episode's last frame, which no step event carries (it is recorded after the
        last step). Queried here if the K-step grid skipped it: the frame a verdict reads is the one an operator
        most wants to see a reward for. That query is for the display only; the stored trace keeps the grid."""
        if self._unqueried is not None:
            step, image = self._unqueried
            self._query(image, step)
        return dict(self.held)


class OperatorSession:
    """Rounds under an operator's eye (module doc)."""

    def __init__(self, config: OperateConfig, *, emit: Callable[[SessionEvent], None] | None = None,
                 env_factory: EnvFactory = make_env) -> None:
        self.config = config.resolved()
        self.emit: Callable[[SessionEvent], None] = emit or (lambda event: None)
        self.env_factory = env_factory
        self.control = RolloutControl()
        self.env: Env | None = None
        self.store: EpisodeStore | None = None
        self.state: RunState | None = None
        self.policy: Policy | None = None
        self.checkpoint: Path | None = Path(self.config.policy.checkpoint) if self.config.policy.checkpoint else None
        self.judge_model: RewardModel | None = None
        self.rewards: LiveRewards | None = None
        self.phase = "starting"
        self.rounds: list[RoundStats] = []
        self.reviewing: int | None = None  # the episode a mark applies to
        self.done = threading.Event()
        self._cond = threading.Condition()
        self._paused = False
        self._estop = threading.Event()
        self._quit = False
        self._advance = False
        self._redo = False
        self._marks: list[tuple[int, bool]] = []
        self._rollout_started = 0.0
        self._last_frame_sent = -1.0

    # -- commands (any thread) -------------------------------------------------------------------

    @property
    def paused(self) -> bool:
        with self._cond:
            return self._paused

    @property
    def stopped(self) -> bool:
        return self._estop.is_set()

    def toggle_pause(self) -> bool:
        """Pause or resume; returns the new state. A pause holds the rollout before its next step."""
        with self._cond:
            if self._estop.is_set():
                return self._paused
            self._paused = not self._paused
            paused = self._paused
            self._cond.notify_all()
        if paused:
            self.control.pause()
        else:
            self.control.resume()
        self.emit(PhaseChanged(self.phase, "press p to resume" if paused else "", paused=paused))
        return paused

    def emergency_stop(self, reason: str = "operator emergency stop") -> None:
        """Stop everything now, paused or mid-step; the session ends and is not restarted."""
        self._estop.set()
        halt = getattr(self.env, "emergency_stop", None)
        if callable(halt):
            try:
                halt()  # the robot holds at once, even while the rollout thread is inside env.step
            except Exception as exc:  # the control's latch below still ends the rollout
                log.error("env emergency_stop failed: %s", exc)
        self.control.emergency_stop(reason)  # wakes a paused rollout; nothing downgrades it
        with self._cond:
            self._cond.notify_all()
        self.phase = "stopped"
        self.emit(PhaseChanged("stopped", reason))

    def abort(self) -> None:
        if self.phase == "rollout":
            self.control.abort("operator abort")
        else:
            self.emit(Notice("abort: no rollout is running", "warning"))

    def rerecord(self) -> None:
        """Mid-rollout: discard the episode and run the slot again; in review: retire the episode, run again."""
        if self.phase == "rollout":
            self.control.rerecord()
            return
        with self._cond:
            if self.phase != "review":
                self.emit(Notice("re-record: no rollout to redo", "warning"))
                return
            self._redo = True
            self._cond.notify_all()

    def mark(self, success: bool) -> None:
        """The operator's verdict on the last rollout (overrides the LRM's for selection; both are stored)."""
        with self._cond:
            if self.reviewing is None:
                self.emit(Notice("nothing to mark yet: no rollout has finished", "warning"))
                return
            self._marks.append((self.reviewing, success))
            self._cond.notify_all()

    def next(self) -> None:
        """Go on: leave the review of the last rollout, or confirm a robot's reset phase."""
        gate = getattr(self.env, "reset_gate", None)
        if gate is not None and (self.phase == "reset" or getattr(gate, "waiting", False)):
            gate.confirm()  # a confirm given just before the env starts waiting still counts
        with self._cond:
            self._advance = True
            self._cond.notify_all()

    def shutdown(self) -> None:
        """End the session at the next safe point (a running rollout is committed as aborted)."""
        with self._cond:
            self._quit = True
            self._cond.notify_all()
        if self.phase in ("rollout", "reset"):
            self.control.abort("operator quit")
        if self.phase == "reset":
            # Release a robot env waiting for the operator: with the abort latched the rollout ends
            # before its first step and, having no frame, is discarded.
            gate = getattr(self.env, "reset_gate", None)
            if gate is not None:
                gate.confirm()
        self.control.resume()

    # -- the job (the session's thread) ------------------------------------------------------------

    def run(self) -> None:
        try:
            self._setup()
            first = self._first_round()
            self._earlier_rounds(first)
            self._wait_for_start(first)
            for r in range(first, first + self.config.rounds):
                self._round(r)
            self._set_phase("done", f"{self.config.rounds} round(s) finished")
        except _Stopped:
            if self._estop.is_set():
                self._set_phase("stopped", "emergency stop: nothing runs until the app is restarted")
            else:
                self._set_phase("done", "stopped by the operator")
        except Exception as exc:
            if self._estop.is_set():  # e.g. a robot env refusing to step or reset once its stop is latched
                log.info("stopped by the emergency stop: %s: %s", type(exc).__name__, exc)
                self._set_phase("stopped", "emergency stop: nothing runs until the app is restarted")
            else:
                log.exception("operator session failed")
                self._set_phase("error", f"{type(exc).__name__}: {exc}")
                self.emit(Notice(f"{type(exc).__name__}: {exc}", "error"))
        finally:
            if self.store is not None:
                try:  # the report a quit or a stop announces is there, with the rounds finished so far
                    self._write_report()
                except Exception as exc:
                    log.error("could not write the operate report: %s", exc)
            self._close()
            self.done.set()

    def _wait_for_start(self, first_round: int) -> None:
        """Nothing moves until the operator says so (`next`), unless auto_next."""
        if self.config.auto_next:
            return
        self._set_phase("ready", f"round {first_round} next: press n to start the first rollout")
        with self._cond:
            while not (self._advance or self._estop.is_set() or self._quit):
                self._cond.wait(0.1)
            self._advance = False
        self._check()

    def _set_phase(self, phase: str, detail: str = "") -> None:
        if self._estop.is_set() and phase != "stopped":
            phase = "stopped"
        self.phase = phase
        self.emit(PhaseChanged(phase, detail, paused=self.paused))

    def _setup(self) -> None:
        cfg = self.config
        if cfg.num_threads:
            import torch

            torch.set_num_threads(cfg.num_threads)
        self._set_phase("starting", self.starting_detail())
        self.env = self.env_factory(cfg)
        if self._estop.is_set():  # pressed while the env was being built
            self.emergency_stop()
            raise _Stopped()
        size = (getattr(getattr(self.env, "config", None), "camera_height", None),
                getattr(getattr(self.env, "config", None), "camera_width", None))
        create = {}
        if None not in size:
            create = {"cameras": {c: size for c in self.env.camera_names},
                      "state_dim": int(self.env.state_size), "action_dim": int(np.prod(self.env.action_shape)),
                      "fps": getattr(self.env, "control_freq", None)}
        self.store = EpisodeStore.open(cfg.store_path, mode="a", durable=cfg.durable, **create)
        # which rounds' fine-tunings finished (the slots' state is in the store): a later session resumes
        self.state = RunState.load_or_create(Path(cfg.output_dir), "operator", name=STATE_FILE)
        expected = create.get("cameras") or {c: self.store.cameras.get(c) for c in self.env.camera_names}
        if self.store.cameras and self.store.cameras != expected:
            raise ValueError(f"{cfg.store_path} holds cameras {self.store.cameras}; the env renders {expected} "
                             "(env.sim must match the store's, e.g. the improve run's env section)")
        self._set_phase("starting", "loading the policy and the reward models")
        self.policy = self._load_policy(self.checkpoint)
        from lrm.backends import make_reward_backend

        self.judge_model = make_reward_backend(cfg.judge.backend)
        if cfg.rewards.enabled:
            backend = cfg.rewards.backend or cfg.judge.backend
            model = self.judge_model if cfg.rewards.backend is None else make_reward_backend(backend)
            camera = cfg.rewards.camera or self.env.camera_names[0]
            if camera not in self.env.camera_names:
                raise ValueError(f"rewards.camera {camera!r} is not among the env's cameras {self.env.camera_names}")
            unsupported = [m for m in cfg.rewards.weights if m not in backend.modalities]
            if unsupported:
                raise ValueError(f"rewards.weights: the {backend.type} backend has no {unsupported[0]} modality")
            self.rewards = LiveRewards(model, cfg.rewards.weights, cfg.rewards.every, camera, backend.trace_name)
        self._store_info()

    def starting_detail(self) -> str:
        """What the first, often long, seconds are spent on: the simulator's or the robot's start."""
        if self.config.env.kind == "sim":
            return f"starting the simulator ({self.config.env.sim.env_id}); this can take a minute"
        return "connecting to the robot and its cameras"

    def _load_policy(self, checkpoint: Path | None) -> Policy:
        dry_run = self.config.policy.dry_run or ("random" if self.config.env.kind == "sim" else None)
        if checkpoint is None and dry_run == "hold":
            return HoldPolicy()
        if checkpoint is None:
            if self.config.env.kind != "sim":
                raise ValueError("random actions are for the simulator only: give policy.checkpoint or dry_run: hold")
            policy: Policy = RandomPolicy(seed=self.config.policy.random_seed)
        else:
            policy = self.config.policy.improve.load(checkpoint)
        if hasattr(policy, "set_action_bounds"):
            space = getattr(self.env, "action_space", None)
            if space is None:
                raise ValueError("the env has no action_space: a random policy needs the action bounds")
            policy.set_action_bounds(space.low, space.high)
        return policy

    def _first_round(self) -> int:
        """The round to work on: an unfinished one of an earlier session (as `improve` resumes), else the next.

        A round is finished when all its slots hold a committed episode and, with fine-tuning on,
        its policy is trained (module doc); an improve run's store continues its numbering.
        """
        ours = [r.meta.round for r in self.store.episodes() if (r.meta.extra.get("improve") or {}).get("phase") == PHASE]
        latest = max(ours, default=None)
        if latest is not None and not self._round_finished(latest):
            self.emit(Notice(f"round {latest} was not finished: it continues"))
            if self.config.finetune:
                self.checkpoint = self._latest_checkpoint(latest - 1) or self.checkpoint
                self.policy = self._load_policy(self.checkpoint)
            return latest
        newest = self._newest_trained() if self.config.finetune else None
        if newest is not None and newest[1] != self.checkpoint:
            # a new session goes on from where the last one got to, not from the improve run's policy again
            self.checkpoint = newest[1]
            self.policy = self._load_policy(self.checkpoint)
            self.emit(Notice(f"continuing from round {newest[0]}'s fine-tuned policy {self.checkpoint}"))
        rounds = [r.meta.round for r in self.store.episodes() if r.meta.source in ("sim", "robot")]
        return max(rounds, default=0) + 1

    def _earlier_rounds(self, first: int) -> None:
        """Put the run's earlier rounds on the dashboard: the improve run's (its report.json) and this
        output directory's operated ones (operate-report.json, which keeps them as the report grows)."""
        cfg = self.config
        if cfg.improve_run is not None:
            for e in _read_json(Path(cfg.improve_run) / "report.json").get("rounds", []):
                ro, ev = e.get("rollouts") or {}, e.get("eval") or {}
                valid = ro.get("episodes", 0) - ro.get("aborted", 0)
                self.emit(RoundStats(round=e["round"], rollouts=valid, aborted=ro.get("aborted", 0),
                                     operator_marked=ro.get("operator_verdicts", 0), accepted=ro.get("kept", 0),
                                     lrm_accepted=ro.get("kept", 0), oracle_successes=ro.get("oracle_successes"),
                                     eval_success=ev.get("success_rate"), source="improve"))
        fields = {f.name for f in dataclasses.fields(RoundStats)}
        for e in _read_json(Path(cfg.output_dir) / "operate-report.json").get("rounds", []):
            if e.get("round", first) < first and e.get("source", "operator") == "operator":
                stats = RoundStats(**{k: v for k, v in e.items() if k in fields and k != "live"})
                self.rounds.append(stats)  # kept in the report this session writes
                self.emit(stats)

    def _round_finished(self, round_: int) -> bool:
        if len(done_slots(self.store, round_, PHASE)) < self.config.rollouts_per_round:
            return False
        if not self.config.finetune or self._latest_checkpoint(round_) is not None:
            return True
        return not select_for_round(self.store, self.config.selection, round_)[0]  # nothing to fine-tune on

    def _policy_dir(self, round_: int) -> Path:
        return Path(self.config.output_dir) / "policy" / f"round-{round_}"

    def _latest_checkpoint(self, round_: int) -> Path | None:
        """Round `round_`'s fine-tuned policy, once its training finished."""
        trained = self.state.get(f"train-{round_}")
        return run_path(trained["checkpoint"], Path(self.config.output_dir)) if trained else None

    def _newest_trained(self) -> tuple[int, Path] | None:
        """The newest round this output directory fine-tuned, and its policy (operate-state.json)."""
        rounds = [int(k.split("-")[1]) for k in self.state.steps if k.startswith("train-") and k[6:].isdigit()]
        return (max(rounds), self._latest_checkpoint(max(rounds))) if rounds else None

    def _close(self) -> None:
        for thing in (self.store, self.env):
            if thing is not None:
                try:
                    thing.close()
                except Exception as exc:
                    log.warning("closing %s: %s", type(thing).__name__, exc)

    def _check(self) -> None:
        if self._estop.is_set() or self._quit:
            raise _Stopped()

    def _wait_unpaused(self) -> None:
        with self._cond:
            while self._paused and not (self._estop.is_set() or self._quit):
                self._cond.wait(0.1)
        self._check()

    def _round(self, round_: int) -> None:
        cfg = self.config
        done = done_slots(self.store, round_, PHASE)
        todo = [slot for slot in range(cfg.rollouts_per_round) if slot not in done]
        if done:
            self.emit(Notice(f"round {round_}: {len(done)} rollouts recorded earlier, {len(todo)} to go"))
        while todo:
            slot = todo[0]
            self._wait_unpaused()
            try:
                result = self._rollout(round_, slot)
            except EmergencyStop as stop:
                self.emit(RolloutEnded(None, "emergency_stop", 0, str(stop)))
                raise _Stopped() from None
            if self._estop.is_set():
                self.emit(RolloutEnded(result.index, "emergency_stop", result.steps, result.reason))
                raise _Stopped()
            if result.index is None:
                self.emit(RolloutEnded(None, result.status, result.steps, result.reason))
                self._check()
                self.emit(Notice(f"slot {slot} re-recorded: the episode was discarded"))
                continue
            self._judge(result)
            self._store_info()
            try:
                outcome = self._review(result.index)
            finally:
                self._save_rrd(result.index)  # after the review: the recording carries the operator's verdict
            if outcome == "redo":
                rec = self.store.record(result.index)
                # a retired episode no longer fills its slot (done_slots): it runs again, now or on resume
                self.store.update_meta(result.index, aborted=True,
                                       extra={**rec.meta.extra, "operator_rerecorded": True})
                self.emit(Notice(f"episode {result.index} retired (aborted); slot {slot} runs again"))
                continue
            todo.pop(0)
            self.emit(dataclasses.replace(self._round_stats(round_), live=True))  # the dashboard's running counts
        self._apply_marks()
        self._judge_missing(round_)
        stats = self._round_stats(round_)
        self.emit(stats)
        if cfg.finetune:
            stats = self._finetune(round_, stats)
        if cfg.eval.episodes and cfg.env.kind == "sim":
            stats = self._evaluate(round_, stats)
        self.rounds.append(stats)
        self.emit(stats)
        self._write_report()

    def _rollout(self, round_: int, slot: int) -> RolloutResult:
        cfg = self.config
        seed = cfg.rollout_seed + (round_ - 1) * cfg.rollouts_per_round + slot
        if self.rewards is not None:
            self.rewards.start(self.env.task)
        with self._cond:
            self._advance = self._redo = False
        gate = getattr(self.env, "reset_gate", None)
        waits = bool(getattr(getattr(getattr(self.env, "config", None), "reset", None), "wait_for_operator", False))
        self.emit(RolloutStarted(round_, slot, cfg.rollouts_per_round, seed, self.env.task, cfg.rollout.max_steps,
                                 cfg.rollout.time_limit_s))
        if gate is not None and waits:
            self._set_phase("reset", "set the scene, then press n")
        else:
            self._set_phase("rollout")
        self._rollout_started = time.monotonic()
        self._last_frame_sent = -1.0
        first_step = [True]

        def on_step(event: StepEvent) -> None:
            if first_step[0]:
                first_step[0] = False
                if self.phase == "reset":
                    self._set_phase("rollout")
            self._between_steps()
            self.emit(self._step_update(event))

        fields = episode_fields(cfg.env, self.env)
        result = rollout_slot(self.env, self.policy, self.store, round_=round_, phase=PHASE, slot=slot, seed=seed,
                              policy_id=str(self.checkpoint) if self.checkpoint else "random", fields=fields,
                              run="operator", rollout=cfg.rollout, control=self.control, on_step=on_step,
                              reward_hook=self.rewards, extra={"operator": {"round": round_, "slot": slot}})
        if self.rewards is not None and result.index is not None:
            last = self.rewards.finish()
            if last:  # the terminal frame's values, so that the sparklines end where the episode did
                freq = getattr(self.env, "control_freq", None)
                wall = time.monotonic() - self._rollout_started
                self.emit(StepUpdate(episode=result.index, step=result.steps,
                                     time_s=float(result.steps / freq) if freq else wall, wall_s=wall, cameras={},
                                     rewards=last))
        self.phase = "judging"
        robot = self.store.record(result.index).meta.extra.get("robot") if result.index is not None else None
        if robot is not None:
            self.emit(Notice(f"episode {result.index}: {robot['summary']}"))
        return result

    def _between_steps(self) -> None:
        """Runs between two steps of a rollout, in the rollout's thread."""
        if self._quit and self.control.pending is None:
            self.control.abort("operator quit")
        if self.paused and not self.control.paused:
            self.control.pause()  # run_rollout clears the control when it starts; the operator's pause stands
        self._apply_marks()

    def _step_update(self, event: StepEvent) -> StepUpdate:
        images = event.images
        now = time.monotonic()
        if now - self._last_frame_sent < FRAME_INTERVAL_S:
            images = {}  # an operator cannot follow 30 thumbnails a second; the rollout should not pay for them
        elif images:
            self._last_frame_sent = now
        cameras = {name: CameraStats.of(image) for name, image in images.items()}
        first = next(iter(images.values()), None)
        return StepUpdate(
            episode=event.episode_index, step=event.step, time_s=float(event.time_s),
            wall_s=time.monotonic() - self._rollout_started, cameras=cameras,
            rewards=dict(self.rewards.held) if self.rewards is not None else {},
            thumbnail=None if first is None else thumbnail(first),
        )

    def _judge(self, result: RolloutResult) -> None:
        """The completion verdict of a committed rollout (aborted ones are not judged, as in improve)."""
        rec = self.store.record(result.index)
        self.reviewing = result.index
        if rec.meta.aborted:
            self.emit(RolloutEnded(result.index, result.status, result.steps, result.reason,
                                   oracle_success=result.oracle_success))
            return
        self._set_phase("judging")
        meta = self._judge_one(result.index)
        self.emit(RolloutEnded(result.index, result.status, result.steps, result.reason,
                               lrm_verdict=bool(meta.lrm_verdict), lrm_score=float(meta.lrm_score),
                               oracle_success=result.oracle_success))

    def _judge_one(self, index: int) -> Any:
        judge = self.config.judge.judge_config()
        return judge_rollout(self.store, index, self.judge_model, judge, judge.backend.describe())

    def _judge_missing(self, round_: int) -> None:
        """Episodes of the round recorded before a crash and not judged then (the improve rule: none without one)."""
        for rec in unjudged(self.store, round_, PHASE)[1]:
            self._judge_one(rec.index)

    def _review(self, index: int) -> str:
        """Wait for the operator's `next` (or re-record); marks are written as they come. Returns next | redo."""
        if self.config.auto_next:
            self._apply_marks()
            return "next"
        with self._cond:
            self._advance = False  # a `next` pressed before the verdict was shown does not skip the review
        self._set_phase("review", f"episode {index}: s/f to mark, r to redo, n for the next rollout")
        while True:
            self._apply_marks()
            with self._cond:
                if self._estop.is_set() or self._quit:
                    break
                if self._redo:
                    self._redo = self._advance = False
                    return "redo"
                if self._advance and not self._marks:
                    self._advance = False
                    return "next"
                self._cond.wait(0.1)
        self._apply_marks()
        self._check()
        return "next"

    def _apply_marks(self) -> None:
        with self._cond:
            marks, self._marks = self._marks, []
        for index, success in marks:
            rec = self.store.record(index)
            log_entry = [*rec.meta.extra.get("operator_marks", []), {"verdict": success, "time": time.time()}]
            meta = self.store.update_meta(index, operator_verdict=success,
                                          extra={**rec.meta.extra, "operator_marks": log_entry})
            self.emit(VerdictChanged(index, meta.operator_verdict, meta.lrm_verdict, meta.lrm_score))
            lrm = "not judged" if meta.lrm_verdict is None else (
                f"{'success' if meta.lrm_verdict else 'failure'}, P={meta.lrm_score:.2f}")
            self.emit(Notice(f"episode {index} marked {'success' if success else 'failure'} by the operator "
                             f"(LRM: {lrm}; both kept)"))

    def _round_stats(self, round_: int) -> RoundStats:
        records = [r for r in self.store.episodes(round=round_) if "operator" in r.meta.extra]
        valid = [r for r in records if not r.meta.aborted]
        sim = self.config.env.kind == "sim"
        return RoundStats(
            round=round_, rollouts=len(valid), aborted=len(records) - len(valid),
            lrm_accepted=sum(bool(r.meta.lrm_verdict) for r in valid),
            operator_marked=sum(r.meta.operator_verdict is not None for r in valid),
            accepted=sum(bool(r.meta.accepted) for r in valid),
            oracle_successes=sum(bool(r.meta.oracle_success) for r in valid) if sim else None,
        )

    def _finetune(self, round_: int, stats: RoundStats) -> RoundStats:
        cfg = self.config
        indices, counts = select_for_round(self.store, cfg.selection, round_)
        if not indices:
            self.emit(Notice(f"round {round_}: nothing selected for fine-tuning (no accepted episodes)", "warning"))
            return stats
        self._check()
        self._set_phase("finetune", f"round {round_}: {counts['demos']} demos + {counts['rollouts']} rollouts")
        trained = finetune(cfg.policy.improve, cfg.store_path, self._policy_dir(round_), round_=round_,
                           select=selection_for_round(cfg.selection, round_), init_from=self.checkpoint,
                           num_threads=cfg.num_threads, progress=False)
        out = Path(cfg.output_dir)
        # relative to the output directory (app.improve.state.in_run), so that it can be moved or copied
        self.state.mark(f"train-{round_}", {**trained, "checkpoint": in_run(trained["checkpoint"], out)})
        self.checkpoint = Path(trained["checkpoint"])
        self.policy = self._load_policy(self.checkpoint)
        loss = trained["train_loss"]
        self.emit(Notice(f"round {round_}: fine-tuned on {len(indices)} episodes, loss {loss:.4g}"))
        return dataclasses.replace(stats, train_loss=float(loss), selected=len(indices))

    def _evaluate(self, round_: int, stats: RoundStats) -> RoundStats:
        self._check()
        cfg = self.config
        self._set_phase("evaluate", f"round {round_}: {cfg.eval.episodes} oracle episodes")
        result = evaluate_round(self.policy, cfg.env.sim, episodes=cfg.eval.episodes, seed=cfg.eval.seed,
                                max_steps=cfg.eval.max_steps or cfg.rollout.max_steps, round_=round_, progress=False,
                                policy_id=f"operate-round-{round_}")
        return dataclasses.replace(stats, eval_success=result["success_rate"])

    def _store_info(self) -> None:
        self.emit(StoreInfo(str(self.store.path), self.store.num_episodes, self.store.num_frames))

    def _save_rrd(self, index: int) -> None:
        if self.config.rerun_dir is None:
            return
        from app.operator.rerun import save_episode

        path = Path(self.config.rerun_dir) / f"episode-{index}.rrd"
        save_episode(self.store, index, path)
        self.emit(Notice(f"saved {path}"))

    def _write_report(self) -> None:
        out = Path(self.config.output_dir)
        out.mkdir(parents=True, exist_ok=True)
        # paths inside the output directory relative to it (app.improve.state.in_run), others as given
        data = {"store": in_run(self.config.store_path, out),
                "checkpoint": in_run(self.checkpoint, out) if self.checkpoint else None,
                "phase": self.phase,
                "rounds": [{**dataclasses.asdict(s), "success_rate": s.success_rate} for s in self.rounds]}
        tmp = out / "operate-report.json.tmp"
        tmp.write_text(json.dumps(data, indent=2) + "\n")
        tmp.replace(out / "operate-report.json")
