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
Training it (from labels or from a teacher backend) is `lrm.training.lite_train`.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np
import torch
from torch import nn

from common.nets import ConvEncoder
from lrm.backends.lite_config import LiteBackendConfig, LiteConfig
from lrm.types import MODALITIES, Reward, RewardRequest, prepare_frames

__all__ = ["CONFIG_NAME", "FOLDS_FILE", "WEIGHTS_NAME", "LiteEnsemble", "LiteRewardModel", "make_lite_backend",
           "trained_modalities"]

CONFIG_NAME = "config.json"
WEIGHTS_NAME = "model.safetensors"
FOLDS_FILE = "folds.json"  # a folder of cross-fitted members (LiteEnsemble)

_ANSWER_KEYS = {"progress": "completion_progress", "completion": "task_completed", "contrastive": "more_complete_image"}


def _mlp(d_in: int, hidden: int, d_out: int) -> nn.Sequential:
    return nn.Sequential(nn.Linear(d_in, hidden), nn.ReLU(), nn.Linear(hidden, hidden), nn.ReLU(), nn.Linear(hidden, d_out))


class LiteRewardModel(nn.Module):
    """The compact reward model; a `RewardModel` (`score`) and a torch module (module doc)."""

    needs_video = False

    def __init__(self, config: LiteConfig | None = None, *, max_batch_size: int = 256) -> None:
        super().__init__()
        self.config = config or LiteConfig()
        self.max_batch_size = max_batch_size
        c = self.config
        self.encoder = ConvEncoder(c.cnn_channels, c.feature_dim)
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
        # (B, H, W, 3) uint8 -> centred floats, the scaling the model was trained with
        return self.encoder(images.to(self.device).permute(0, 3, 1, 2).float().div(255.0).sub(0.5))

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
        from common.checkpoint_files import load_tensors

        root = Path(path)
        if not (root / CONFIG_NAME).is_file() or not (root / WEIGHTS_NAME).is_file():
            raise FileNotFoundError(f"{root} is not a lite reward-model checkpoint (needs {CONFIG_NAME}, {WEIGHTS_NAME})")
        config = LiteConfig.from_json(json.loads((root / CONFIG_NAME).read_text()))
        model = cls(config, max_batch_size=max_batch_size)
        model.load_state_dict(load_tensors(root / WEIGHTS_NAME))
        return model.to(device).eval()


def trained_modalities(path: str | os.PathLike[str]) -> tuple[str, ...] | None:
    """The heads a checkpoint saved by `train_lite` was trained for (its history.json); None when it does not say.

    A lite model always has all three heads, so which ones saw training data
    is only recorded beside it: `trained_modalities` since it was written,
    before that the modalities with training examples (`train_examples`).
    """
    history = Path(path) / "history.json"
    if (Path(path) / FOLDS_FILE).is_file():  # an ensemble's members are trained alike
        history = Path(path) / "fold-0" / "history.json"
    try:
        data = json.loads(history.read_text())
    except (OSError, ValueError):
        return None
    if isinstance(data.get("trained_modalities"), list):
        return tuple(data["trained_modalities"])
    examples = data.get("train_examples")
    if isinstance(examples, dict):
        return tuple(m for m in MODALITIES if examples.get(m, 0) > 0)
    return None


class LiteEnsemble:
    """Several lite models as one backend: each answer is the mean of theirs (value and every option's probability).

    A checkpoint folder holding `folds.json` (written by `app.improve.judge.train_judge` for cross-fitted
    folds) and one checkpoint per member in `fold-<j>/` loads as an ensemble. `held_out` maps each episode
    that a member never trained on (by store index) to that member.
    """

    def __init__(self, members: Sequence[LiteRewardModel], held_out: dict[int, LiteRewardModel] | None = None) -> None:
        if not members:
            raise ValueError("an ensemble needs at least one member")
        self.members = list(members)
        self.held_out = dict(held_out or {})

    @classmethod
    def from_folds(cls, path: str | os.PathLike[str], device: str | torch.device = "cpu", *,
                   max_batch_size: int = 256) -> LiteEnsemble:
        root = Path(path)
        try:
            data = json.loads((root / FOLDS_FILE).read_text())
            n, held_out = int(data["folds"]), {int(i): int(j) for i, j in data["held_out"].items()}
        except (OSError, ValueError, KeyError, TypeError) as exc:
            raise ValueError(f"{root / FOLDS_FILE}: not a folds record ({exc})") from None
        if any(not 0 <= j < n for j in held_out.values()):
            raise ValueError(f"{root / FOLDS_FILE}: a held-out episode names a fold outside 0..{n - 1}")
        members = [LiteRewardModel.from_pretrained(root / f"fold-{j}", device, max_batch_size=max_batch_size)
                   for j in range(n)]
        return cls(members, {i: members[j] for i, j in held_out.items()})

    def score(self, requests: Sequence[RewardRequest]) -> list[Reward]:
        answers = [member.score(requests) for member in self.members]
        out = []
        for per_request in zip(*answers, strict=True):
            probs = None
            if all(r.probs for r in per_request):
                probs = {k: float(np.mean([r.probs[k] for r in per_request])) for k in per_request[0].probs}
            out.append(Reward(value=float(np.mean([r.value for r in per_request])),
                              raw_text=f"mean of {len(per_request)} lite models", probs=probs,
                              parsed_ok=all(r.parsed_ok for r in per_request),
                              failed=any(r.failed for r in per_request)))
        return out


def make_lite_backend(config: LiteBackendConfig) -> LiteRewardModel | LiteEnsemble:
    """The `lite` backend from its YAML section: a trained checkpoint (a folder of folds: their `LiteEnsemble`)."""
    if not config.checkpoint:
        raise ValueError("the lite backend needs lite.checkpoint (a directory written by train_lite)")
    if (Path(config.checkpoint) / FOLDS_FILE).is_file():
        return LiteEnsemble.from_folds(config.checkpoint, config.device, max_batch_size=config.max_batch_size)
    return LiteRewardModel.from_pretrained(config.checkpoint, config.device, max_batch_size=config.max_batch_size)
