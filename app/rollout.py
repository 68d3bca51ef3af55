"""THE rollout: one episode of a policy in an env, recorded into the store as it happens.

The self-improvement rounds (`app.improve`) and the operator UI both call
`run_rollout`; nothing else in the application steps an env for a recorded
rollout. It only uses the Env interface of `sim.env` (reset, step, capture,
camera_names, task; optional `success` / `dense_reward` in simulation,
optional `control_freq`, optional `emergency_stop()` on a robot), so it runs
the same in ManiSkill and on a real arm.

API
---
    result = run_rollout(env, policy, store, meta, config=RolloutConfig(...),
                         seed=7, control=RolloutControl(), on_step=callback,
                         reward_hook=None)

- `policy`: the `policies.base.Policy` protocol (`reset`, `act` -> action (A,)
  or chunk (K, A), `needs_images`, `camera_names`). A chunk is executed step
  by step before the policy is asked again.
- `store`: an `EpisodeStore` open for appending; its cameras must be the
  env's. Without a store (`None`: an evaluation that only counts successes)
  nothing is recorded and the cameras render only when the policy or a
  watcher looks. `meta`: the `EpisodeMeta` the episode starts with (task, source,
  round, seed...); the rollout adds `seed`, `duration_s`, `oracle_success`
  (sim), `aborted` and `extra["rollout"]` (status, steps, capture mode, which
  frames hold rendered images, final/max dense reward) before the commit, in
  the same atomic commit as the frames.
- Frames: frame t = observation before action t + action t (the store's
  convention). With `record_terminal` (default) one more frame holds the
  observation *after* the last action (its action repeats the last one, i.e.
  "hold"), so the final state that the oracle and the judge refer to is in
  the store.
- Caps: `max_steps` actions, and `time_limit_s` seconds of wall-clock time
  (time spent paused does not count). Whichever comes first ends the episode.
  `stop_on_success` (sim only, off by default) ends at the oracle's success,
  which makes the oracle steer the rollout. `stop_check(images, step)`, a
  watcher (the completion judge, as an operator would) called with every
  rendered frame after the first, ends the episode at that frame (status
  "judged_done") when it returns a reason; that frame is then the terminal
  frame. `render_every` k renders every k-th frame for it.
- Cameras (`capture`): "every_step" renders every frame; "on_demand" renders
  only when the policy is about to look and for the last `judge_frames`
  frames (the terminal frame included), which is what the completion judge
  reads. On a CPU a frame costs ~20x a physics step. Frames without a
  render hold black images (the store needs every camera in every frame),
  marked not real (`Frame.real`, stored per frame and camera, which every
  reader respects); `extra["rollout"]["captured"]` lists the frames that
  hold real images, for a quick look at the metadata.
- Operator hooks, checked before every step:
  `RolloutControl` (thread-safe; call from a UI thread): `pause()` /
  `resume()`, `abort(reason)` (commit the episode as aborted, frames kept),
  `emergency_stop(reason)` (the same, plus `env.emergency_stop()` if the env
  has one; status "emergency_stop" tells the caller to stop everything),
  `rerecord()` (discard the episode: nothing stays in the store; the caller
  runs the same slot again). `on_step(StepEvent)` is called after every
  step with the step index, time, the images if rendered, the state, the
  action, the env info and the reward values of `reward_hook`, for live
  display; it runs in the rollout's thread, so keep it short.
- Failures: an exception in the policy, the env or a hook commits the
  episode as aborted (frames kept, `extra["rollout"]["error"]` says what)
  and is re-raised. KeyboardInterrupt (Ctrl-C of the whole program) discards
  the unfinished episode instead, so that a resumed run redoes the slot
  cleanly, and is re-raised. An episode with no frame yet is discarded.

`RolloutResult` says what happened: store index (None if discarded), status,
steps, oracle success (None off simulation), durations, and the last
`judge_frames` rendered images per camera.
"""

from __future__ import annotations

import dataclasses
import logging
import threading
import time
from collections import deque
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Annotated, Any, Literal

import numpy as np

from common.numbers import NonNegative, PositiveFloat, Range, Steps
from recordings.episode import EpisodeMeta, Frame

if TYPE_CHECKING:
    from policies.base import Policy
    from recordings.store import EpisodeStore
    from sim.env import Env

