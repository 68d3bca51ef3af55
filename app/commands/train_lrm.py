"""`lrm-robot train-lrm --config CONFIG`: train a reward model on the episodes of a store.

The config's `type` picks what is trained (configs/lrm/train/):

- `qwen3vl_lora` (the default): one LoRA adapter per modality on a Qwen3-VL with
  TRL (SFT for progress and completion, DPO for contrastive), see lrm.training.lora_train;
- `lite`: the compact CNN reward model from the dataset's labels (lrm.backends.lite);
- `lite_distill`: the compact model from a teacher backend's scores (`teacher:`
  names a backend YAML), e.g. a GPU-trained Qwen3-VL LRM compressed for a CPU.

Every run writes OUTPUT/metrics.jsonl (the training logs; `--report-to`
adds TensorBoard or W&B, which TRL writes itself for the LoRA run),
OUTPUT/report.json and OUTPUT/backend.yaml, a backend config
that `score`, `eval-reward` and the RL loop load as is. An OUTPUT that holds
both is a finished run: the command leaves it as it is, saying so in one line;
`--fresh` trains again (an unfinished OUTPUT is trained again from the start).
"""

from __future__ import annotations

import argparse
import pathlib

from app.commands._conventions import add_command, add_fresh_option, add_output_dir_option, start_fresh
from app.commands._options import (add_config_option, add_report_to_option, add_set_option, load_command_config,
                                   report_to_flag)
from common.config import config_type
from common.outputs import make_output_dir
from app.errors import UsageError

ORDER = 45
TYPES = ("qwen3vl_lora", "lite", "lite_distill")
FINISHED = ("report.json", "backend.yaml")  # what a finished run leaves in OUTPUT (backend.yaml written last)


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = add_command(
        subparsers,
        "train-lrm",
        help="train a reward model (Qwen3-VL LoRA adapters or the compact lite model) on a store",
        description=(
            "Build reward-model examples from a store's episodes (11 keyframes per episode, completion "
            "negatives, contrastive pairs) and train: Qwen3-VL LoRA adapters with TRL (type: qwen3vl_lora, "
            "the default), the compact lite model (type: lite), or the lite model distilled from a teacher "
            "backend (type: lite_distill). Writes OUTPUT/metrics.jsonl (--report-to adds TensorBoard or W&B), "
            "OUTPUT/report.json and OUTPUT/backend.yaml. An OUTPUT holding "
            "both is a finished run and is left as it is; --fresh trains again."
        ),
        example="lrm-robot train-lrm --config configs/lrm/train/lite_pickcube.yaml --store outputs/demos/pickcube "
                "--output-dir outputs/lite/pickcube",
    )
    add_config_option(parser, "YAML config (see configs/lrm/train/)")
    parser.add_argument("--store", metavar="STORE", help="episode store to train on")
    add_output_dir_option(parser, "where the adapters / model and the report go")
    add_fresh_option(parser, "OUTPUT")
    parser.add_argument("--steps", type=int, help="optimiser steps (per modality for LoRA)")
    add_report_to_option(parser)
    add_set_option(parser)
    parser.set_defaults(handler=run)


def _config_type(path: str) -> str:
    kind = config_type(path, default=TYPES[0])
    if kind not in TYPES:
        raise UsageError(f"{path}: type: {kind!r} is not one of {', '.join(TYPES)}")
    return kind


def _finished(output_dir: str | pathlib.Path, fresh: bool) -> bool:
    """Whether OUTPUT holds a finished run to leave as it is (one line says so); `fresh` deletes it first."""
    out = pathlib.Path(output_dir)
    if fresh:
        start_fresh(out)
        return False
    if all((out / name).is_file() for name in FINISHED):
        print(f"{out} already holds a finished train-lrm run ({', '.join(FINISHED)}); nothing to do "
              "(--fresh trains again)")
        return True
    return False


def _one_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


def run(args: argparse.Namespace) -> int:
    if args.steps is not None and args.steps < 1:
        raise UsageError(f"--steps {args.steps}: must be at least 1")
    flags = {"store": args.store, "output_dir": args.output_dir, "train.steps": args.steps,
             "report_to": report_to_flag(args)}
    kind = _config_type(args.config)
    if kind == "qwen3vl_lora":
        from lrm.training.lora_train import LoraRunConfig

        config = load_command_config(args, LoraRunConfig, flags)
        if _finished(config.output_dir, args.fresh):
            return 0
        make_output_dir(config.output_dir, "train-lrm", "output_dir")
        report = _run_lora(config)
        for modality, entry in report["modalities"].items():
            before, after = entry["loss_before"], entry["loss_after"]
            change = ", ".join(f"{k} {before[k]:.4f} -> {after[k]:.4f}" for k in before)
            print(f"{modality}: {entry['trainer']} {entry['steps']} steps on {entry['records']} records; loss {change}")
        print(f"adapters in {pathlib.Path(config.output_dir) / 'adapters'}; backend config {report['backend_config']}")
        return 0
    from lrm.training.lite_runs import LiteDistillRun, LiteTrainRun

    config = load_command_config(args, LiteDistillRun if kind == "lite_distill" else LiteTrainRun, flags)
    if _finished(config.output_dir, args.fresh):
        return 0
    make_output_dir(config.output_dir, "train-lrm", "output_dir")
    report = _run_lite(config)
    val = report["history"].get("val", {})
    shown = ", ".join(f"{k} {v:.3f}" for k, v in val.items())
    print(f"lite model in {report['checkpoint']} ({report['history']['seconds']:.1f} s); held-out: {shown or 'none'}")
    return 0


def _run_lora(config):
    from lrm.training.lora_train import train_lora

    if not config.store:
        raise UsageError("no store: give --store or `store:` in the config")
    try:
        return train_lora(config)
    except (OSError, ValueError) as exc:  # a missing model or prompt file, an unusable store selection
        raise UsageError(_one_line(exc)) from None


def _run_lite(config):
    from lrm.backends import make_reward_backend
    from lrm.training.lite_runs import LiteDistillRun, run_lite

    if not config.store:
        raise UsageError("no store: give --store or `store:` in the config")
    teacher = info = None
    if isinstance(config, LiteDistillRun):
        if not config.teacher:
            raise UsageError("teacher: name the teacher's backend YAML (e.g. configs/lrm/backends/qwen3vl.yaml)")
        backend = config.teacher.config
        try:
            teacher = make_reward_backend(backend)
        except (OSError, ValueError, ImportError) as exc:
            raise UsageError(f"cannot build the teacher ({backend.type}): {_one_line(exc)}") from None
        info = {**backend.describe(), "config": config.teacher.path}
    try:
        return run_lite(config, teacher=teacher, teacher_info=info)
    except (OSError, ValueError) as exc:
        raise UsageError(_one_line(exc)) from None
