"""Behaviour cloning of the small actor-critic from the episode store.

One readable path, top to bottom (`train_bc`):

1. select episodes with a list of `recordings.selection.EpisodeFilter`
   clauses, their union taken (e.g. "the demonstrations, plus sim/robot
   rollouts the LRM or the operator accepted");
2. split them into train and validation *by episode*
   (`recordings.selection.shuffled_split`);
3. load the frames the policy needs, one episode at a time, keeping only the
   state, the action and the policy's cameras (`FrameDataset`);
4. compute normalisation statistics on the training split, build the policy,
   fit it (`fit_bc`: Adam, cosine LR, gradient clipping, random-shift image
   augmentation), with a progress bar, periodic validation and checkpoints;
5. resume: a checkpoint holds the policy (config + weights + statistics), the
   optimiser and sampler state, the step and the episode split, so training
   continues where it stopped.

Output directory layout:
    OUTPUT/checkpoints/last/   config.json, model.safetensors, training_state.pt
    OUTPUT/split.json          train / validation episode indices
    OUTPUT/metrics.json        loss history and summary
    OUTPUT/metrics.jsonl       one row per logged step (`report_to`, common.tracking; also tensorboard, wandb)
"""

from __future__ import annotations

import dataclasses
import json
import logging
import math
import os
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, TYPE_CHECKING

import numpy as np
import torch
import torch.nn.functional as F

from common.checkpoint_files import load_training_state
from common.progress import progress_bar
from common.tracking import ReportTo, Tracker, make_tracker, parse_report_to, report_to_field
from common.numbers import Count, LearningRate, NonNegative, NonNegativeFloat, PositiveFloat, Seed, Steps, Threads
from policies.actor_critic.model import ActorCriticConfig, GaussianActorCritic, compute_stats, make_policy
from policies.errors import PolicyError
from recordings.errors import DamagedEpisodeError
from recordings.selection import EpisodeFilter, default_selection, shuffled_split
from recordings.store import EpisodeStore

if TYPE_CHECKING:
    from recordings.episode import EpisodeSource

log = logging.getLogger(__name__)

__all__ = [
    "BCTrainConfig",
    "FitReport",
    "FrameDataset",
    "fit_bc",
    "load_frames",
    "train_bc",
]

CHECKPOINT_DIR = "checkpoints/last"
TRAINING_STATE = "training_state.pt"


# -- 1. loading frames -----------------------------------------------------------------------------


@dataclass
class FrameDataset:
    """Frames of some episodes, stacked: what behaviour cloning samples batches from."""

    state: np.ndarray  # (N, S) float32
    action: np.ndarray  # (N, A) float32, or (N, K, A): the chunk of actions from each frame on
    images: dict[str, np.ndarray]  # camera -> (N, H, W, 3) uint8, only the policy's cameras
    episode: np.ndarray  # (N,) store episode index of each frame

    def __len__(self) -> int:
        return int(self.state.shape[0])

    @property
    def action_dim(self) -> int:
        return int(self.action.shape[-1])

    @property
    def image_sizes(self) -> dict[str, tuple[int, int]]:
        return {cam: (int(a.shape[1]), int(a.shape[2])) for cam, a in self.images.items()}

    def batch(self, idx: np.ndarray | torch.Tensor) -> tuple[dict[str, Any], torch.Tensor]:
        """({"state", "images"}, action) tensors for frame indices `idx`."""
        idx = np.asarray(idx)
        obs: dict[str, Any] = {
            "state": torch.from_numpy(self.state[idx]),
            "images": {cam: torch.from_numpy(a[idx]) for cam, a in self.images.items()},
        }
        return obs, torch.from_numpy(self.action[idx])


def action_chunks(actions: np.ndarray, chunk_size: int) -> np.ndarray:
    """(T, A) -> (T, K, A): actions t .. t+K-1 of each frame, the last action repeated past the end.

    Repeating the last action (a held pose) is what the robot would do after
    the episode ends, and keeps every frame usable for training.
    """
    t = actions.shape[0]
    idx = np.minimum(np.arange(t)[:, None] + np.arange(chunk_size)[None, :], t - 1)
    return actions[idx]


