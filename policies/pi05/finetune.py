"""Fine-tuning pi0.5 from the episode store, with LeRobot's own training pieces.

One readable path, top to bottom (`finetune_pi05`):

1. select episodes with the same filter clauses as behaviour cloning
   (`recordings.selection.EpisodeFilter`) and split them into train / validation
   by episode;
2. export each split to a LeRobotDataset (`recordings.lerobot_export`) and
   load it with `LeRobotDataset`, actions as chunks (`delta_timestamps`);
3. build the policy with LeRobot's `make_policy` from a base or fine-tuned
   checkpoint (input features from the checkpoint, the action feature from
   the data), and its processors with `make_pre_post_processors`, the
   normalisation statistics replaced by the training split's (as
   `lerobot-train` does); `rename_map` maps dataset keys onto the
   checkpoint's (e.g. `observation.images.base_camera` ->
   `observation.images.base_0_rgb`);
4. optimise with the policy's optimiser and scheduler presets (AdamW, cosine
   decay with warm-up, auto-scaled to the run's length) and its gradient
   clipping, with a progress bar, a held-out validation loss (fixed noise
   and flow-matching times, so that it is comparable between evaluations)
   and periodic checkpoints;
5. resume: OUTPUT/checkpoints/last holds the policy and processors (LeRobot
   format, loadable by `policies.pi05.Pi05Policy`), the optimiser and
   scheduler state and the step; OUTPUT/split.json the episode split;
   OUTPUT/metrics.jsonl one row per logged step (`report_to`, common.tracking).
"""

from __future__ import annotations

import contextlib
import io
import json
import logging
import math
import os
import shutil
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Literal

from common.checkpoint_files import load_training_state
from common.progress import progress_bar
from common.tracking import ReportTo, make_tracker, parse_report_to, report_to_field
from common.numbers import Count, LearningRate, Seed, Steps
from policies.errors import PolicyError
from policies.pi05.policy import TOKENIZER_DIR, resolve_device_dtype, save_pi05
from policies.actor_critic.bc_train import check_resume, episode_split
from recordings.selection import EpisodeFilter, default_selection
from recordings.store import EpisodeStore

log = logging.getLogger(__name__)

__all__ = ["Pi05TrainConfig", "Pi05TrainResult", "finetune_pi05"]

CHECKPOINT_DIR = "checkpoints/last"
TRAINING_STATE = "training_state.pt"
REPO_ID = "local/lrm-robot-pi05"


@dataclass
class Pi05TrainConfig:
    """Fine-tuning pi0.5 from an episode store; YAML-friendly."""

    store: Path
    output_dir: Path
    pretrained: str  # base or fine-tuned checkpoint (folder or hub id) to start from
    type: Literal["pi05"] = "pi05"  # `lrm-robot train-policy` picks this config by it
    select: list[EpisodeFilter] = field(default_factory=default_selection)
    max_episodes: Count | None = None
    val_fraction: float = 0.1
    rename_map: dict[str, str] = field(default_factory=dict)  # dataset key -> checkpoint feature key
    steps: Steps = 3000
    batch_size: Count = 8
    optimizer_lr: LearningRate | None = None  # None = the checkpoint's preset peak learning rate
    chunk_size: int | None = None  # None = the checkpoint's
    n_action_steps: int | None = None
    device: str = "auto"
    dtype: Literal["auto", "bfloat16", "float32"] = "auto"
    tokenizer: str | None = None  # replaces the processor's tokenizer; None = the checkpoint's tokenizer/ if any
    num_workers: int = 0
    log_every: int = 50
    val_every: int = 500
    val_batches: int = 8
    checkpoint_every: int = 1000
    seed: Seed = 0
    resume: bool = False
    progress: bool = True
    report_to: ReportTo = report_to_field()  # jsonl (OUTPUT/metrics.jsonl), tensorboard, wandb, none (common.tracking)

    def __post_init__(self) -> None:
        self.report_to = parse_report_to(self.report_to)
        if not 0 <= self.val_fraction < 1:
            raise ValueError(f"val_fraction must be in [0, 1), got {self.val_fraction}")
        for name in ("steps", "batch_size", "log_every", "val_every", "val_batches", "checkpoint_every"):
            if getattr(self, name) <= 0:
                raise ValueError(f"{name} must be positive, got {getattr(self, name)}")
        if self.max_episodes is not None and self.max_episodes <= 0:
            raise ValueError(f"max_episodes must be positive, got {self.max_episodes}")
        if not self.select:
            raise ValueError("select needs at least one clause")


