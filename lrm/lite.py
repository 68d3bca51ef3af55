"""The compact reward model (`lite` backend): a small CNN with the LRM's three heads, trained on a CPU.

Architecture (`LiteConfig`): one convolutional image encoder trained from
scratch (stride-2 3x3 convs, a 4x4 adaptive pool, a linear layer to
`feature_dim`) shared by all heads, and optionally a learned embedding per
task string (`tasks`; an unknown task gets the shared "unknown" row 0).

- progress: (current, first, task) -> a distribution over the eleven values
  0.0..1.0; the reward is its expectation, `probs` maps "0.0".."1.0";
- completion: (current, task) -> P(completed); the reward is that
  probability, `probs` = {"yes": p, "no": 1 - p};
- contrastive: (previous, current, task) -> P(current more complete), built
  antisymmetric (logit = g(cur, prev) - g(prev, cur)) so swapping the frames
  gives exactly 1 - P; the reward is P(current) - P(previous) in [-1, 1], as
  the Qwen3-VL backend's logits mode, `probs` = {"1": 1 - p, "2": p}.

A checkpoint is a directory with config.json (`LiteConfig`) and
model.safetensors; `LiteRewardModel.from_pretrained` rebuilds it exactly.
`train_lite` trains one from a `lrm.dataset.RewardDataset`; `distill_lite`
trains one on another backend's scores of the same examples (teacher to
student, e.g. a Qwen3-VL LRM on a GPU machine compressed into this model).
"""

from __future__ import annotations

import dataclasses
import json
import logging
import math
import os
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from lrm.dataset import Example, RewardDataset
from lrm.lite_config import LiteBackendConfig, LiteConfig, LiteTrainConfig
from lrm.types import MODALITIES, Reward, RewardRequest, prepare_frames

log = logging.getLogger(__name__)

__all__ = [
    "CONFIG_NAME",
    "WEIGHTS_NAME",
    "LiteRewardModel",
    "distill_lite",
    "evaluate_lite",
    "make_lite_backend",
    "teacher_labels",
    "train_lite",
]

CONFIG_NAME = "config.json"
WEIGHTS_NAME = "model.safetensors"

_ANSWER_KEYS = {"progress": "completion_progress", "completion": "task_completed", "contrastive": "more_complete_image"}


def _mlp(d_in: int, hidden: int, d_out: int) -> nn.Sequential:
    return nn.Sequential(nn.Linear(d_in, hidden), nn.ReLU(), nn.Linear(hidden, hidden), nn.ReLU(), nn.Linear(hidden, d_out))


class _Encoder(nn.Module):
    def __init__(self, channels: Sequence[int], out_dim: int) -> None:
        super().__init__()
        layers: list[nn.Module] = []
        c_in = 3
        for c in channels:
            layers += [nn.Conv2d(c_in, c, 3, stride=2, padding=1), nn.ReLU()]
            c_in = c
        self.convs = nn.Sequential(*layers)
        self.pool = nn.AdaptiveAvgPool2d(4)
        self.head = nn.Sequential(nn.Linear(c_in * 16, out_dim), nn.LayerNorm(out_dim), nn.ReLU())

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        """images: (B, H, W, 3) uint8 -> (B, out_dim)."""
        x = images.permute(0, 3, 1, 2).float().div(255.0).sub(0.5)
        return self.head(self.pool(self.convs(x)).flatten(1))