log = logging.getLogger(__name__)

__all__ = [
    "RolloutConfig",
    "RolloutControl",
    "RolloutResult",
    "StepEvent",
    "run_rollout",
]

CaptureMode = Literal["every_step", "on_demand"]
Status = Literal["step_limit", "time_limit", "success", "judged_done", "aborted", "emergency_stop", "discarded",
                 "error"]


@dataclass
class RolloutConfig:
    """Caps and camera policy of one rollout; YAML-friendly (module doc)."""

    max_steps: Steps = 200  # actions per episode
    time_limit_s: PositiveFloat | None = 30.0  # wall-clock cap (the paper's robot rollouts: 30 s); None = none
    capture: CaptureMode = "on_demand"
    judge_frames: Annotated[int, Range(1, 10_000)] = 1  # on_demand: render the last k frames for the judge
    render_every: NonNegative = 0  # on_demand: also render every k-th frame (what a watching judge sees); 0 = never
    record_terminal: bool = True  # add the observation after the last action as a final frame
    stop_on_success: bool = False  # sim only: end at the oracle's success (the oracle then steers)
    # sim only: the simulator's `dense_reward` and `success` at each frame's state as reward traces, so that
    # `eval-reward` can measure a judge against the oracle on these very episodes (nothing trains on them)
    record_oracle: bool = True

    def __post_init__(self) -> None:
        if self.max_steps < 1:
            raise ValueError(f"max_steps must be at least 1, got {self.max_steps}")
        if self.time_limit_s is not None and self.time_limit_s <= 0:
            raise ValueError(f"time_limit_s must be positive or null, got {self.time_limit_s}")
        if self.capture not in ("every_step", "on_demand"):
            raise ValueError(f"capture must be 'every_step' or 'on_demand', got {self.capture!r}")
        if self.judge_frames < 1:
            raise ValueError(f"judge_frames must be at least 1, got {self.judge_frames}")
        if self.render_every < 0:
            raise ValueError(f"render_every must be >= 0, got {self.render_every}")


class RolloutControl:
    """Operator commands for a running rollout; every method is safe to call from another thread.

    A control object serves one rollout at a time; `run_rollout` clears a
    pending abort or re-record when it starts (a stale abort never hits the
    next episode) but never an emergency stop: that stays latched, and every
    later `run_rollout` refuses to move the env, until an operator calls
    `clear_emergency_stop()`.
    """

    def __init__(self) -> None:
        self._cond = threading.Condition()
        self._paused = False
        self._command: str | None = None  # abort | emergency_stop | rerecord
        self._reason = ""

    @property
    def paused(self) -> bool:
        with self._cond:
            return self._paused

    @property
    def pending(self) -> str | None:
        with self._cond:
            return self._command

    def pause(self) -> None:
        with self._cond:
            self._paused = True

    def resume(self) -> None:
        with self._cond:
            self._paused = False
            self._cond.notify_all()

    def abort(self, reason: str = "operator abort") -> None:
        self._set("abort", reason)

    def emergency_stop(self, reason: str = "emergency stop") -> None:
        self._set("emergency_stop", reason)

    def rerecord(self, reason: str = "operator re-record") -> None:
        self._set("rerecord", reason)

    def _set(self, command: str, reason: str) -> None:
        with self._cond:
            if self._command != "emergency_stop":  # nothing downgrades an emergency stop
                self._command, self._reason = command, reason
            self._cond.notify_all()

    def clear_emergency_stop(self) -> None:
        """The operator's explicit release of a latched emergency stop."""
        with self._cond:
            if self._command == "emergency_stop":
                self._command, self._reason = None, ""

    def _clear(self) -> None:
        with self._cond:
            self._paused = False
            if self._command != "emergency_stop":
                self._command, self._reason = None, ""

    def _wait(self) -> tuple[str | None, str, float]:
        """Block while paused (a command wakes it); returns (command, reason, seconds spent paused)."""
        started = time.monotonic()
        with self._cond:
            while self._paused and self._command is None:
                self._cond.wait(timeout=0.1)
            return self._command, self._reason, time.monotonic() - started


