"""Training the compact reward model (`lrm.backends.lite`) on a CPU: from labels or from a teacher.

`train_lite` trains one from a `lrm.training.dataset.RewardDataset`; `distill_lite`
trains one on another backend's scores of the same examples (teacher to
student, e.g. a Qwen3-VL LRM on a GPU machine compressed into this model).
`evaluate_lite` and `example_losses` give the held-out numbers a run reports.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import math
import os
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from common.progress import progress_bar
from lrm.backends.lite import LiteRewardModel
from lrm.backends.lite_config import LiteConfig, LiteTrainConfig
from lrm.training.dataset import Example, RewardDataset
from lrm.types import MODALITIES, Reward

log = logging.getLogger(__name__)

__all__ = ["distill_lite", "evaluate_lite", "example_losses", "teacher_labels", "train_lite"]


class _Split:
    """One split's examples as tensors: an image bank and, per modality, rows into it plus labels."""

    def __init__(self, dataset: RewardDataset, examples: list[Example], model: LiteRewardModel) -> None:
        bank, refs = dataset.image_bank(examples, tuple(model.config.image_size))
        self.bank = torch.from_numpy(bank)
        self.data: dict[str, dict[str, torch.Tensor]] = {}
        for modality in MODALITIES:
            idx = [i for i, ex in enumerate(examples) if ex.modality == modality]
            if not idx:
                continue
            keys = sorted(refs[idx[0]])
            entry = {k: torch.tensor([refs[i][k] for i in idx], dtype=torch.long) for k in keys}
            entry["label"] = torch.tensor([examples[i].label for i in idx], dtype=torch.float32)
            entry["task"] = model.task_ids([examples[i].task for i in idx]).cpu()
            self.data[modality] = entry

    def batch(self, modality: str, rows: torch.Tensor, shift: int, gen: torch.Generator | None):
        entry = self.data[modality]
        frames = {k: _shift(self.bank[entry[k][rows]], shift, gen) for k in ("current", "first", "previous") if k in entry}
        return frames, entry["task"][rows], entry["label"][rows]


def _shift(images: torch.Tensor, shift: int, gen: torch.Generator | None) -> torch.Tensor:
    """Translate each (H, W, 3) image by up to `shift` pixels (edge-replicated); identity when 0."""
    if shift <= 0 or gen is None:
        return images
    b, h, w, _ = images.shape
    padded = F.pad(images.permute(0, 3, 1, 2).float(), (shift, shift, shift, shift), mode="replicate")
    offsets = torch.randint(0, 2 * shift + 1, (b, 2), generator=gen)
    out = torch.stack([padded[i, :, y : y + h, x : x + w] for i, (y, x) in enumerate(offsets.tolist())])
    return out.permute(0, 2, 3, 1).to(torch.uint8)


def _losses(
    model: LiteRewardModel, split: _Split, modality: str, rows: torch.Tensor, cfg: LiteTrainConfig,
    gen: torch.Generator | None, pos_weight: torch.Tensor | None,
) -> torch.Tensor:
    frames, tasks, labels = split.batch(modality, rows, cfg.shift_augment if gen is not None else 0, gen)
    out = model.head_outputs(modality, frames, tasks.to(model.device))
    labels = labels.to(model.device)
    if modality == "progress":
        values = model.bin_values
        labels = labels.clamp(0, 1)
        if cfg.progress_label_sigma > 0:
            target = torch.softmax(-((values[None] - labels[:, None]) ** 2) / (2 * cfg.progress_label_sigma**2), -1)
        else:
            target = F.one_hot((labels * (len(values) - 1)).round().long(), len(values)).float()
        return -(target * out.log_softmax(-1)).sum(-1).mean()
    # Soft targets: ground truth gives 0/1 and +-1; a teacher (distill_lite) gives probabilities.
    target = labels.clamp(0, 1) if modality == "completion" else ((labels + 1) / 2).clamp(0, 1)
    return F.binary_cross_entropy_with_logits(out, target, pos_weight=pos_weight)