class LiteRewardModel(nn.Module):
    """The compact reward model; a `RewardModel` (`score`) and a torch module (module doc)."""

    needs_video = False

    def __init__(self, config: LiteConfig | None = None, *, max_batch_size: int = 256) -> None:
        super().__init__()
        self.config = config or LiteConfig()
        self.max_batch_size = max_batch_size
        c = self.config
        self.encoder = _Encoder(c.cnn_channels, c.feature_dim)
        d = c.task_embedding_dim
        self.task_embedding = nn.Embedding(len(c.tasks) + 1, d) if d > 0 else None
        self._task_index = {t: i + 1 for i, t in enumerate(c.tasks)}
        f = c.feature_dim
        self.progress_head = _mlp(f * (2 if c.progress_anchor else 1) + d, c.hidden_dim, c.num_progress_bins)
        self.completion_head = _mlp(f + d, c.hidden_dim, 1)
        self.contrastive_head = _mlp(2 * f + d, c.hidden_dim, 1)
        self.register_buffer(
            "bin_values", torch.linspace(0.0, 1.0, c.num_progress_bins), persistent=False
        )

    # -- building blocks ---------------------------------------------------------------------

    def task_ids(self, tasks: Sequence[str]) -> torch.Tensor:
        return torch.tensor([self._task_index.get(t, 0) for t in tasks], dtype=torch.long, device=self.device)

    @property
    def device(self) -> torch.device:
        return next(self.parameters()).device

    def _with_task(self, parts: list[torch.Tensor], task_ids: torch.Tensor) -> torch.Tensor:
        if self.task_embedding is not None:
            parts = [*parts, self.task_embedding(task_ids)]
        return torch.cat(parts, dim=1)

    def encode(self, images: torch.Tensor) -> torch.Tensor:
        return self.encoder(images.to(self.device))

    def progress_logits(self, current: torch.Tensor, first: torch.Tensor | None, task_ids: torch.Tensor) -> torch.Tensor:
        parts = [current, first] if self.config.progress_anchor else [current]
        if self.config.progress_anchor and first is None:
            raise ValueError("this model's progress head needs the first frame")
        return self.progress_head(self._with_task(parts, task_ids))  # type: ignore[list-item]

    def completion_logit(self, current: torch.Tensor, task_ids: torch.Tensor) -> torch.Tensor:
        return self.completion_head(self._with_task([current], task_ids)).squeeze(1)

    def contrastive_logit(self, current: torch.Tensor, previous: torch.Tensor, task_ids: torch.Tensor) -> torch.Tensor:
        forward = self.contrastive_head(self._with_task([current, previous], task_ids))
        backward = self.contrastive_head(self._with_task([previous, current], task_ids))
        return (forward - backward).squeeze(1)

    def _frame_keys(self, modality: str) -> list[str]:
        """The frames a head reads (contrastive ignores the optional first-frame anchor)."""
        if modality == "progress":
            return ["current", "first"] if self.config.progress_anchor else ["current"]
        return ["current"] if modality == "completion" else ["current", "previous"]

    def head_outputs(
        self, modality: str, frames: Mapping[str, torch.Tensor], task_ids: torch.Tensor
    ) -> torch.Tensor:
        """Logits of a modality from (B, H, W, 3) uint8 frames; one encoder pass over all of them."""
        keys = self._frame_keys(modality)
        n = frames["current"].shape[0]
        feats = self.encode(torch.cat([frames[k] for k in keys])).split(n)
        f = dict(zip(keys, feats, strict=True))
        if modality == "progress":
            return self.progress_logits(f["current"], f.get("first"), task_ids)
        if modality == "completion":
            return self.completion_logit(f["current"], task_ids)
        return self.contrastive_logit(f["current"], f["previous"], task_ids)

    # -- the RewardModel interface -----------------------------------------------------------

    def score(self, requests: Sequence[RewardRequest]) -> list[Reward]:
        """Rewards in request order; every request is validated before any is scored."""
        size = tuple(self.config.image_size)
        frames = [prepare_frames(r, i, size) for i, r in enumerate(requests)]  # type: ignore[arg-type]
        results: list[Reward | None] = [None] * len(requests)
        was_training = self.training
        self.eval()
        try:
            with torch.inference_mode():
                for modality in MODALITIES:
                    idx = [i for i, r in enumerate(requests) if r.modality == modality]
                    for s in range(0, len(idx), self.max_batch_size):
                        chunk = idx[s : s + self.max_batch_size]
                        batch = {
                            key: torch.from_numpy(np.stack([frames[i][key] for i in chunk]))
                            for key in self._frame_keys(modality)
                        }
                        out = self.head_outputs(modality, batch, self.task_ids([requests[i].task for i in chunk]))
                        for i, reward in zip(chunk, self._rewards(modality, out), strict=True):
                            results[i] = reward
        finally:
            self.train(was_training)
        return results  # type: ignore[return-value]

    def _rewards(self, modality: str, out: torch.Tensor) -> list[Reward]:
        key = _ANSWER_KEYS[modality]
        rewards = []
        if modality == "progress":
            probs = out.float().softmax(-1).cpu().numpy()
            values = self.bin_values.cpu().numpy()
            names = [f"{v:.1f}" for v in values]
            for row in probs:
                best = names[int(row.argmax())]
                rewards.append(
                    Reward(float(row @ values), json.dumps({key: float(best)}), {n: float(p) for n, p in zip(names, row, strict=True)})
                )
            return rewards
        p = torch.sigmoid(out.float()).cpu().numpy()
        for q in p:
            q = float(q)
            if modality == "completion":
                rewards.append(Reward(q, json.dumps({key: "yes" if q >= 0.5 else "no"}), {"yes": q, "no": 1.0 - q}))
            else:
                rewards.append(Reward(2.0 * q - 1.0, json.dumps({key: 2 if q >= 0.5 else 1}), {"1": 1.0 - q, "2": q}))
        return rewards

    # -- checkpoints -------------------------------------------------------------------------

    def save_pretrained(self, path: str | os.PathLike[str]) -> Path:
        """Write config.json and model.safetensors into directory `path`."""
        from safetensors.torch import save_file

        out = Path(path)
        out.mkdir(parents=True, exist_ok=True)
        tensors = {k: v.detach().cpu().contiguous() for k, v in self.state_dict().items()}
        save_file(tensors, str(out / WEIGHTS_NAME), metadata={"format": "pt", "model": "lite"})
        (out / CONFIG_NAME).write_text(json.dumps(self.config.to_json(), indent=2) + "\n")
        return out

    @classmethod
    def from_pretrained(
        cls, path: str | os.PathLike[str], device: str | torch.device = "cpu", *, max_batch_size: int = 256
    ) -> LiteRewardModel:
        """The model saved at `path` by `save_pretrained`, in eval mode."""
        from safetensors.torch import load_file

        root = Path(path)
        if not (root / CONFIG_NAME).is_file() or not (root / WEIGHTS_NAME).is_file():
            raise FileNotFoundError(f"{root} is not a lite reward-model checkpoint (needs {CONFIG_NAME}, {WEIGHTS_NAME})")
        config = LiteConfig.from_json(json.loads((root / CONFIG_NAME).read_text()))
        model = cls(config, max_batch_size=max_batch_size)
        model.load_state_dict(load_file(str(root / WEIGHTS_NAME)))
        return model.to(device).eval()