def load_frames(
    store: EpisodeSource, indices: Iterable[int], cameras: Sequence[str] = (), chunk_size: int = 1
) -> FrameDataset:
    """Stack the frames of episodes `indices`, keeping only state, action (chunks) and `cameras`.

    Episodes are read one at a time and everything the policy does not use is
    dropped right away, so peak memory is the kept arrays plus one episode.
    """
    missing = [c for c in cameras if c not in store.cameras]
    if missing:
        raise PolicyError(f"{store.path} has no camera {missing[0]!r} (cameras: {', '.join(store.cameras) or 'none'})")
    states, actions, episodes = [], [], []
    images: dict[str, list[np.ndarray]] = {c: [] for c in cameras}
    for index in indices:
        try:
            ep = store.load_episode(index)
        except DamagedEpisodeError as exc:  # found damaged only now, by its checksums: the store quarantined it
            log.warning("training without episode %d: %s", index, exc)
            continue
        states.append(np.asarray(ep.state, dtype=np.float32))
        action = np.asarray(ep.action, dtype=np.float32)
        actions.append(action_chunks(action, chunk_size) if chunk_size > 1 else action)
        episodes.append(np.full(len(ep), index, dtype=np.int64))
        for cam in cameras:
            images[cam].append(ep.images[cam])
        del ep
    if not states:
        raise PolicyError("no frames to load: the selection is empty")
    return FrameDataset(
        state=np.concatenate(states),
        action=np.concatenate(actions),
        images={c: np.concatenate(v) for c, v in images.items()},
        episode=np.concatenate(episodes),
    )


# -- 2. fitting --------------------------------------------------------------------------------------


@dataclass
class FitReport:
    """What `fit_bc` did; `history` has one entry per logged step."""

    steps: int = 0  # optimiser steps taken in total (including before a resume)
    start_step: int = 0
    train_loss: float = math.nan  # mean over the last `log_every` steps
    val_loss: float | None = None
    best_val_loss: float | None = None
    elapsed_s: float = 0.0
    history: list[dict[str, float]] = field(default_factory=list)


def random_shift(images: torch.Tensor, pad: int, generator: torch.Generator) -> torch.Tensor:
    """DrQ's augmentation: pad by replicating edges, crop back at a random offset (per image)."""
    if pad <= 0:
        return images
    b, h, w, c = images.shape
    x = F.pad(images.permute(0, 3, 1, 2).float(), (pad, pad, pad, pad), mode="replicate")
    dx = torch.randint(0, 2 * pad + 1, (b,), generator=generator)
    dy = torch.randint(0, 2 * pad + 1, (b,), generator=generator)
    rows = (torch.arange(h)[None, :] + dy[:, None])[:, None, :, None].expand(b, c, h, w + 2 * pad)
    x = torch.gather(x, 2, rows)
    cols = (torch.arange(w)[None, :] + dx[:, None])[:, None, None, :].expand(b, c, h, w)
    x = torch.gather(x, 3, cols)
    return x.permute(0, 2, 3, 1).round().to(images.dtype)


def _perturb_state(
    state: torch.Tensor, policy: GaussianActorCritic, scale: float, generator: torch.Generator
) -> torch.Tensor:
    """Gaussian noise of `scale` state standard deviations on the input state; the target action stays.

    With relative actions the target offset is taken from the perturbed state,
    so the policy learns to steer back to the demonstrated target (DART's idea,
    without re-recording): a cheap remedy for compounding errors.
    """
    noise = torch.randn(state.shape, generator=generator) * policy.state_std.cpu() * scale
    return state + noise


def _lr_factor(schedule: str, step: int, total: int, warmup: int) -> float:
    if warmup > 0 and step < warmup:
        return (step + 1) / warmup
    if schedule == "cosine" and total > warmup:
        progress = (step - warmup) / max(1, total - warmup)
        return 0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * min(1.0, progress)))
    return 1.0


@torch.no_grad()
def validation_loss(policy: GaussianActorCritic, data: FrameDataset, loss: str, batch_size: int = 1024) -> float:
    """Mean BC loss over all frames of `data` (no augmentation)."""
    was_training = policy.training
    policy.eval()
    total, n = 0.0, 0
    for start in range(0, len(data), batch_size):
        idx = np.arange(start, min(len(data), start + batch_size))
        obs, act = data.batch(idx)
        total += float(policy.bc_loss(obs, act, loss)) * len(idx)
        n += len(idx)
    policy.train(was_training)
    return total / max(1, n)