@dataclass
class StepEvent:
    """What `on_step` receives after every step (for live display)."""

    step: int  # actions taken so far in this episode
    time_s: float  # the frame's timestamp (episode time)
    state: np.ndarray  # the observation after this step
    action: np.ndarray  # the action just executed
    images: dict[str, np.ndarray]  # the rendered images of the frame just recorded; empty if none
    info: dict[str, Any]  # the env's info of this step
    rewards: dict[str, float]  # reward_hook's values of the frame just recorded; empty if none
    episode_index: int | None  # the store index the episode gets if committed; None when not recorded


@dataclass
class RolloutResult:
    """What one rollout did."""

    index: int | None  # store index; None when discarded (rerecord, interrupt, nothing recorded)
    status: Status
    steps: int  # actions executed
    frames: int  # frames recorded
    seed: int | None
    oracle_success: bool | None  # the simulator's success at the final state; None off simulation
    ever_success: bool | None  # the oracle succeeded at some step
    final_dense_reward: float | None
    max_dense_reward: float | None
    duration_s: float  # wall-clock, pauses excluded
    paused_s: float
    reason: str = ""  # the operator's reason or the error
    judge_images: dict[str, list[np.ndarray]] = field(default_factory=dict)  # last k rendered frames per camera

    @property
    def committed(self) -> bool:
        return self.index is not None


class _Interrupted(Exception):
    """An operator command ended the episode."""

    def __init__(self, command: str, reason: str) -> None:
        super().__init__(reason)
        self.command = command
        self.reason = reason