@dataclass
class Pi05TrainResult:
    """What `finetune_pi05` produced."""

    checkpoint: Path
    start_step: int
    steps: int
    train_loss: float | None
    val_loss: float | None
    train_episodes: list[int]
    val_episodes: list[int]
    train_frames: int
    elapsed_s: float
    history: list[dict[str, float]] = field(default_factory=list)

    def summary(self) -> str:
        val = "" if self.val_loss is None else f", val loss {self.val_loss:.4g}"
        train = "n/a" if self.train_loss is None else f"{self.train_loss:.4g}"
        return (
            f"pi0.5: trained steps {self.start_step}->{self.steps} on {len(self.train_episodes)} episodes / "
            f"{self.train_frames} frames ({len(self.val_episodes)} held out) in {self.elapsed_s:.1f} s: "
            f"train loss {train}{val}; checkpoint {self.checkpoint}"
        )


def finetune_pi05(config: Pi05TrainConfig) -> Pi05TrainResult:
    """Select, export, build, optimise, checkpoint: pi0.5 fine-tuning from the store end to end."""
    import torch
    from lerobot.configs import FeatureType, PreTrainedConfig
    from lerobot.datasets.lerobot_dataset import LeRobotDataset
    from lerobot.policies.factory import make_policy, make_pre_post_processors
    from lerobot.policies.pi05 import PI05Config
    from lerobot.utils.feature_utils import dataset_to_policy_features

    from recordings.lerobot_export import export_lerobot

    started = time.perf_counter()
    torch.manual_seed(config.seed)
    out = Path(config.output_dir)
    ckpt = out / CHECKPOINT_DIR
    resuming = check_resume(out, config.resume, starting_from=config.pretrained)
    # read before any work: a damaged or planted state file ends the run here, in one line
    state = load_training_state(ckpt / TRAINING_STATE) if resuming else {}

    # 1-2. select, split, export, load
    with EpisodeStore.open(config.store, mode="r") as store:
        train_ids, val_ids = episode_split(store, config, out, resuming)
        roots = {}
        for name, ids in (("train", train_ids), ("val", val_ids)):
            if ids:
                roots[name] = export_lerobot(store, out / "data" / name, repo_id=REPO_ID, episodes=ids, overwrite=True)

    source = str(ckpt) if resuming else config.pretrained
    device, dtype = resolve_device_dtype(config.device, config.dtype)
    try:
        policy_cfg = PreTrainedConfig.from_pretrained(source)
    except Exception as exc:  # noqa: BLE001 - one line for the user
        raise PolicyError(f"cannot read the policy config of {source}: {exc}") from None
    if not isinstance(policy_cfg, PI05Config):
        raise PolicyError(f"{source} holds a {policy_cfg.type!r} policy, not pi05")
    policy_cfg.pretrained_path = source
    policy_cfg.device, policy_cfg.dtype = device, dtype
    if config.chunk_size is not None:
        policy_cfg.chunk_size = config.chunk_size
        policy_cfg.n_action_steps = min(policy_cfg.n_action_steps, config.chunk_size)
    if config.n_action_steps is not None:
        policy_cfg.n_action_steps = config.n_action_steps
    if config.optimizer_lr is not None:
        policy_cfg.optimizer_lr = config.optimizer_lr
    if not 1 <= policy_cfg.n_action_steps <= policy_cfg.chunk_size:
        raise PolicyError(
            f"n_action_steps {policy_cfg.n_action_steps} must be in [1, chunk_size={policy_cfg.chunk_size}]"
        )

    train_meta = LeRobotDataset(REPO_ID, root=roots["train"]).meta
    fps = train_meta.fps
    delta = {"action": [i / fps for i in range(policy_cfg.chunk_size)]}
    train_set = LeRobotDataset(REPO_ID, root=roots["train"], delta_timestamps=delta)
    val_set = LeRobotDataset(REPO_ID, root=roots["val"], delta_timestamps=delta) if "val" in roots else None

    # 3. policy and processors (LeRobot's factories; prints captured, failed weight loads refused)
    printed = io.StringIO()
    with contextlib.redirect_stdout(printed):
        policy = make_policy(policy_cfg, ds_meta=train_set.meta, rename_map=config.rename_map or None)
    _check_loaded(printed.getvalue(), source)
    # A base checkpoint declares a padded state (e.g. 32); the model pads anyway, so record the
    # data's true size: the saved checkpoint then says what it was trained on (Pi05Policy checks it).
    data_features = dataset_to_policy_features(train_set.meta.features)
    for key, feature in list(policy.config.input_features.items()):
        renamed = {v: k for k, v in config.rename_map.items()}.get(key, key)
        if feature.type is FeatureType.STATE and renamed in data_features:
            policy.config.input_features[key] = data_features[renamed]
    tokenizer = config.tokenizer
    local = Path(source)
    if tokenizer is None and local.is_dir() and (local / TOKENIZER_DIR).is_dir():
        tokenizer = str(local / TOKENIZER_DIR)
    pre_overrides: dict[str, Any] = {
        "device_processor": {"device": device},
        "normalizer_processor": {
            "features": {**policy.config.input_features, **policy.config.output_features},
            "norm_map": policy.config.normalization_mapping,
        },
        "rename_observations_processor": {"rename_map": dict(config.rename_map)},
    }
    post_overrides: dict[str, Any] = {
        "unnormalizer_processor": {
            "features": policy.config.output_features,
            "norm_map": policy.config.normalization_mapping,
        }
    }
    if not resuming:  # a fresh fine-tune normalises with its own data; a resume keeps the checkpoint's
        pre_overrides["normalizer_processor"]["stats"] = train_set.meta.stats
        post_overrides["unnormalizer_processor"]["stats"] = train_set.meta.stats
    if tokenizer is not None:
        pre_overrides["tokenizer_processor"] = {"tokenizer_name": tokenizer}
    try:
        preprocessor, postprocessor = make_pre_post_processors(
            policy.config, pretrained_path=source,
            preprocessor_overrides=pre_overrides, postprocessor_overrides=post_overrides,
        )
    except Exception as exc:  # noqa: BLE001
        raise PolicyError(f"cannot load the pi0.5 processors of {source}: {exc}") from None

    # 4. optimiser and scheduler presets
    optimizer = policy.config.get_optimizer_preset().build(policy.get_optim_params())
    scheduler_cfg = policy.config.get_scheduler_preset()
    with contextlib.redirect_stdout(io.StringIO()):
        scheduler = scheduler_cfg.build(optimizer, num_training_steps=config.steps) if scheduler_cfg else None
    grad_clip = policy.config.optimizer_grad_clip_norm
    start_step = 0
    history: list[dict[str, float]] = []
    if resuming:
        optimizer.load_state_dict(state["optimizer"])
        if scheduler is not None and state.get("scheduler") is not None:
            scheduler.load_state_dict(state["scheduler"])
        start_step = int(state["step"])
        history = list(state.get("history", []))
        log.info("resuming from %s at step %d of %d", ckpt, start_step, config.steps)

    sampler_gen = torch.Generator().manual_seed(config.seed + start_step)
    loader = torch.utils.data.DataLoader(
        train_set, batch_size=config.batch_size, shuffle=True, drop_last=len(train_set) >= config.batch_size,
        num_workers=config.num_workers, generator=sampler_gen,
    )

    def batches() -> Any:
        while True:
            yield from loader

    def validation_loss() -> float | None:
        if val_set is None:
            return None
        policy.eval()
        val_loader = torch.utils.data.DataLoader(val_set, batch_size=config.batch_size, shuffle=False)
        total, count = 0.0, 0
        with torch.no_grad(), torch.random.fork_rng(devices=[] if device == "cpu" else None):
            torch.manual_seed(config.seed)  # the same noise and times at every evaluation
            for i, batch in enumerate(val_loader):
                if i >= config.val_batches:
                    break
                loss, _ = policy.forward(preprocessor(batch))
                n = len(batch["action"])
                total, count = total + float(loss) * n, count + n
        policy.train()
        return total / max(count, 1)

    def save(step: int) -> None:
        tmp = ckpt.with_name(ckpt.name + ".tmp")
        shutil.rmtree(tmp, ignore_errors=True)
        save_pi05(policy, preprocessor, postprocessor, tmp)
        if tokenizer is not None and Path(tokenizer).is_dir():
            shutil.copytree(tokenizer, tmp / TOKENIZER_DIR, dirs_exist_ok=True)
        torch.save(
            {"step": step, "optimizer": optimizer.state_dict(),
             "scheduler": None if scheduler is None else scheduler.state_dict(), "history": history},
            tmp / TRAINING_STATE,
        )
        old = ckpt.with_name(ckpt.name + ".old")
        shutil.rmtree(old, ignore_errors=True)
        if ckpt.exists():
            os.replace(ckpt, old)
        os.replace(tmp, ckpt)
        shutil.rmtree(old, ignore_errors=True)
        (out / "metrics.json").write_text(json.dumps({"config": _jsonable(asdict(config)), "history": history},
                                                     indent=2) + "\n")

    # 5. the loop
    policy.train()
    train_loss = val_loss = None
    running: list[float] = []
    stream = batches()
    bar = progress_bar(config.steps, initial=start_step, desc="pi0.5", unit="step", enabled=config.progress)
    tracker = make_tracker(config.report_to, out, run_name=f"pi05-{out.name}", config=_jsonable(asdict(config)),
                           resume_step=start_step)
    step = start_step
    try:
        for step in range(start_step + 1, config.steps + 1):
            batch = preprocessor(next(stream))
            loss, _ = policy.forward(batch)
            value = loss.detach().item()
            if not math.isfinite(value):
                raise PolicyError(f"the loss is {value} at step {step}")
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(policy.parameters(), grad_clip)
            optimizer.step()
            if scheduler is not None:
                scheduler.step()
            running.append(value)
            bar.update()
            if step % config.log_every == 0 or step == config.steps:
                train_loss = sum(running) / len(running)
                running = []
                history.append({"step": step, "train_loss": train_loss, "lr": optimizer.param_groups[0]["lr"]})
                bar.set_postfix(loss=f"{train_loss:.4g}")
                tracker.log({"train_loss": train_loss, "lr": optimizer.param_groups[0]["lr"]}, step)
            if step % config.val_every == 0 or step == config.steps:
                val_loss = validation_loss()
                if val_loss is not None:
                    history.append({"step": step, "val_loss": val_loss})
                    tracker.log({"val_loss": val_loss}, step)
            if step % config.checkpoint_every == 0 or step == config.steps:
                save(step)
    finally:
        bar.close()
        tracker.close()
    if step == start_step and not ckpt.exists():
        save(step)
    result = Pi05TrainResult(
        checkpoint=ckpt, start_step=start_step, steps=max(step, start_step), train_loss=train_loss,
        val_loss=val_loss, train_episodes=train_ids, val_episodes=val_ids, train_frames=len(train_set),
        elapsed_s=time.perf_counter() - started, history=history,
    )
    log.info("%s", result.summary())
    return result


def _check_loaded(printed: str, source: str) -> None:
    log.debug("LeRobot said: %s", printed)
    markers = ("Could not load state dict", "Returning model without loading", "Missing keys", "Unexpected keys")
    failures = [line.strip() for line in printed.splitlines() if any(m in line for m in markers)]
    if failures:
        raise PolicyError(f"the weights of {source} did not load: {failures[0]}")


def _jsonable(value: Any) -> Any:
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_jsonable(v) for v in value]
    if isinstance(value, Path):
        return str(value)
    return value
