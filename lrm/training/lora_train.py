"""Qwen3-VL LoRA training of the three reward adapters with TRL (SFT + DPO) and peft.

One adapter per modality, each trained from the same base model:

- progress: SFT on rationale + label (label alone when an example has no rationale);
- completion: SFT on the label;
- contrastive: DPO, chosen = the correct image, rejected = the other one; the
  reference is the base model (the fresh adapter disabled).

Prompts and answers are the `qwen3vl` backend's (lrm.training.lora_data), and the
adapters land in `<output_dir>/adapters/<modality>`, named by modality as the
backend's `adapters:` map names them; `<output_dir>/backend.yaml` is a ready
backend config that loads them. `<output_dir>/report.json` holds the config,
the example counts, the loss history and the loss before and after training on
a fixed subset of the training examples and on the held-out episodes.

On a CPU the model trains in float32 (tests, the tiny model); on a GPU in
bfloat16 by default (`device`/`dtype: auto`, as the backend picks them), with
gradient checkpointing optional. The training loop is TRL's.

Tracking (`report_to`, common.tracking): `jsonl` is ours, a callback writing
every log of the Trainer to `<output_dir>/metrics.jsonl` (a row per log, with
its `modality`; TRL itself gets `report_to=[]` for it); `tensorboard` and
`wandb` go to TRL as it names them, TensorBoard's events into
`<output_dir>/tensorboard/<modality>` (the Trainer's own output folder is scratch).
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import logging
import os
import shutil
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, TYPE_CHECKING

import numpy as np

from common.numbers import Count, Fraction, LearningRate, NonNegativeFloat, Pixels, Seed, Steps
from common.tracking import TENSORBOARD_DIR, ReportTo, Tracker, make_tracker, parse_report_to, report_to_field
from lrm.backends.prompts import PROMPTS_DIR, PromptTemplate, load_prompt
from lrm.training.dataset import DatasetConfig, Example, RewardDataset
from lrm.types import MODALITIES
from lrm.training.dataset import build_dataset

if TYPE_CHECKING:
    from recordings.store import EpisodeStore

log = logging.getLogger(__name__)

__all__ = ["LoraRunConfig", "LoraSettings", "LoraTrainSettings", "train_lora", "train_modality"]

# The language model's attention and MLP projections (the vision tower's are named qkv/proj/linear_fc*).
DEFAULT_TARGETS = ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]


@dataclass
class LoraSettings:
    """The adapter: rank, scale, dropout and which linear layers it wraps (peft.LoraConfig)."""

    r: int = 16
    alpha: int = 32
    dropout: Fraction = 0.05
    target_modules: list[str] = field(default_factory=lambda: list(DEFAULT_TARGETS))

    def __post_init__(self) -> None:
        if self.r < 1 or self.alpha < 1 or not 0.0 <= self.dropout < 1.0 or not self.target_modules:
            raise ValueError("lora: r and alpha must be >= 1, dropout in [0, 1), target_modules non-empty")


@dataclass
class LoraTrainSettings:
    """Optimisation, per modality (each adapter gets `steps` optimiser steps)."""

    steps: Steps = 500
    batch_size: Count = 4  # per device
    gradient_accumulation_steps: Count = 4
    lr: LearningRate = 1.0e-4
    weight_decay: NonNegativeFloat = 0.0
    warmup_steps: int = 0
    lr_scheduler: str = "cosine"
    seed: Seed = 0
    logging_steps: int = 10
    gradient_checkpointing: bool = False
    dpo_beta: float = 0.1
    max_length: int | None = None  # tokens; None: no truncation
    max_train_examples: int | None = None  # per modality, a seeded subsample; None: all
    balance_completion: bool = True  # repeat "yes" examples until they match the "no" ones
    eval_examples: int = 64  # per modality and split, for the loss before / after training
    dataloader_workers: int = 0

    def __post_init__(self) -> None:
        if self.steps < 1 or self.batch_size < 1 or self.gradient_accumulation_steps < 1 or self.lr <= 0:
            raise ValueError("train: steps, batch_size and gradient_accumulation_steps must be >= 1 and lr > 0")
        if self.dpo_beta <= 0 or self.eval_examples < 0 or self.logging_steps < 1:
            raise ValueError("train: dpo_beta must be > 0, eval_examples >= 0, logging_steps >= 1")
        if self.max_train_examples is not None and self.max_train_examples < 1:
            raise ValueError("train: max_train_examples must be >= 1 or null")


@dataclass
class LoraRunConfig:
    """A LoRA training run (configs/lrm/train/lora_*.yaml).

    `model`, `prompts` and `image_size` must be what the backend will use: the
    written backend.yaml carries them over. `device`, `dtype` and
    `attn_implementation` "auto" pick bf16 on a GPU and float32 on a CPU.
    """

    type: Literal["qwen3vl_lora"] = "qwen3vl_lora"
    store: str = ""  # an episode store or a LeRobotDataset on disk (lrm.training.lerobot_source.open_source)
    assume_success: bool | None = None  # for a LeRobotDataset without verdicts (lrm.training.lerobot_source)
    output_dir: str = "outputs/lrm/lora"
    model: str = "Qwen/Qwen3-VL-8B-Instruct"
    modalities: list[str] = field(default_factory=lambda: list(MODALITIES))
    prompts: dict[str, str] = field(default_factory=dict)
    image_size: tuple[Pixels, Pixels] | None = (256, 256)
    device: str = "auto"
    dtype: str = "auto"
    attn_implementation: str = "auto"
    dataset: DatasetConfig = field(default_factory=DatasetConfig)
    lora: LoraSettings = field(default_factory=LoraSettings)
    train: LoraTrainSettings = field(default_factory=LoraTrainSettings)
    report_to: ReportTo = report_to_field()  # jsonl (ours), tensorboard, wandb (TRL's), none (module doc)

    def __post_init__(self) -> None:
        self.report_to = parse_report_to(self.report_to)
        unknown = [m for m in [*self.modalities, *self.prompts] if m not in MODALITIES]
        if unknown:
            raise ValueError(f"unknown modality {unknown[0]!r}, expected some of {list(MODALITIES)}")
        if not self.modalities:
            raise ValueError("modalities: name at least one of " + ", ".join(MODALITIES))

    def templates(self) -> dict[str, PromptTemplate]:
        return {m: load_prompt(self.prompts.get(m, PROMPTS_DIR / f"{m}.yaml")) for m in self.modalities}


def _runtime(config: LoraRunConfig):
    from lrm.backends.qwen3vl import Qwen3VLBackendConfig, resolve_runtime

    return resolve_runtime(
        Qwen3VLBackendConfig(device=config.device, dtype=config.dtype, attn_implementation=config.attn_implementation)
    )


def _select(examples: list[Example], modality: str, settings: LoraTrainSettings) -> list[Example]:
    """The modality's training examples: a seeded subsample, completion positives repeated to balance."""
    mine = [ex for ex in examples if ex.modality == modality]
    if settings.max_train_examples is not None and len(mine) > settings.max_train_examples:
        rng = np.random.default_rng([settings.seed, MODALITIES.index(modality)])
        keep = sorted(rng.choice(len(mine), settings.max_train_examples, replace=False))
        mine = [mine[i] for i in keep]
    if modality == "completion" and settings.balance_completion:
        yes = [ex for ex in mine if ex.answer == "yes"]
        no = len(mine) - len(yes)
        if yes and no > len(yes):
            # whole repeats only: every positive is seen equally often
            mine = mine + yes * (no // len(yes) - 1)
    return mine


def _eval_subset(examples: list[Example], count: int, seed: int) -> list[Example]:
    if len(examples) <= count:
        return list(examples)
    rng = np.random.default_rng(seed)
    return [examples[i] for i in sorted(rng.choice(len(examples), count, replace=False))]


# What the trainers log that says whether training works: the loss, and how often the answer is right.
_LOGGED = ("loss", "mean_token_accuracy", "rewards/accuracies", "rewards/margins", "learning_rate")


def _losses(history: list[dict[str, Any]]) -> list[dict[str, float]]:
    return [
        {"step": int(h["step"]), **{k: float(h[k]) for k in _LOGGED if k in h}}
        for h in history
        if "loss" in h and "step" in h
    ]


def trl_report_to(report_to: list[str]) -> list[str]:
    """What TRL's `report_to` gets: the trackers it runs itself (not `jsonl`, which our callback writes)."""
    return [name for name in report_to if name != "jsonl"]


def _metrics_callback(tracker: Tracker, modality: str) -> Any:
    """A TrainerCallback writing every log of the Trainer (loss, accuracy, learning rate, evaluations) to `tracker`."""
    from transformers import TrainerCallback

    class MetricsCallback(TrainerCallback):
        def on_log(self, args: Any, state: Any, control: Any, logs: dict[str, Any] | None = None, **kwargs: Any):
            if logs:
                tracker.log({"modality": modality, **logs}, state.global_step)

    return MetricsCallback()


@contextlib.contextmanager
def _tracking_env(config: LoraRunConfig, modality: str):
    """TRL's trackers read their folders from the environment: TensorBoard's into OUTPUT/tensorboard/<modality>."""
    out = Path(config.output_dir)
    wanted = {}
    if "tensorboard" in config.report_to:
        wanted["TENSORBOARD_LOGGING_DIR"] = str(out / TENSORBOARD_DIR / modality)
    if "wandb" in config.report_to:
        wanted.update(WANDB_PROJECT=os.environ.get("WANDB_PROJECT", "lrm-robot"), WANDB_DIR=os.environ.get("WANDB_DIR", str(out)))
    saved = {key: os.environ.get(key) for key in wanted}
    os.environ.update(wanted)
    try:
        yield
    finally:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


def _make_trainer(modality: str, config: LoraRunConfig, model: Any, processor: Any, train_data: Any, scratch: str,
                  callbacks: list[Any] | None = None):
    """TRL's SFTTrainer (progress, completion) or DPOTrainer (contrastive) with a fresh LoRA adapter.

    `callbacks` are added to the Trainer's (e.g. `_metrics_callback`); `config.report_to` goes to TRL
    as `trl_report_to` says.
    """
    import torch
    from peft import LoraConfig

    settings = config.train
    on_gpu = str(model.device).startswith("cuda")
    common = dict(
        output_dir=scratch,
        max_steps=settings.steps,
        per_device_train_batch_size=settings.batch_size,
        per_device_eval_batch_size=settings.batch_size,
        gradient_accumulation_steps=settings.gradient_accumulation_steps,
        learning_rate=settings.lr,
        weight_decay=settings.weight_decay,
        warmup_steps=settings.warmup_steps,
        lr_scheduler_type=settings.lr_scheduler,
        seed=settings.seed,
        data_seed=settings.seed,
        logging_steps=settings.logging_steps,
        gradient_checkpointing=settings.gradient_checkpointing,
        gradient_checkpointing_kwargs={"use_reentrant": False} if settings.gradient_checkpointing else None,
        # bf16 autocast only where the weights are bf16 (a GPU); TRL would default it on everywhere
        bf16=on_gpu and model.dtype == torch.bfloat16,
        use_cpu=not on_gpu,
        max_length=settings.max_length,
        report_to=trl_report_to(config.report_to),
        run_name=f"{Path(config.output_dir).name}-{modality}",
        save_strategy="no",
        # the datasets hold image-bank rows and add the images on access; the columns must stay
        remove_unused_columns=False,
        dataloader_num_workers=settings.dataloader_workers,
    )
    lora = LoraConfig(
        r=config.lora.r,
        lora_alpha=config.lora.alpha,
        lora_dropout=config.lora.dropout,
        target_modules=list(config.lora.target_modules),
        bias="none",
        task_type="CAUSAL_LM",
    )
    if modality == "contrastive":
        from trl import DPOConfig, DPOTrainer

        args = DPOConfig(beta=settings.dpo_beta, **common)
        return DPOTrainer(
            model=model, args=args, train_dataset=train_data, processing_class=processor, peft_config=lora,
            callbacks=callbacks,
        )
    from trl import SFTConfig, SFTTrainer

    args = SFTConfig(completion_only_loss=True, **common)
    return SFTTrainer(model=model, args=args, train_dataset=train_data, processing_class=processor, peft_config=lora,
                      callbacks=callbacks)


def train_modality(
    modality: str,
    config: LoraRunConfig,
    dataset: RewardDataset,
    template: PromptTemplate,
    adapter_dir: str | Path,
    tracker: Tracker | None = None,
) -> dict[str, Any]:
    """Train one modality's adapter on `dataset.train`, save it to `adapter_dir`; returns its report entry.

    The Trainer's logs go to `tracker` (our metrics.jsonl) where given; TRL's own
    trackers (`config.report_to`) write TensorBoard / W&B.

    The loss before and after training is measured on up to `eval_examples`
    training examples (did it fit?) and held-out examples (does it generalise?).
    """
    import torch
    from transformers import AutoProcessor, Qwen3VLForConditionalGeneration

    from lrm.training.lora_data import hf_dataset, records

    settings = config.train
    train_examples = _select(dataset.train, modality, settings)
    if not train_examples:
        raise ValueError(f"no {modality} training examples (check the dataset section and the episodes' verdicts)")
    device, dtype, attn = _runtime(config)
    processor = AutoProcessor.from_pretrained(config.model)
    size = tuple(config.image_size) if config.image_size is not None else None

    def as_dataset(examples: list[Example]):
        recs, bank = records(dataset, examples, template, processor, size, preference=modality == "contrastive")
        return hf_dataset(recs, bank)

    train_data = as_dataset(train_examples)
    plain = [ex for ex in dataset.train if ex.modality == modality]
    seen = list({id(ex): ex for ex in train_examples}.values())  # the subsample, without the repeats
    val = [ex for ex in dataset.val if ex.modality == modality]
    evals = {}
    if settings.eval_examples:
        evals["train_subset"] = as_dataset(_eval_subset(seen, settings.eval_examples, settings.seed))
        if val:
            evals["val"] = as_dataset(_eval_subset(val, settings.eval_examples, settings.seed))

    started = time.perf_counter()
    # The trainer's own output folder is scratch: the adapter and the report are written here, not by it.
    scratch = tempfile.mkdtemp(prefix=f"lrm-lora-{modality}-")
    try:
        model = Qwen3VLForConditionalGeneration.from_pretrained(
            config.model, dtype=dtype, attn_implementation=attn, device_map=device
        )
        callbacks = [_metrics_callback(tracker, modality)] if tracker is not None and tracker.enabled else None
        with _tracking_env(config, modality):
            trainer = _make_trainer(modality, config, model, processor, train_data, scratch, callbacks)
            before = {n: trainer.evaluate(d, metric_key_prefix=n)[f"{n}_loss"] for n, d in evals.items()}
            log.info("%s: %s on %d records for %d steps", modality, type(trainer).__name__, len(train_data),
                     settings.steps)
            result = trainer.train()
            after = {n: trainer.evaluate(d, metric_key_prefix=n)[f"{n}_loss"] for n, d in evals.items()}
        adapter_dir = Path(adapter_dir)
        trainer.model.save_pretrained(adapter_dir)
        history = _losses(trainer.state.log_history)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    seconds = time.perf_counter() - started
    log.info("%s: loss %s -> %s in %.1f s", modality, before, after, seconds)
    del trainer, model
    if device.startswith("cuda"):
        torch.cuda.empty_cache()
    return {
        "trainer": "dpo" if modality == "contrastive" else "sft",
        "adapter": str(adapter_dir),
        "examples": len(plain),  # this modality's training examples in the dataset
        "records": len(train_examples),  # what was trained on: subsampled, positives repeated
        "val_examples": len(val),
        "with_rationale": sum(1 for ex in train_examples if ex.rationale),
        "steps": int(result.global_step),
        "train_loss": float(result.training_loss),
        "loss_history": history,
        "loss_before": before,
        "loss_after": after,
        "seconds": round(seconds, 2),
        "device": device,
        "dtype": str(dtype).removeprefix("torch."),
    }


def train_lora(
    config: LoraRunConfig,
    store: EpisodeStore | None = None,
    *,
    rationale: Any | None = None,
) -> dict[str, Any]:
    """Build the dataset from `config.store` (or an open `store`), train every configured modality, write outputs.

    `rationale(example, episode_meta)` may supply reasoning texts (lrm.training.dataset.build_dataset).
    Returns the report that is also written to `<output_dir>/report.json`.
    """
    import yaml

    from lrm.training.lerobot_source import training_source

    templates = config.templates()
    out = Path(config.output_dir)
    with training_source(store, config.store, assume_success=config.assume_success) as store:
        dataset = build_dataset(store, config.dataset, rationale=rationale)
        out.mkdir(parents=True, exist_ok=True)
        report: dict[str, Any] = {
            "type": config.type,
            "config": dataclasses.asdict(config),
            "store": str(getattr(store, "path", config.store)),
            "camera": dataset.camera,
            "train_episodes": len(dataset.train_episodes),
            "val_episodes": len(dataset.val_episodes),
            "examples": dataset.counts(),
            "modalities": {},
        }
        started = time.perf_counter()
        # ours is the JSONL only: TRL runs TensorBoard and W&B itself (module doc); a run starts over, so anew
        with make_tracker(["jsonl"] if "jsonl" in config.report_to else [], out, fresh=True) as tracker:
            for modality in config.modalities:
                entry = train_modality(modality, config, dataset, templates[modality], out / "adapters" / modality,
                                       tracker=tracker)
                report["modalities"][modality] = entry
                _write_json(out / "report.json", report)  # a crash in a later modality keeps the earlier ones
        report["seconds"] = round(time.perf_counter() - started, 2)
    backend = {
        "type": "qwen3vl",
        "qwen3vl": {
            "model": config.model,
            "adapters": {m: str((out / "adapters" / m).resolve()) for m in config.modalities},
            "prompts": {m: str(Path(p).resolve()) for m, p in config.prompts.items()},
            "image_size": list(config.image_size) if config.image_size is not None else None,
        },
    }
    if not any(entry["with_rationale"] for entry in report["modalities"].values()):
        # Adapters trained without rationales answer at once; scoring them without a reasoning pass is
        # what they learnt, and in logits mode one forward pass instead of a generation.
        backend["qwen3vl"]["reasoning"] = False
    (out / "backend.yaml").write_text(
        "# Written by `lrm-robot train-lrm`: the qwen3vl backend with the adapters trained here.\n"
        + yaml.safe_dump(backend, sort_keys=False)
    )
    report["backend_config"] = str(out / "backend.yaml")
    _write_json(out / "report.json", report)
    return report


def _write_json(path: Path, data: dict[str, Any]) -> None:
    tmp = path.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(data, indent=2, default=str) + "\n")
    tmp.replace(path)