def fit_bc(
    policy: GaussianActorCritic,
    train_data: FrameDataset,
    val_data: FrameDataset | None = None,
    *,
    steps: int = 1000,
    batch_size: int = 256,
    lr: float = 3e-4,
    weight_decay: float = 0.0,
    grad_clip: float = 1.0,
    lr_schedule: Literal["constant", "cosine"] = "cosine",
    warmup_steps: int = 0,
    loss: Literal["mse", "nll"] = "mse",
    image_shift: int = 4,
    state_noise: float = 0.0,
    frame_weights: np.ndarray | None = None,
    seed: int = 0,
    log_every: int = 50,
    val_every: int = 500,
    checkpoint_every: int = 0,
    on_checkpoint: Callable[[int, torch.optim.Optimizer, torch.Generator, FitReport], None] | None = None,
    optimizer_state: Mapping[str, Any] | None = None,
    generator_state: torch.Tensor | None = None,
    start_step: int = 0,
    progress: bool = True,
    tracker: Tracker | None = None,
) -> FitReport:
    """Behaviour cloning: minimise the BC loss on random minibatches for `steps` optimiser steps in total.

    Resuming passes the saved `optimizer_state`, `generator_state` and
    `start_step`; the loop then continues to `steps`. `frame_weights` (one per
    training frame; None: uniform) sets how often each frame is drawn. `on_checkpoint` is
    called every `checkpoint_every` steps and at the end. Each logged step's
    entry also goes to `tracker` (metrics.jsonl, TensorBoard, W&B).
    """
    if len(train_data) == 0:
        raise PolicyError("no training frames")
    policy.train()
    optimizer = torch.optim.AdamW(policy.parameters(), lr=lr, weight_decay=weight_decay)
    if optimizer_state is not None:
        optimizer.load_state_dict(dict(optimizer_state))
    generator = torch.Generator().manual_seed(seed)
    if generator_state is not None:
        generator.set_state(generator_state)
    if frame_weights is not None:
        if len(frame_weights) != len(train_data):
            raise PolicyError(f"{len(frame_weights)} frame weights for {len(train_data)} training frames")
        weights = torch.as_tensor(np.asarray(frame_weights, dtype=np.float64))
    report = FitReport(steps=start_step, start_step=start_step)
    started = time.perf_counter()
    recent: list[float] = []
    bar = progress_bar(steps, initial=start_step, desc="train", unit="step", enabled=progress)
    step = start_step
    try:
        while step < steps:
            for group in optimizer.param_groups:
                group["lr"] = lr * _lr_factor(lr_schedule, step, steps, warmup_steps)
            if frame_weights is None:
                idx = torch.randint(0, len(train_data), (batch_size,), generator=generator).numpy()
            else:
                idx = torch.multinomial(weights, batch_size, replacement=True, generator=generator).numpy()
            obs, act = train_data.batch(idx)
            if state_noise > 0:
                obs["state"] = _perturb_state(obs["state"], policy, state_noise, generator)
            if image_shift > 0:
                obs["images"] = {c: random_shift(x, image_shift, generator) for c, x in obs["images"].items()}
            value = policy.bc_loss(obs, act, loss)
            optimizer.zero_grad(set_to_none=True)
            value.backward()
            if grad_clip > 0:
                torch.nn.utils.clip_grad_norm_(policy.parameters(), grad_clip)
            optimizer.step()
            step += 1
            recent.append(value.item())
            bar.update(1)
            last = step == steps
            if step % log_every == 0 or last:
                report.train_loss = float(np.mean(recent))
                entry = {"step": step, "loss": report.train_loss, "lr": optimizer.param_groups[0]["lr"],
                         "elapsed_s": time.perf_counter() - started}
                recent = []
                if val_data is not None and len(val_data) and (step % val_every == 0 or last):
                    report.val_loss = validation_loss(policy, val_data, loss)
                    entry["val_loss"] = report.val_loss
                    if report.best_val_loss is None or report.val_loss < report.best_val_loss:
                        report.best_val_loss = report.val_loss
                report.history.append(entry)
                if tracker is not None:
                    tracker.log({k: v for k, v in entry.items() if k != "step"}, step)
                bar.set_postfix({k: f"{v:.4g}" for k, v in entry.items() if k in ("loss", "val_loss")})
                log.debug("step %d: %s", step, entry)
            report.steps = step
            if on_checkpoint is not None and ((checkpoint_every and step % checkpoint_every == 0) or last):
                report.elapsed_s = time.perf_counter() - started
                on_checkpoint(step, optimizer, generator, report)
    finally:
        bar.close()
    policy.eval()
    report.elapsed_s = time.perf_counter() - started
    return report


