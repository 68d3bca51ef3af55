"""Configs of the compact reward model (`lite`), kept free of torch so `lrm.backends` stays cheap to import.

- `LiteConfig`: the architecture, saved as a checkpoint's config.json;
- `LiteTrainConfig`: training hyper-parameters (`lrm.training.lite_train.train_lite`);
- `LiteBackendConfig`: the `lite` section of a backend YAML (which checkpoint, batch size);
- `LiteRunConfig`: a whole training run (configs/lrm/train/lite_*.yaml, `type: lite`): store, output, the three above.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

from common.numbers import Count, LearningRate, NonNegativeFloat, Pixels, Seed, Steps
from lrm.training.dataset import DatasetConfig
from common.config import dataclass_from_json

__all__ = ["LiteBackendConfig", "LiteConfig", "LiteRunConfig", "LiteTrainConfig"]


@dataclass
class LiteConfig:
    """Architecture of the compact reward model (lrm.backends.lite module doc)."""

    type: Literal["lite"] = "lite"
    image_size: tuple[Pixels, Pixels] = (64, 64)  # (H, W) every frame is resized to
    cnn_channels: list[int] = field(default_factory=lambda: [16, 32, 32, 32])  # stride-2 3x3 convs
    feature_dim: int = 64
    hidden_dim: int = 128
    tasks: list[str] = field(default_factory=list)  # task strings with a learned embedding
    task_embedding_dim: int = 16  # 0: no task input
    progress_anchor: bool = True  # progress also sees the first frame
    num_progress_bins: int = 11

    def __post_init__(self) -> None:
        self.image_size = tuple(int(v) for v in self.image_size)  # type: ignore[assignment]
        if len(self.image_size) != 2 or min(self.image_size) < 8:
            raise ValueError(f"image_size must be (H, W) of at least 8 pixels, got {self.image_size}")
        if not self.cnn_channels or min(self.cnn_channels) < 1:
            raise ValueError(f"cnn_channels must be positive sizes, got {self.cnn_channels}")
        if self.feature_dim < 1 or self.hidden_dim < 1 or self.task_embedding_dim < 0:
            raise ValueError("feature_dim and hidden_dim must be positive, task_embedding_dim non-negative")
        if self.num_progress_bins < 2:
            raise ValueError(f"num_progress_bins must be at least 2, got {self.num_progress_bins}")
        if len(set(self.tasks)) != len(self.tasks):
            raise ValueError("tasks has duplicates")

    def to_json(self) -> dict[str, Any]:
        data = dataclasses.asdict(self)
        data["image_size"] = list(self.image_size)
        return data

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> LiteConfig:
        return dataclass_from_json(cls, data, "lite")


@dataclass
class LiteTrainConfig:
    """Training hyper-parameters of `lrm.training.lite_train.train_lite`."""

    steps: Steps = 1000
    batch_size: Count = 32  # per modality and step
    lr: LearningRate = 1e-3
    weight_decay: NonNegativeFloat = 1e-4
    seed: Seed = 0
    progress_label_sigma: float = 0.05  # Gaussian soft labels over the bins; 0: one-hot
    loss_weights: dict[str, float] = field(
        default_factory=lambda: {"progress": 1.0, "completion": 1.0, "contrastive": 1.0}
    )
    balance_completion: bool = True  # weight positives by negatives/positives (0/1 labels only, not a teacher's)
    shift_augment: int = 2  # random translation by up to this many pixels; 0: none
    log_every: int = 100

    def __post_init__(self) -> None:
        if self.steps < 0 or self.batch_size < 1 or self.lr <= 0:
            raise ValueError("steps must be >= 0, batch_size >= 1 and lr > 0")
        if self.progress_label_sigma < 0 or self.shift_augment < 0:
            raise ValueError("progress_label_sigma and shift_augment must be non-negative")


@dataclass
class LiteBackendConfig:
    """The `lite` backend: a checkpoint written by `LiteRewardModel.save_pretrained` / `train_lite`."""

    checkpoint: str = ""
    device: str = "cpu"
    max_batch_size: int = 256


@dataclass
class LiteRunConfig:
    """One training run of the compact model: which store, where to write, and the settings."""

    store: str = ""
    output_dir: str = "outputs/lite/pickcube"
    dataset: DatasetConfig = field(default_factory=DatasetConfig)
    model: LiteConfig = field(default_factory=LiteConfig)
    train: LiteTrainConfig = field(default_factory=LiteTrainConfig)