def run_rollout(
    env: Env,
    policy: Policy,
    store: EpisodeStore | None,
    meta: EpisodeMeta | None,
    *,
    config: RolloutConfig | None = None,
    seed: int | None = None,
    control: RolloutControl | None = None,
    on_step: Callable[[StepEvent], None] | None = None,
    reward_hook: Callable[[Any, int], Mapping[str, float]] | None = None,
    stop_check: Callable[[dict[str, np.ndarray], int], str | None] | None = None,
) -> RolloutResult:
    """Run and record one episode (module doc); returns its RolloutResult.

    `reward_hook(observation, step)` may return reward values for the frame
    about to be recorded (e.g. an LRM queried every K steps); they go into
    the frame's reward traces and the StepEvent.
    """
    cfg = config or RolloutConfig()
    control = control or RolloutControl()
    control._clear()
    if control.pending == "emergency_stop":  # latched: not even env.reset() may move a robot
        halt = getattr(env, "emergency_stop", None)
        if callable(halt):
            halt()
        log.warning("emergency stop latched (%s): the rollout does not start", control._reason)
        return RolloutResult(index=None, status="emergency_stop", steps=0, frames=0, seed=seed,
                             oracle_success=None, ever_success=None, final_dense_reward=None,
                             max_dense_reward=None, duration_s=0.0, paused_s=0.0, reason=control._reason,
                             judge_images={})
    recording = store is not None
    cameras = list(store.cameras) if recording and store.cameras else list(env.camera_names)
    missing = [c for c in getattr(policy, "camera_names", []) if c not in env.camera_names]
    if missing:
        raise ValueError(f"the policy needs camera {missing[0]!r}; the env renders {', '.join(env.camera_names) or 'none'}")
    blank: dict[str, np.ndarray] = {}
    freq = getattr(env, "control_freq", None)
    sim = hasattr(env, "success")
    obs = env.reset(seed=seed)
    policy.reset()
    if recording:
        writer = store.begin_episode(dataclasses.replace(meta, seed=seed if seed is not None else meta.seed))
    else:
        writer = _NoRecording()
    episode_index = writer.index
    captured: list[int] = []
    judge: dict[str, deque[np.ndarray]] = {c: deque(maxlen=cfg.judge_frames) for c in cameras}
    queue: list[np.ndarray] = []
    steps = 0
    paused_s = 0.0
    started = time.monotonic()
    step_times: deque[float] = deque(maxlen=20)
    ever = bool(env.success) if sim else None
    best = float(env.dense_reward) if sim and hasattr(env, "dense_reward") else None
    status: Status = "step_limit"
    reason = ""
    last_action: np.ndarray | None = None
    terminal = False
    wall_start = time.monotonic()

    def timestamp(t: int) -> float:
        return t / freq if freq else time.monotonic() - wall_start

    def record(t: int, action: np.ndarray, images: dict[str, np.ndarray]) -> dict[str, float]:
        rewards = dict(reward_hook(obs, t)) if reward_hook is not None else {}
        if sim and cfg.record_oracle:
            rewards.setdefault("success", float(bool(env.success)))
            if hasattr(env, "dense_reward"):
                rewards.setdefault("dense_reward", float(env.dense_reward))
        if images:
            captured.append(writer.num_frames)
            for c in cameras:
                judge[c].append(images[c])
            if not blank:
                blank.update(_blank_like(images, cameras))
        writer.add_frame(Frame(images={c: images[c] for c in cameras} if images else blank,
                               state=obs.state, action=action, timestamp=timestamp(t), rewards=rewards,
                               real={c: bool(images) for c in cameras}))
        return rewards

    try:
        while True:
            command, why, waited = control._wait()
            paused_s += waited
            if command is not None:
                raise _Interrupted(command, why)
            elapsed = time.monotonic() - started - paused_s
            if steps >= cfg.max_steps:
                status = "step_limit"
                break
            if cfg.time_limit_s is not None and elapsed >= cfg.time_limit_s:
                status, reason = "time_limit", f"time limit {cfg.time_limit_s} s"
                break
            t0 = time.monotonic()
            about_to_act = not queue
            render = (
                (policy.needs_images and about_to_act)
                or (cfg.render_every > 0 and steps % cfg.render_every == 0)
                or (recording and (
                    cfg.capture == "every_step"
                    or steps == 0  # the first frame: the progress modality's anchor, and the image sizes
                    or _near_end(steps, cfg, elapsed, step_times)))
            )
            images = env.capture() if render else {}
            obs.images = images
            if stop_check is not None and images and last_action is not None:
                why = stop_check(images, steps)
                if why:
                    status, reason = "judged_done", why
                    record(steps, last_action, images)  # the frame judged done is the terminal frame
                    terminal = True
                    break
            if about_to_act:
                out = np.asarray(policy.act(obs), dtype=np.float32)
                queue = list(out) if out.ndim == 2 else [out]
            action = queue.pop(0)
            rewards = record(steps, action, images)
            obs, info = env.step(action)
            last_action = action
            steps += 1
            if sim:
                ever = ever or bool(info.get("success", env.success))
                if best is not None:
                    best = max(best, float(info.get("dense_reward", env.dense_reward)))
            step_times.append(time.monotonic() - t0)
            if on_step is not None:
                on_step(StepEvent(step=steps, time_s=timestamp(steps), state=obs.state, action=action,
                                  images=images, info=info, rewards=rewards, episode_index=episode_index))
            if cfg.stop_on_success and sim and env.success:
                status, reason = "success", "the oracle reported success"
                break
        if recording and cfg.record_terminal and last_action is not None and not terminal:
            obs.images = env.capture()
            record(steps, last_action, obs.images)
            terminal = True
        index = _commit(writer, env, sim, status, reason, steps, captured, cfg, ever, best,
                        time.monotonic() - started - paused_s, aborted=False, terminal=terminal)
    except _Interrupted as stop:
        status = {"rerecord": "discarded", "abort": "aborted"}.get(stop.command, stop.command)  # type: ignore[assignment]
        reason = stop.reason
        if stop.command == "emergency_stop":
            halt = getattr(env, "emergency_stop", None)
            if callable(halt):
                halt()
        if stop.command == "rerecord" or writer.num_frames == 0:
            writer.discard()
            index = None
        else:
            terminal = _capture_terminal(env, obs, last_action, cfg, lambda a, im: record(steps, a, im))
            index = _commit(writer, env, sim, status, reason, steps, captured, cfg, ever, best,
                            time.monotonic() - started - paused_s, aborted=True, terminal=terminal)
        log.info("episode %d %s after %d steps: %s", episode_index, status, steps, reason)
    except KeyboardInterrupt:
        if writer.state in ("open", "failed"):
            writer.discard()  # not an outcome of the episode: a resumed run redoes it
        raise
    except BaseException as exc:
        reason = f"{type(exc).__name__}: {exc}"
        # a robot env raises its own fault when the e-stop lands inside a step: the outcome is still the e-stop
        stopped = control.pending == "emergency_stop" or getattr(exc, "component", None) == "e-stop"
        if writer.state == "open" and writer.num_frames > 0:
            index = _commit(writer, env, sim, "emergency_stop" if stopped else "error", reason, steps, captured, cfg,
                            ever, best,
                            time.monotonic() - started - paused_s, aborted=True, terminal=False)
            log.error("episode %d aborted by an error after %d steps (frames kept): %s", index, steps, reason)
        elif writer.state in ("open", "failed"):
            writer.discard()
        raise
    oracle = bool(env.success) if sim else None
    return RolloutResult(
        index=index, status=status, steps=steps, frames=writer.num_frames, seed=seed, oracle_success=oracle,
        ever_success=ever, final_dense_reward=float(env.dense_reward) if best is not None else None,
        max_dense_reward=best, duration_s=time.monotonic() - started - paused_s, paused_s=paused_s,
        reason=reason, judge_images={c: list(v) for c, v in judge.items()},
    )