# -- 3. the whole job --------------------------------------------------------------------------------


@dataclass
class BCTrainConfig:
    """`lrm-robot train-policy`: behaviour cloning of the small actor-critic from an episode store."""

    store: Path
    output_dir: Path
    policy: ActorCriticConfig = field(default_factory=ActorCriticConfig)
    select: list[EpisodeFilter] = field(default_factory=default_selection)
    max_episodes: Count | None = None  # use only the first N selected episodes (store order)
    val_fraction: float = 0.1
    steps: Steps = 2000  # optimiser steps in total
    epochs: PositiveFloat | None = None  # if set, steps = ceil(epochs * train frames / batch_size)
    batch_size: Count = 256
    lr: LearningRate = 3e-4
    weight_decay: NonNegativeFloat = 0.0
    grad_clip: PositiveFloat = 1.0
    lr_schedule: Literal["constant", "cosine"] = "cosine"
    warmup_steps: NonNegative = 0
    loss: Literal["mse", "nll"] = "mse"
    image_shift: NonNegative = 4  # random-shift augmentation in pixels (0 = off)
    state_noise: NonNegativeFloat = 0.0  # Gaussian input-state noise, in state standard deviations (0 = off)
    # how much more often a demonstration's frame is drawn than another episode's (a rollout's): 1 = as often
    demo_weight: PositiveFloat = 1.0
    log_every: int = 50
    val_every: int = 500
    checkpoint_every: Steps = 1000
    seed: Seed = 0
    resume: bool = False  # continue from OUTPUT/checkpoints/last
    # Fine-tune: start from this checkpoint's weights and normalisation statistics (e.g. the previous
    # round's policy) instead of a new policy; the `policy` section is then ignored. None = from scratch.
    init_from: Path | None = None
    num_threads: Threads | None = None  # torch CPU threads; None = torch's default
    progress: bool = True
    report_to: ReportTo = report_to_field()  # jsonl (OUTPUT/metrics.jsonl), tensorboard, wandb, none (common.tracking)

    def __post_init__(self) -> None:
        self.report_to = parse_report_to(self.report_to)
        if not 0 <= self.val_fraction < 1:
            raise ValueError(f"val_fraction must be in [0, 1), got {self.val_fraction}")
        for name in ("steps", "batch_size", "log_every", "val_every"):
            if getattr(self, name) <= 0:
                raise ValueError(f"{name} must be positive, got {getattr(self, name)}")
        if self.epochs is not None and self.epochs <= 0:
            raise ValueError(f"epochs must be positive, got {self.epochs}")
        if self.max_episodes is not None and self.max_episodes <= 0:
            raise ValueError(f"max_episodes must be positive, got {self.max_episodes}")
        if not self.select:
            raise ValueError("select needs at least one clause")


@dataclass
class TrainResult:
    """What `train_bc` produced."""

    checkpoint: Path
    report: FitReport
    train_episodes: list[int]
    val_episodes: list[int]
    train_frames: int
    val_frames: int
    total_steps: int

    @property
    def train_loss(self) -> float:
        return self.report.train_loss

    def summary(self) -> str:
        val = "" if self.report.val_loss is None else f", val loss {self.report.val_loss:.4g}"
        return (
            f"trained {self.report.steps - self.report.start_step} steps (to {self.report.steps}/{self.total_steps}) "
            f"on {len(self.train_episodes)} episodes / {self.train_frames} frames "
            f"({len(self.val_episodes)} / {self.val_frames} held out) in {self.report.elapsed_s:.1f} s: "
            f"train loss {self.report.train_loss:.4g}{val}; checkpoint {self.checkpoint}"
        )


