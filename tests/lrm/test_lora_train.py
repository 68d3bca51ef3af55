"""Qwen3-VL LoRA training (TRL SFT + DPO) on the tiny random Qwen3-VL and a synthetic bar store.

What is checked: the training records are, token for token and pixel for pixel,
the prompts the `qwen3vl` backend sends, followed by answers its parser reads
back; a few SFT / DPO steps lower the loss; the adapter saves, reloads through
the backend's own loading code, and moves the backend's answer probabilities
towards what it was trained on.
"""

from __future__ import annotations

import dataclasses
import json

import numpy as np
import pytest
import torch

from lrm.backends.parsing import parse_answer
from lrm.backends.prompts import load_default_prompts
from lrm.backends.qwen3vl import Qwen3VLBackendConfig, Qwen3VLRewardModel
from lrm.training.dataset import DatasetConfig, build_dataset
from lrm.training.lora_data import answer_option, end_of_turn, hf_dataset, records, target_text
from lrm.training.lora_train import LoraRunConfig, LoraSettings, LoraTrainSettings, train_modality
from lrm.types import prepare_frames
from tests.support.bar_store import make_bar_store
from tests.support.tiny_reward_models import TinyModelPaths

SIZE = (32, 32)  # one merged vision token per frame with the tiny processor


@pytest.fixture(scope="module")
def dataset(tmp_path_factory):
    store = make_bar_store(tmp_path_factory.mktemp("bars") / "store", successes=3, failures=1, length=(8, 12), size=32)
    data = build_dataset(store, DatasetConfig(val_fraction=0.25, contrastive_pairs_per_episode=3))
    yield data
    store.close()


@pytest.fixture(scope="module")
def templates():
    return load_default_prompts()


@pytest.fixture(scope="module")
def bare_backend(tiny_qwen3vl: TinyModelPaths) -> Qwen3VLRewardModel:
    return Qwen3VLRewardModel(
        Qwen3VLBackendConfig(model=str(tiny_qwen3vl.base), mode="logits", reasoning=False, image_size=SIZE)
    )


def run_config(tiny: TinyModelPaths, tmp_path, **train) -> LoraRunConfig:
    settings = dict(steps=6, batch_size=2, gradient_accumulation_steps=1, lr=5e-3, logging_steps=1, eval_examples=4)
    settings.update(train)
    return LoraRunConfig(
        output_dir=str(tmp_path),
        model=str(tiny.base),
        image_size=SIZE,
        lora=LoraSettings(r=8, alpha=16, dropout=0.0, target_modules=["q_proj", "k_proj", "v_proj", "o_proj"]),
        train=LoraTrainSettings(**settings),
    )


def with_rationale(example):
    return dataclasses.replace(example, rationale="  The bar is longer than in the first frame. ")


def test_targets_are_the_backend_answer_format(dataset, templates) -> None:
    progress = next(ex for ex in dataset.train if ex.modality == "progress" and ex.label == 0.5)
    t = templates["progress"]
    assert target_text(t, progress, answer_option(t, progress)) == '{"completion_progress": 0.5}'
    # progress reasons: rationale first, the JSON answer on its own line (where reasoning_context cuts)
    reasoned = target_text(t, with_rationale(progress), answer_option(t, progress))
    assert reasoned == 'The bar is longer than in the first frame.\n{"completion_progress": 0.5}'
    assert parse_answer(reasoned, t) == 0.5
    # completion answers directly even when the example carries a rationale
    comp = with_rationale(next(ex for ex in dataset.train if ex.modality == "completion" and ex.label == 1.0))
    c = templates["completion"]
    assert target_text(c, comp, answer_option(c, comp)) == '{"task_completed": "yes"}'
    # contrastive: chosen names the later frame, rejected the other; both parse
    k = templates["contrastive"]
    for ex in [e for e in dataset.train if e.modality == "contrastive"][:4]:
        assert parse_answer(target_text(k, ex, answer_option(k, ex)), k) == ex.label
        assert parse_answer(target_text(k, ex, answer_option(k, ex, correct=False)), k) == -ex.label


@pytest.mark.parametrize("modality", ["progress", "completion", "contrastive"])
def test_records_are_the_backends_prompts(
    modality, dataset, templates, bare_backend: Qwen3VLRewardModel
) -> None:
    """TRL's collator turns a record into exactly the backend's prompt tokens and pixels, then the answer."""
    from trl.trainer.dpo_trainer import DataCollatorForVisionPreference
    from trl.trainer.sft_trainer import DataCollatorForVisionLanguageModeling

    template = templates[modality]
    processor = bare_backend.processor
    examples = [ex for ex in dataset.train if ex.modality == modality][:2]
    preference = modality == "contrastive"
    recs, bank = records(dataset, examples, template, processor, SIZE, preference=preference)
    data = hf_dataset(recs, bank)
    if preference:
        collator = DataCollatorForVisionPreference(processor=processor)
    else:
        collator = DataCollatorForVisionLanguageModeling(processor=processor, completion_only_loss=True)
    eot = end_of_turn(processor, template)
    assert eot == "<|im_end|>\n"
    for i, (ex, request) in enumerate(zip(examples, dataset.requests(examples), strict=True)):
        with torch.inference_mode():
            sent = bare_backend._encode(template, [request], [prepare_frames(request, 0, SIZE)])
        batch = collator([data[i]])
        n = sent["input_ids"].shape[1]
        assert torch.equal(batch["input_ids"][0, :n], sent["input_ids"][0])
        # a preference batch holds the prompt twice: chosen rows, then rejected rows
        copies = 2 if preference else 1
        assert torch.equal(batch["pixel_values"], sent["pixel_values"].repeat(copies, 1))
        assert torch.equal(batch["image_grid_thw"], sent["image_grid_thw"].repeat(copies, 1))
        tail = processor.tokenizer.decode(batch["input_ids"][0, n:])
        answer = template.answer_text(answer_option(template, ex))
        assert tail.startswith(answer + eot)
        assert parse_answer(tail.split("<|im_end|>")[0], template) == ex.label
        if preference:
            assert torch.equal(batch["input_ids"][1, :n], sent["input_ids"][0])
            rejected = processor.tokenizer.decode(batch["input_ids"][1, n:]).split("<|im_end|>")[0]
            assert parse_answer(rejected, template) == -ex.label
        if not preference:
            # the loss covers the answer and the end of turn, never the prompt
            labels = batch["labels"][0]
            assert (labels[:n] == -100).all() and (labels[n:] != -100).all()