def make_lite_backend(config: LiteBackendConfig) -> LiteRewardModel:
    """The `lite` backend from its YAML section: a trained checkpoint."""
    if not config.checkpoint:
        raise ValueError("the lite backend needs lite.checkpoint (a directory written by train_lite)")
    return LiteRewardModel.from_pretrained(config.checkpoint, config.device, max_batch_size=config.max_batch_size)


# -- training ----------------------------------------------------------------------------------


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
) -> tuple[LiteRewardModel, dict[str, Any]]:
    """Train on `dataset.train` (every modality it has), evaluate on `dataset.val`; returns (model, history).

    A new model's task vocabulary is the dataset's task strings unless
    `model_config.tasks` names them. Each step draws `batch_size` examples of
    every modality (seeded) and sums the weighted losses. `history` holds the
    training loss every `log_every` steps, the seconds taken and the held-out
    metrics of `evaluate_lite`. With `output_dir` the model is saved there.
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
    history: dict[str, Any] = {"steps": [], "loss": [], "train_examples": {m: len(split.data[m]["label"]) for m in split.data}}
    model.train()
    start = time.perf_counter()
    running: list[float] = []
    for step in range(1, cfg.steps + 1):
        total = torch.zeros((), device=model.device)
        for m in modalities:
            n = len(split.data[m]["label"])
            rows = torch.randint(0, n, (min(cfg.batch_size, n),), generator=gen)
            total = total + cfg.loss_weights[m] * _losses(model, split, m, rows, cfg, gen, pos_weight)
        opt.zero_grad(set_to_none=True)
        total.backward()
        opt.step()
        sched.step()
        running.append(float(total.detach()))
        if step % cfg.log_every == 0 or step == cfg.steps:
            history["steps"].append(step)
            history["loss"].append(float(np.mean(running)))
            log.info("lite step %d/%d: loss %.4f", step, cfg.steps, history["loss"][-1])
            running = []
    model.eval()
    history["seconds"] = time.perf_counter() - start
    if dataset.val:
        history["val"] = evaluate_lite(model, dataset, dataset.val)
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
) -> tuple[LiteRewardModel, dict[str, Any]]:
    """Train the compact model on a teacher backend's scores of `dataset.train` (teacher to student).

    The held-out metrics in the history still compare with the ground truth of
    `dataset.val`, so they say how good the student is, not how close to the teacher.
    """
    train = teacher_labels(dataset, dataset.train, teacher, size=teacher_image_size)
    relabelled = dataclasses.replace(dataset, train=train)
    model, history = train_lite(relabelled, train_config, model_config, model=model, output_dir=output_dir)
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