def check_resume(out: Path, resume: bool, *, starting_from: str) -> bool:
    """Whether a run continues OUTPUT's checkpoint; refuses to start over one unless told to resume."""
    ckpt = out / CHECKPOINT_DIR
    resuming = resume and (ckpt / TRAINING_STATE).is_file()
    if resume and not resuming:
        log.info("no checkpoint in %s to continue; starting from %s", ckpt, starting_from)
    if not resume and ckpt.exists():
        raise PolicyError(f"{out} already holds a checkpoint; set resume: true to continue it, or choose another "
                          "output_dir (`lrm-robot train-policy` continues by default; --fresh starts over)")
    return resuming


def episode_split(store: EpisodeStore, config: Any, out: Path, resuming: bool) -> tuple[list[int], list[int]]:
    """Train / validation episode indices: the run's saved split when resuming, else a fresh one saved to OUTPUT.

    `config` carries store, select, max_episodes, val_fraction and seed (BCTrainConfig, Pi05TrainConfig).
    """
    split_path = out / "split.json"
    if resuming:
        try:
            split = json.loads(split_path.read_text())
            train_ids, val_ids = list(split["train"]), list(split["val"])
        except (OSError, ValueError, KeyError, TypeError) as exc:
            raise PolicyError(f"{split_path}: unreadable ({type(exc).__name__}: {exc}); the run cannot resume "
                              "without its split") from None
        if not all(type(i) is int for i in train_ids + val_ids):
            raise PolicyError(f"{split_path}: the split lists something other than episode indices")
        return train_ids, val_ids
    selected = [r.index for r in store.episodes(*config.select)]
    if config.max_episodes is not None:
        selected = selected[: config.max_episodes]
    if not selected:
        raise PolicyError(f"{config.store}: no episode matches the selection ({store.num_episodes} in store)")
    train_ids, val_ids = shuffled_split(selected, config.val_fraction, config.seed)
    out.mkdir(parents=True, exist_ok=True)
    split_path.write_text(json.dumps({"train": train_ids, "val": val_ids}) + "\n")
    return train_ids, val_ids


def train_bc(config: BCTrainConfig) -> TrainResult:
    """Select, split, load, normalise, fit, checkpoint: behaviour cloning from the store end to end."""

    if config.num_threads:
        torch.set_num_threads(config.num_threads)
    torch.manual_seed(config.seed)
    out = Path(config.output_dir)
    ckpt = out / CHECKPOINT_DIR
    resuming = check_resume(out, config.resume, starting_from="scratch")
    # read before any work: a damaged or planted state file ends the run here, in one line
    state: dict[str, Any] = load_training_state(ckpt / TRAINING_STATE) if resuming else {}

    with EpisodeStore.open(config.store, mode="r") as store:
        train_ids, val_ids = episode_split(store, config, out, resuming)
        log.info("loading %d train + %d validation episodes from %s", len(train_ids), len(val_ids), config.store)
        arch = config.policy if config.init_from is None else _checkpoint_arch(config.init_from)
        cameras = list(arch.cameras)
        chunk = arch.chunk_size
        train_data = load_frames(store, train_ids, cameras, chunk)
        val_data = load_frames(store, val_ids, cameras, chunk) if val_ids else None
        frame_weights = None
        if config.demo_weight != 1.0:
            demos = {i for i in train_ids if store.record(i).meta.source == "demo"}
            frame_weights = np.where(np.isin(train_data.episode, list(demos)), config.demo_weight, 1.0)

    total_steps = config.steps
    if config.epochs is not None:
        total_steps = max(1, math.ceil(config.epochs * len(train_data) / config.batch_size))

    if resuming:
        policy = GaussianActorCritic.from_pretrained(ckpt)
        log.info("resuming from %s at step %d of %d", ckpt, state["step"], total_steps)
    elif config.init_from is not None:
        try:
            policy = GaussianActorCritic.from_pretrained(config.init_from)
        except (FileNotFoundError, ValueError) as exc:
            raise PolicyError(f"init_from: {exc}") from None
        log.info("fine-tuning %s", config.init_from)
    else:
        stats = compute_stats(train_data.state, train_data.action, config.policy.std_floor, config.policy)
        try:
            policy = make_policy(
                config.policy, stats=stats, state_dim=train_data.state.shape[1],
                action_dim=train_data.action_dim, image_sizes=train_data.image_sizes,
            )
        except ValueError as exc:
            raise PolicyError(str(exc)) from None

    def save(step: int, optimizer: torch.optim.Optimizer, generator: torch.Generator, report: FitReport) -> None:
        _save_checkpoint(ckpt, policy, optimizer, generator, step)
        _write_metrics(out / "metrics.json", config, report)

    tracker = make_tracker(config.report_to, out, run_name=f"bc-{out.name}", config=_jsonable(dataclasses.asdict(config)),
                           resume_step=int(state.get("step", 0)))
    with tracker:
        report = fit_bc(
            policy,
            train_data,
            val_data,
            steps=total_steps,
            batch_size=config.batch_size,
            lr=config.lr,
            weight_decay=config.weight_decay,
            grad_clip=config.grad_clip,
            lr_schedule=config.lr_schedule,
            warmup_steps=config.warmup_steps,
            loss=config.loss,
            image_shift=config.image_shift,
            state_noise=config.state_noise,
            frame_weights=frame_weights,
            seed=config.seed,
            log_every=config.log_every,
            val_every=config.val_every,
            checkpoint_every=config.checkpoint_every,
            on_checkpoint=save,
            optimizer_state=state.get("optimizer"),
            generator_state=state.get("generator"),
            start_step=int(state.get("step", 0)),
            progress=config.progress,
            tracker=tracker,
        )
    if report.steps == report.start_step:  # nothing left to do after a resume: still leave metrics
        _write_metrics(out / "metrics.json", config, report)
    result = TrainResult(ckpt, report, train_ids, val_ids, len(train_data), len(val_data or []), total_steps)
    log.info("%s", result.summary())
    return result