def train_lite(
    dataset: RewardDataset,
    train_config: LiteTrainConfig | None = None,
    model_config: LiteConfig | None = None,
    *,
    model: LiteRewardModel | None = None,
    output_dir: str | os.PathLike[str] | None = None,
    tracker: Any | None = None,
    progress: bool = True,
) -> tuple[LiteRewardModel, dict[str, Any]]:
    """Train on `dataset.train` (every modality it has), evaluate on `dataset.val`; returns (model, history).

    A new model's task vocabulary is the dataset's task strings unless
    `model_config.tasks` names them. Each step draws `batch_size` examples of
    every modality (seeded) and sums the weighted losses. `history` holds the
    training loss every `log_every` steps, the seconds taken and the held-out
    metrics of `evaluate_lite`. With `output_dir` the model is saved there.
    A `tracker` (common.tracking.Tracker) gets the loss and learning rate of
    every logged step and the held-out metrics (`val/...`) at the last step;
    `progress` shows a progress bar (on a terminal).
    """
    cfg = train_config or LiteTrainConfig()
    torch.manual_seed(cfg.seed)
    if model is None:
        mc = model_config or LiteConfig()
        if not mc.tasks:
            mc = LiteConfig.from_json({**mc.to_json(), "tasks": sorted({ex.task for ex in dataset.train + dataset.val})})
        model = LiteRewardModel(mc)
    gen = torch.Generator().manual_seed(cfg.seed)
    split = _Split(dataset, dataset.train, model)
    modalities = [m for m in split.data if cfg.loss_weights.get(m, 0.0) > 0]
    if not modalities:
        raise ValueError("the dataset has no training examples of a modality with a positive loss weight")
    pos_weight = None
    if "completion" in split.data and cfg.balance_completion:
        labels = split.data["completion"]["label"]
        n_pos = float((labels > 0.5).sum())
        hard = bool(((labels == 0) | (labels == 1)).all())  # soft (teacher) targets are matched as given
        if hard and 0 < n_pos < len(labels):
            pos_weight = torch.tensor((len(labels) - n_pos) / n_pos, device=model.device)
    opt = torch.optim.AdamW(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: 0.5 * (1 + math.cos(math.pi * min(s / max(cfg.steps, 1), 1.0))))
    history: dict[str, Any] = {"steps": [], "loss": [], "train_examples": {m: len(split.data[m]["label"]) for m in split.data},
                               # the heads that learned anything: the others keep their random init, and a
                               # reader (`score`) must not present their output as a reward
                               "trained_modalities": list(modalities)}
    model.train()
    start = time.perf_counter()
    running: list[float] = []
    with progress_bar(cfg.steps, desc="lite", unit="step", enabled=progress) as bar:
        for step in range(1, cfg.steps + 1):
            total = torch.zeros((), device=model.device)
            for m in modalities:
                n = len(split.data[m]["label"])
                rows = torch.randint(0, n, (min(cfg.batch_size, n),), generator=gen)
                total = total + cfg.loss_weights[m] * _losses(model, split, m, rows, cfg, gen, pos_weight)
            opt.zero_grad(set_to_none=True)
            total.backward()
            opt.step()
            lr = opt.param_groups[0]["lr"]
            sched.step()
            running.append(float(total.detach()))
            bar.update(1)
            if step % cfg.log_every == 0 or step == cfg.steps:
                history["steps"].append(step)
                history["loss"].append(float(np.mean(running)))
                log.info("lite step %d/%d: loss %.4f", step, cfg.steps, history["loss"][-1])
                bar.set_postfix(loss=f"{history['loss'][-1]:.4f}")
                if tracker is not None and step < cfg.steps:  # the last step's row waits for the held-out numbers
                    tracker.log({"loss": history["loss"][-1], "lr": lr}, step)
                running = []
    model.eval()
    history["seconds"] = time.perf_counter() - start
    if dataset.val:
        history["val"] = evaluate_lite(model, dataset, dataset.val)
    if tracker is not None:
        last = {"loss": history["loss"][-1], "lr": lr} if history["loss"] else {}
        tracker.log({**last, "seconds": history["seconds"], **{f"val/{k}": v for k, v in history.get("val", {}).items()}},
                    cfg.steps)
    if output_dir is not None:
        model.save_pretrained(output_dir)
        (Path(output_dir) / "history.json").write_text(json.dumps(history, indent=2) + "\n")
    return model, history