def only(data, modality: str, answer: str):
    """The dataset with one modality's training examples that all have `answer`: a learnable few-step target."""
    train = [ex for ex in data.train if ex.modality == modality and ex.answer == answer]
    assert len(train) >= 4
    return dataclasses.replace(data, train=train)


def label_probability(backend: Qwen3VLRewardModel, requests, name: str) -> float:
    return float(np.mean([r.probs[name] for r in backend.score(requests)]))


def test_sft_lowers_the_loss_and_the_reloaded_adapter_moves_the_backend(
    dataset, templates, tiny_qwen3vl: TinyModelPaths, bare_backend: Qwen3VLRewardModel, tmp_path
) -> None:
    data = only(dataset, "completion", "no")
    config = run_config(tiny_qwen3vl, tmp_path)
    entry = train_modality("completion", config, data, templates["completion"], tmp_path / "adapters" / "completion")
    assert entry["trainer"] == "sft" and entry["steps"] == 6
    assert entry["loss_after"]["train_subset"] < entry["loss_before"]["train_subset"] - 0.05
    assert [h["step"] for h in entry["loss_history"]] == list(range(1, 7))
    saved = tmp_path / "adapters" / "completion"
    assert (saved / "adapter_config.json").is_file() and (saved / "adapter_model.safetensors").is_file()
    assert json.loads((saved / "adapter_config.json").read_text())["r"] == 8

    # reloaded by the backend's own code, named by modality, it shifts the answer towards what it learnt
    tuned = Qwen3VLRewardModel(
        dataclasses.replace(bare_backend.config, adapters={"completion": str(saved)})
    )
    requests = data.requests(data.train[:6], SIZE)
    before, after = label_probability(bare_backend, requests, "no"), label_probability(tuned, requests, "no")
    assert after > before + 0.05, (before, after)
    # the other modalities still run on the bare base
    progress = [r for r in dataset.requests(dataset.train[:40], SIZE) if r.modality == "progress"][:2]
    for mine, base in zip(tuned.score(progress), bare_backend.score(progress), strict=True):
        assert list(mine.probs.values()) == pytest.approx(list(base.probs.values()), abs=2e-3)


def test_dpo_lowers_the_loss_and_prefers_the_chosen_answer(
    dataset, templates, tiny_qwen3vl: TinyModelPaths, bare_backend: Qwen3VLRewardModel, tmp_path
) -> None:
    data = only(dataset, "contrastive", "2")
    config = run_config(tiny_qwen3vl, tmp_path, steps=4, dpo_beta=0.5)
    entry = train_modality("contrastive", config, data, templates["contrastive"], tmp_path / "contrastive")
    assert entry["trainer"] == "dpo"
    # a fresh adapter is the reference itself: the DPO loss starts at log 2
    assert entry["loss_before"]["train_subset"] == pytest.approx(np.log(2), abs=1e-4)
    assert entry["loss_after"]["train_subset"] < np.log(2) - 0.05
    tuned = Qwen3VLRewardModel(
        dataclasses.replace(bare_backend.config, adapters={"contrastive": str(tmp_path / "contrastive")})
    )
    requests = data.requests(data.train[:6], SIZE)
    before, after = label_probability(bare_backend, requests, "2"), label_probability(tuned, requests, "2")
    assert after > before + 0.05, (before, after)


def test_rationales_reach_the_progress_targets(dataset, templates, tiny_qwen3vl: TinyModelPaths, tmp_path) -> None:
    data = dataclasses.replace(
        dataset, train=[with_rationale(ex) for ex in dataset.train if ex.modality == "progress"][:4], val=[]
    )
    config = run_config(tiny_qwen3vl, tmp_path, steps=1, eval_examples=0)
    entry = train_modality("progress", config, data, templates["progress"], tmp_path / "progress")
    assert entry["with_rationale"] == 4 and entry["loss_before"] == {} and entry["steps"] == 1


def test_completion_positives_are_balanced(dataset) -> None:
    from lrm.training.lora_train import _select

    settings = LoraTrainSettings()
    picked = _select(dataset.train, "completion", settings)
    yes = sum(ex.answer == "yes" for ex in picked)
    no = sum(ex.answer == "no" for ex in picked)
    assert yes > 1 and no // 2 <= yes <= no
    unbalanced = dataclasses.replace(settings, balance_completion=False)
    assert len(_select(dataset.train, "completion", unbalanced)) < len(picked)
    five = dataclasses.replace(settings, max_train_examples=5)
    few = _select(dataset.train, "progress", five)
    assert len(few) == 5 and few == _select(dataset.train, "progress", five)  # seeded


def test_config_checks() -> None:
    with pytest.raises(ValueError, match="unknown modality 'reward'"):
        LoraRunConfig(modalities=["reward"])
    with pytest.raises(ValueError, match="steps"):
        LoraTrainSettings(steps=0)
    with pytest.raises(ValueError, match="lora"):
        LoraSettings(r=0)
