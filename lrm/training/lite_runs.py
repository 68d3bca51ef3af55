"""Compact-model runs of `lrm-robot train-lrm`: from labels (`type: lite`) or a teacher (`type: lite_distill`).

Both read a store (or a LeRobotDataset on disk, `lrm.training.lerobot_source`) through
the dataset builder and write, into `output_dir`, the checkpoint that
`lrm.training.lite_train.train_lite` writes (config.json, model.safetensors, history.json), a
`report.json` (config, example counts, loss history, held-out metrics), a
`backend.yaml` that loads the checkpoint as the `lite` backend, and
`metrics.jsonl` (one row per logged step, the held-out metrics at the last;
`report_to` adds TensorBoard or W&B, common.tracking). A run always starts
over, so its metrics.jsonl is written anew.
The teacher of a distillation run is any frame-based backend, named by its
backend YAML (configs/lrm/backends/*.yaml, or the backend.yaml of a LoRA run),
which is read with the run's config.
"""

from __future__ import annotations

import dataclasses
import json
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, TYPE_CHECKING

from common.config import ConfigFile, config_file, config_to_dict
from common.numbers import Pixels
from common.tracking import ReportTo, make_tracker, parse_report_to, report_to_field
from lrm.backends import RewardBackendConfig
from lrm.backends.lite_config import LiteRunConfig
from lrm.training.dataset import build_dataset

if TYPE_CHECKING:
    from recordings.store import EpisodeStore

log = logging.getLogger(__name__)

__all__ = ["LiteDistillRun", "LiteTrainRun", "run_lite"]


@dataclass
class LiteTrainRun(LiteRunConfig):
    """`type: lite`: the compact model trained on the dataset's labels (configs/lrm/train/lite_*.yaml)."""

    type: Literal["lite"] = "lite"
    assume_success: bool | None = None  # for a LeRobotDataset without verdicts (lrm.training.lerobot_source)
    report_to: ReportTo = report_to_field()  # jsonl (OUTPUT/metrics.jsonl), tensorboard, wandb, none
    progress: bool = True

    def __post_init__(self) -> None:
        self.report_to = parse_report_to(self.report_to)


@dataclass
class LiteDistillRun(LiteRunConfig):
    """`type: lite_distill`: the compact model trained on a teacher backend's scores of the training examples.

    `teacher` is a backend YAML (loaded with this config); `teacher_image_size` resizes the frames handed
    to the teacher (None: as stored; a qwen3vl teacher resizes to its own size anyway).
    """

    type: Literal["lite_distill"] = "lite_distill"
    assume_success: bool | None = None
    teacher: ConfigFile[RewardBackendConfig] = config_file(RewardBackendConfig)
    teacher_image_size: tuple[Pixels, Pixels] | None = None
    report_to: ReportTo = report_to_field()  # jsonl (OUTPUT/metrics.jsonl), tensorboard, wandb, none
    progress: bool = True

    def __post_init__(self) -> None:
        self.report_to = parse_report_to(self.report_to)


def run_lite(
    config: LiteTrainRun | LiteDistillRun,
    store: EpisodeStore | None = None,
    *,
    teacher: Any | None = None,
    teacher_info: dict[str, str] | None = None,
) -> dict[str, Any]:
    """Train (or, with `teacher`, distil) the compact model; returns the report also written to report.json."""
    import yaml

    from lrm.training.lerobot_source import training_source
    from lrm.training.lite_train import distill_lite, train_lite

    distill = isinstance(config, LiteDistillRun)
    if distill and teacher is None:
        raise ValueError("a lite_distill run needs its teacher backend")
    out = Path(config.output_dir)
    with training_source(store, config.store, assume_success=config.assume_success) as store:
        dataset = build_dataset(store, config.dataset)
        if not dataset.train:
            where = config.store or store.path
            raise ValueError(f"{where}: no training examples (do the episodes have success verdicts?)")
        tracker = make_tracker(config.report_to, out, run_name=f"{config.type}-{out.name}",
                               config=config_to_dict(config), fresh=True)
        with tracker:
            if distill:
                model, history = distill_lite(
                    dataset, teacher, config.train, config.model, output_dir=out,
                    teacher_image_size=config.teacher_image_size, tracker=tracker, progress=config.progress,
                )  # fmt: skip
            else:
                model, history = train_lite(dataset, config.train, config.model, output_dir=out, tracker=tracker,
                                            progress=config.progress)
        store_path = str(getattr(store, "path", config.store))
    report = {
        "type": config.type,
        "config": dataclasses.asdict(config),
        "store": store_path,
        "camera": dataset.camera,
        "train_episodes": len(dataset.train_episodes),
        "val_episodes": len(dataset.val_episodes),
        "examples": dataset.counts(),
        "tasks": list(model.config.tasks),
        "history": history,
        "checkpoint": str(out),
    }
    if distill:
        report["teacher"] = teacher_info or {"backend": type(teacher).__name__}
    (out / "report.json").write_text(json.dumps(report, indent=2, default=str) + "\n")
    backend = {"type": "lite", "lite": {"checkpoint": str(out.resolve()), "device": "cpu"}}
    (out / "backend.yaml").write_text(
        "# Written by `lrm-robot train-lrm`: the lite backend with the model trained here.\n"
        + yaml.safe_dump(backend, sort_keys=False)
    )
    log.info("lite model written to %s (%.1f s)", out, history.get("seconds", 0.0))
    return report