def teacher_labels(
    dataset: RewardDataset,
    examples: list[Example],
    teacher: Any,
    *,
    size: tuple[int, int] | None = None,
    batch_size: int = 64,
) -> list[Example]:
    """The examples relabelled with another backend's rewards (any RewardModel): the distillation targets.

    progress: the teacher's value (its expectation in logits mode); completion:
    P(yes) where the teacher gives probabilities, else its 0/1 value;
    contrastive: its value in [-1, 1]. Backends that need the episode video
    (Robometer, TOPReward, RoboReward) are refused: examples hold keyframes only.
    """
    if getattr(teacher, "needs_video", False):
        raise ValueError("the teacher needs the episode video; distill from a frame-based backend (qwen3vl, lite)")
    out: list[Example] = []
    for s in range(0, len(examples), batch_size):
        chunk = examples[s : s + batch_size]
        rewards = teacher.score(dataset.requests(chunk, size))
        for ex, r in zip(chunk, rewards, strict=True):
            value = float(r.value)
            if ex.modality == "completion" and r.probs and "yes" in r.probs:
                value = float(r.probs["yes"])
            out.append(dataclasses.replace(ex, label=value, kind=f"teacher:{ex.kind}"))
    return out


def distill_lite(
    dataset: RewardDataset,
    teacher: Any,
    train_config: LiteTrainConfig | None = None,
    model_config: LiteConfig | None = None,
    *,
    model: LiteRewardModel | None = None,
    output_dir: str | os.PathLike[str] | None = None,
    teacher_image_size: tuple[int, int] | None = None,
    tracker: Any | None = None,
    progress: bool = True,
) -> tuple[LiteRewardModel, dict[str, Any]]:
    """Train the compact model on a teacher backend's scores of `dataset.train` (teacher to student).

    The held-out metrics in the history still compare with the ground truth of
    `dataset.val`, so they say how good the student is, not how close to the teacher.
    """
    train = teacher_labels(dataset, dataset.train, teacher, size=teacher_image_size)
    relabelled = dataclasses.replace(dataset, train=train)
    model, history = train_lite(relabelled, train_config, model_config, model=model, output_dir=output_dir,
                                tracker=tracker, progress=progress)
    history["teacher"] = type(teacher).__name__
    return model, history


def example_losses(model: LiteRewardModel, dataset: RewardDataset, examples: list[Example]) -> dict[str, float]:
    """Mean unweighted loss per modality on `examples` (no augmentation, no balancing)."""
    split = _Split(dataset, examples, model)
    cfg = LiteTrainConfig()
    out = {}
    with torch.no_grad():
        for m, entry in split.data.items():
            out[m] = float(_losses(model, split, m, torch.arange(len(entry["label"])), cfg, None, None))
    return out


def evaluate_lite(model: LiteRewardModel, dataset: RewardDataset, examples: list[Example]) -> dict[str, float]:
    """Held-out numbers: progress MAE and mean per-episode Spearman rho, completion accuracy (plain and
    balanced: the mean of the recalls of "yes" and "no", since negatives outnumber positives ~10:1), and
    contrastive direction accuracy. The full reward-quality suite (issue 5, item 4) comes later."""
    from scipy.stats import spearmanr

    out: dict[str, float] = {}
    requests = dataset.requests(examples, tuple(model.config.image_size))
    rewards = model.score(requests)
    by_mod: dict[str, list[tuple[Example, Reward]]] = {}
    for ex, r in zip(examples, rewards, strict=True):
        by_mod.setdefault(ex.modality, []).append((ex, r))
    if "progress" in by_mod:
        pairs = by_mod["progress"]
        out["progress_mae"] = float(np.mean([abs(r.value - ex.label) for ex, r in pairs]))
        rhos = []
        for episode in sorted({ex.episode for ex, _ in pairs}):
            mine = [(ex.label, r.value) for ex, r in pairs if ex.episode == episode]
            if len(mine) > 2:
                rho = spearmanr([a for a, _ in mine], [b for _, b in mine]).statistic
                rhos.append(0.0 if np.isnan(rho) else float(rho))
        if rhos:
            out["progress_spearman"] = float(np.mean(rhos))
    if "completion" in by_mod:
        pairs = by_mod["completion"]
        out["completion_accuracy"] = float(np.mean([(r.value >= 0.5) == (ex.label >= 0.5) for ex, r in pairs]))
        recalls = [
            np.mean([(r.value >= 0.5) == want for ex, r in pairs if (ex.label >= 0.5) == want])
            for want in (True, False)
            if any((ex.label >= 0.5) == want for ex, _ in pairs)
        ]
        out["completion_balanced_accuracy"] = float(np.mean(recalls))
    if "contrastive" in by_mod:
        pairs = by_mod["contrastive"]
        out["contrastive_accuracy"] = float(np.mean([(r.value > 0) == (ex.label > 0) for ex, r in pairs]))
    return out