def _checkpoint_arch(path: Path) -> ActorCriticConfig:
    """The architecture of the checkpoint to fine-tune (its cameras and chunk size decide the frames to load)."""
    try:
        return ActorCriticConfig.from_json(json.loads((Path(path) / "config.json").read_text()))
    except (OSError, ValueError, TypeError) as exc:
        raise PolicyError(f"init_from: {path} is not an actor-critic checkpoint ({exc})") from None


def _save_checkpoint(
    path: Path, policy: GaussianActorCritic, optimizer: torch.optim.Optimizer, generator: torch.Generator, step: int
) -> None:
    """Write the checkpoint into a sibling temp dir, then swap it in: a crash never leaves half of one."""
    tmp = path.with_name(path.name + ".tmp")
    if tmp.exists():
        _rmtree(tmp)
    policy.save_pretrained(tmp)
    torch.save({"step": step, "optimizer": optimizer.state_dict(), "generator": generator.get_state()},
               tmp / TRAINING_STATE)
    old = path.with_name(path.name + ".old")
    if path.exists():
        if old.exists():
            _rmtree(old)
        os.replace(path, old)
    os.replace(tmp, path)
    if old.exists():
        _rmtree(old)


def _rmtree(path: Path) -> None:
    import shutil

    shutil.rmtree(path, ignore_errors=True)


def _write_metrics(path: Path, config: BCTrainConfig, report: FitReport) -> None:
    """metrics.json: the config, the loss history (kept across resumes) and the latest numbers."""
    history: list[dict[str, float]] = []
    if path.is_file():  # entries up to the resumed step come from earlier runs; later ones are this run's
        try:
            history = [h for h in json.loads(path.read_text()).get("history", []) if h["step"] <= report.start_step]
        except (ValueError, KeyError, TypeError):
            log.warning("%s is unreadable; starting a new loss history", path)
    data = {
        "steps": report.steps,
        "train_loss": report.train_loss,
        "val_loss": report.val_loss,
        "best_val_loss": report.best_val_loss,
        "elapsed_s": report.elapsed_s,
        "history": history + report.history,
        "config": _jsonable(dataclasses.asdict(config)),
    }
    tmp = path.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(data, indent=2) + "\n")
    os.replace(tmp, path)


def _jsonable(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    if isinstance(value, os.PathLike):
        return os.fspath(value)
    return value