def _near_end(steps: int, cfg: RolloutConfig, elapsed: float, step_times: deque[float]) -> bool:
    """Whether frame `steps` is among the last `judge_frames` (terminal frame included when recorded)."""
    if cfg.capture != "on_demand":
        return False
    k = cfg.judge_frames - (1 if cfg.record_terminal else 0)
    if k <= 0:
        return False
    if steps >= cfg.max_steps - k:
        return True
    if cfg.time_limit_s is not None and step_times:
        # A wall-clock cap cannot be known in advance: render once fewer than k steps' time is left.
        mean = sum(step_times) / len(step_times)
        return cfg.time_limit_s - elapsed <= (k + 1) * mean
    return False


def _capture_terminal(env: Env, obs: Any, last_action: np.ndarray | None, cfg: RolloutConfig,
                      record: Callable[[np.ndarray, dict[str, np.ndarray]], Any]) -> bool:
    """On an operator stop, still record the state the episode ended in (best effort)."""
    if not cfg.record_terminal or last_action is None:
        return False
    try:
        obs.images = env.capture()
        record(last_action, obs.images)
    except Exception as exc:  # the episode is kept without it
        log.warning("could not record the terminal frame: %s", exc)
        return False
    return True


def _commit(writer: Any, env: Env, sim: bool, status: str, reason: str, steps: int, captured: list[int],
            cfg: RolloutConfig, ever: bool | None, best: float | None, duration: float, *, aborted: bool,
            terminal: bool) -> int:
    """Outcome into the episode's attributes, then the commit (one atomic step, see EpisodeWriter.update_meta)."""
    info: dict[str, Any] = {
        "status": status,
        "reason": reason,
        "steps": steps,
        "capture": cfg.capture,
        "captured": captured,
        "terminal_frame": terminal,  # the last frame is the state after the last action
        "max_steps": cfg.max_steps,
        "time_limit_s": cfg.time_limit_s,
        "wall_s": duration,
    }
    fields: dict[str, Any] = {"duration_s": float(duration)}
    if sim:
        try:
            fields["oracle_success"] = bool(env.success)
            info.update(ever_success=ever, final_dense_reward=float(env.dense_reward), max_dense_reward=best)
        except Exception as exc:  # an env that failed mid-step may not answer any more
            log.warning("no oracle values for the aborted episode: %s", exc)
    if status == "error":
        info["error"] = reason
    extra = {**writer.update_meta().extra, "rollout": info}
    writer.update_meta(extra=extra, **fields)
    return writer.commit(aborted=aborted)


class _NoRecording:
    """The writer of a rollout without a store: counts frames, keeps nothing, commits to no index."""

    index = None

    def __init__(self) -> None:
        self.num_frames = 0
        self.state = "open"
        self.extra: dict[str, Any] = {}

    def add_frame(self, frame: Frame) -> None:
        self.num_frames += 1

    def update_meta(self, **fields: Any) -> _NoRecording:
        self.extra = fields.get("extra", self.extra)
        return self

    def commit(self, aborted: bool = False) -> None:
        self.state = "committed"

    def discard(self) -> None:
        self.state = "discarded"


def _blank_like(images: Mapping[str, np.ndarray], cameras: list[str]) -> dict[str, np.ndarray]:
    """Black frames for steps without a render (read-only: one array shared by every such frame)."""
    out = {}
    for c in cameras:
        img = np.zeros_like(images[c])
        img.flags.writeable = False
        out[c] = img
    return out
