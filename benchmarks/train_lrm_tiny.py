"""Benchmark: does `lrm-robot train-lrm` teach the tiny Qwen3-VL something it can use on held-out episodes?

Builds the tiny random Qwen3-VL (tests.support.tiny_reward_models) and a synthetic bar store
(tests.support.bar_store: progress is a bar that grows), trains the three LoRA adapters
through the command line (SFT for progress and completion, DPO for
contrastive), then scores the held-out episodes' examples with the `qwen3vl`
backend in logits mode loading the written backend.yaml, next to the same
backend without adapters (the untrained floor) and a constant predictor.

Numbers: progress MAE of the expected value, completion balanced accuracy
(mean recall of yes and no, P(yes) >= 0.5), contrastive direction accuracy
(sign of P(2) - P(1)). The machine's load average goes into the JSON: on a
shared machine the seconds are noise, the metrics are not.

Example:
    .venv/bin/python benchmarks/train_lrm_tiny.py --steps 150 --out outputs/benchmarks/train_lrm_tiny.json
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import yaml

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def metrics(examples, rewards) -> dict[str, float]:
    out: dict[str, float] = {}
    by: dict[str, list] = {}
    for ex, r in zip(examples, rewards, strict=True):
        by.setdefault(ex.modality, []).append((ex.label, r.value))
    if "progress" in by:
        out["progress_mae"] = float(np.mean([abs(v - y) for y, v in by["progress"]]))
    if "completion" in by:
        pairs = by["completion"]
        recalls = [np.mean([(v >= 0.5) == want for y, v in pairs if (y >= 0.5) == want]) for want in (True, False)]
        out["completion_balanced_accuracy"] = float(np.mean(recalls))
    if "contrastive" in by:
        out["contrastive_direction_accuracy"] = float(np.mean([np.sign(v) == np.sign(y) for y, v in by["contrastive"]]))
    return out


def constant_floor(examples) -> dict[str, float]:
    class R:  # a constant answer per modality: progress 0.5, completion always "no", contrastive always "2"
        def __init__(self, value):
            self.value = value

    values = {"progress": 0.5, "completion": 0.0, "contrastive": 1.0}
    return metrics(examples, [R(values[ex.modality]) for ex in examples])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=150, help="optimiser steps per modality")
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--lr", type=float, default=2e-3)
    parser.add_argument("--rank", type=int, default=8, help="LoRA rank")
    parser.add_argument("--modalities", nargs="+", default=["contrastive", "progress", "completion"])
    parser.add_argument(
        "--targets", nargs="+", default=None, help="LoRA target modules (default: lrm.training.lora_train.DEFAULT_TARGETS)"
    )
    parser.add_argument("--successes", type=int, default=6, help="successful episodes per task")
    parser.add_argument("--failures", type=int, default=3, help="failed episodes per task")
    parser.add_argument("--threads", type=int, default=None, help="torch threads (1 on a shared machine)")
    parser.add_argument("--out", default="outputs/benchmarks/train_lrm_tiny.json")
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    import torch

    if args.threads:
        torch.set_num_threads(args.threads)
    from app.cli import main as cli
    from common.config import load_config
    from lrm.backends import RewardBackendConfig, make_reward_backend
    from lrm.training.dataset import DatasetConfig, build_dataset
    from tests.support.bar_store import make_bar_store
    from tests.support.tiny_reward_models import build_tiny_checkpoint

    from lrm.training.lora_train import DEFAULT_TARGETS

    targets = args.targets or list(DEFAULT_TARGETS)
    work = Path(tempfile.mkdtemp(prefix="train-lrm-tiny-"))
    tiny = build_tiny_checkpoint(work / "tiny")
    tasks = ("fill red", "fill green")
    store = make_bar_store(work / "store", tasks=tasks, successes=args.successes, failures=args.failures, size=32)
    dataset_section = {"val_fraction": 0.3, "contrastive_pairs_per_episode": 10, "seed": 0}
    config = {
        "type": "qwen3vl_lora",
        "store": str(work / "store"),
        "output_dir": str(work / "out"),
        "model": str(tiny.base),
        "image_size": [32, 32],
        "modalities": args.modalities,
        "dataset": dataset_section,
        "lora": {"r": args.rank, "alpha": 2 * args.rank, "dropout": 0.0, "target_modules": targets},
        "train": {"steps": args.steps, "batch_size": args.batch_size, "gradient_accumulation_steps": 1,
                  "lr": args.lr, "logging_steps": 10, "eval_examples": 32},
    }  # fmt: skip
    path = work / "train.yaml"
    path.write_text(yaml.safe_dump(config))
    started = time.perf_counter()
    if cli(["train-lrm", "--config", str(path)]) != 0:
        raise SystemExit("train-lrm failed")
    train_seconds = time.perf_counter() - started
    report = json.loads((work / "out" / "report.json").read_text())

    dataset = build_dataset(store, DatasetConfig(**dataset_section))
    val = [ex for ex in dataset.val if ex.modality in args.modalities]
    requests = dataset.requests(val, (32, 32))
    # the adapters were trained without rationales: they answer at once, so the options are scored right away
    scoring = ["qwen3vl.mode=logits", "qwen3vl.reasoning=false"]
    trained_cfg = load_config(work / "out" / "backend.yaml", RewardBackendConfig, scoring)
    bare_cfg = load_config(work / "out" / "backend.yaml", RewardBackendConfig, [*scoring, "qwen3vl.adapters={}"])
    result = {
        "command": " ".join(sys.argv),
        "load_average": os.getloadavg(),
        "cpu_count": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "held_out_examples": {m: sum(ex.modality == m for ex in val) for m in report["modalities"]},
        "lora": config["lora"],
        "train_seconds": round(train_seconds, 1),
        "loss": {m: {"before": e["loss_before"], "after": e["loss_after"]} for m, e in report["modalities"].items()},
        "held_out": {
            "trained": metrics(val, make_reward_backend(trained_cfg).score(requests)),
            "untrained": metrics(val, make_reward_backend(bare_cfg).score(requests)),
            "constant": constant_floor(val),
        },
    }
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
