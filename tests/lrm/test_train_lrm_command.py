"""`lrm-robot train-lrm` end to end: LoRA on the tiny Qwen3-VL, the lite model, lite distillation, bad input."""

from __future__ import annotations

import json
import pathlib

import numpy as np
import pytest
import yaml

from app.cli import main
from common.config import load_config
from lrm.backends import RewardBackendConfig, make_reward_backend
from lrm.types import RewardRequest
from tests.support.bar_store import make_bar_store
from tests.support.tiny_reward_models import TinyModelPaths

CONFIGS = pathlib.Path(__file__).resolve().parents[2] / "configs" / "lrm" / "train"


@pytest.fixture(scope="module")
def store_path(tmp_path_factory) -> pathlib.Path:
    path = tmp_path_factory.mktemp("bars") / "store"
    make_bar_store(path, tasks=("fill red", "fill green"), successes=3, failures=1, length=(8, 12), size=32).close()
    return path


def write(path: pathlib.Path, data: dict) -> pathlib.Path:
    path.write_text(yaml.safe_dump(data))
    return path


def lora_config(tmp_path: pathlib.Path, tiny: TinyModelPaths, store: pathlib.Path) -> pathlib.Path:
    return write(
        tmp_path / "lora.yaml",
        {
            "type": "qwen3vl_lora",
            "store": str(store),
            "output_dir": str(tmp_path / "out"),
            "model": str(tiny.base),
            "image_size": [32, 32],
            "dataset": {"val_fraction": 0.25, "contrastive_pairs_per_episode": 2},
            "lora": {"r": 4, "alpha": 8, "dropout": 0.0, "target_modules": ["q_proj", "v_proj"]},
            "train": {"steps": 2, "batch_size": 2, "gradient_accumulation_steps": 1, "lr": 1.0e-3,
                      "logging_steps": 1, "eval_examples": 1, "max_train_examples": 4},
        },
    )  # fmt: skip


def requests_for(frame: np.ndarray) -> list[RewardRequest]:
    return [
        RewardRequest("progress", {"current": frame, "first": frame}, "fill red"),
        RewardRequest("completion", {"current": frame}, "fill red"),
        RewardRequest("contrastive", {"current": frame, "previous": frame}, "fill red"),
    ]


def test_lora_run_writes_adapters_that_the_backend_loads(
    tmp_path: pathlib.Path, tiny_qwen3vl: TinyModelPaths, store_path: pathlib.Path, capsys
) -> None:
    config = lora_config(tmp_path, tiny_qwen3vl, store_path)
    # (SFT and DPO of every modality are covered in test_lora_train; one modality keeps this fast)
    assert main(["train-lrm", "--config", str(config), "--steps", "1", "--set", "modalities=[completion]",
                 "--report-to", "jsonl", "tensorboard"]) == 0
    out = tmp_path / "out"
    # our JSONL callback has the Trainer's logs (evaluations before / after, the training loss); TRL wrote
    # TensorBoard's events into OUTPUT/tensorboard/<modality>, not into its scratch folder
    rows = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert rows and all(r["modality"] == "completion" and "wall_time" in r for r in rows)
    assert any("loss" in r and r["step"] == 1 for r in rows) and any("val_loss" in r for r in rows)
    assert list((out / "tensorboard" / "completion").glob("events.out.tfevents.*"))
    assert (out / "adapters" / "completion" / "adapter_model.safetensors").is_file()
    assert sorted(p.name for p in (out / "adapters").iterdir()) == ["completion"]
    report = json.loads((out / "report.json").read_text())
    assert set(report["modalities"]) == {"completion"}
    entry = report["modalities"]["completion"]
    assert entry["trainer"] == "sft" and entry["steps"] == 1 and entry["records"] == 4
    assert report["examples"]["train"]["completion"] > 0 and report["config"]["train"]["steps"] == 1
    assert set(entry["loss_before"]) == {"train_subset", "val"}
    assert "completion: sft 1 steps on 4 records" in capsys.readouterr().out

    # the written backend config loads the adapters, named by modality, in the unchanged qwen3vl backend
    backend_config = load_config(out / "backend.yaml", RewardBackendConfig, ["qwen3vl.mode=logits"])
    assert set(backend_config.qwen3vl.adapters) == {"completion"}
    assert backend_config.qwen3vl.reasoning is False  # trained without rationales: answer at once
    backend = make_reward_backend(backend_config)
    rewards = backend.score(requests_for(np.full((32, 32, 3), 90, np.uint8)))
    assert [r.parsed_ok for r in rewards] == [True] * 3


def test_lite_run_and_distillation(tmp_path: pathlib.Path, store_path: pathlib.Path, capsys) -> None:
    small = {"image_size": [16, 16], "cnn_channels": [8, 8], "feature_dim": 16, "hidden_dim": 16}
    lite = write(
        tmp_path / "lite.yaml",
        {"type": "lite", "store": str(store_path), "output_dir": str(tmp_path / "lite"), "model": small,
         "train": {"steps": 30, "batch_size": 16, "log_every": 10}},
    )  # fmt: skip
    assert main(["train-lrm", "--config", str(lite)]) == 0
    report = json.loads((tmp_path / "lite" / "report.json").read_text())
    assert report["type"] == "lite" and report["history"]["steps"] == [10, 20, 30]
    assert report["tasks"] == ["fill green", "fill red"] and "progress_mae" in report["history"]["val"]
    assert "held-out" in capsys.readouterr().out
    # metrics.jsonl (the default --report-to): a row per logged step, the held-out numbers on the last
    rows = [json.loads(line) for line in (tmp_path / "lite" / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in rows] == [10, 20, 30] and all({"loss", "lr", "wall_time"} <= set(r) for r in rows)
    assert rows[-1]["val/progress_mae"] == report["history"]["val"]["progress_mae"] and "seconds" in rows[-1]
    teacher = load_config(tmp_path / "lite" / "backend.yaml", RewardBackendConfig)
    assert teacher.type == "lite"
    assert len(make_reward_backend(teacher).score(requests_for(np.zeros((32, 32, 3), np.uint8)))) == 3

    # the model just trained is the teacher of a student with a smaller image
    distill = write(
        tmp_path / "distill.yaml",
        {"type": "lite_distill", "store": str(store_path), "output_dir": str(tmp_path / "student"),
         "teacher": str(tmp_path / "lite" / "backend.yaml"), "model": {**small, "image_size": [8, 8]},
         "train": {"steps": 10, "batch_size": 16, "log_every": 10}},
    )  # fmt: skip
    assert main(["train-lrm", "--config", str(distill), "--steps", "5"]) == 0
    student = json.loads((tmp_path / "student" / "report.json").read_text())
    assert student["type"] == "lite_distill" and student["history"]["steps"] == [5]
    assert [json.loads(line)["step"] for line in (tmp_path / "student" / "metrics.jsonl").read_text().splitlines()] == [5]
    assert student["teacher"]["backend"] == "lite" and student["teacher"]["config"].endswith("backend.yaml")
    assert (tmp_path / "student" / "model.safetensors").is_file()


@pytest.mark.parametrize(("report_to", "expected"), [(["jsonl"], []), (["jsonl", "tensorboard"], ["tensorboard"]),
                                                     ("tensorboard", ["tensorboard"]), ("none", [])])
def test_report_to_reaches_trls_training_arguments(tmp_path: pathlib.Path, monkeypatch, report_to, expected) -> None:
    """`jsonl` is ours (a callback), the others TRL's own: checked on the arguments the trainer is built with."""
    import types

    import torch
    import trl

    from lrm.training import lora_train

    built: dict = {}
    monkeypatch.setattr(trl, "SFTTrainer", lambda **kwargs: built.update(kwargs))
    monkeypatch.setattr(trl, "DPOTrainer", lambda **kwargs: built.update(kwargs))
    config = lora_train.LoraRunConfig(output_dir=str(tmp_path / "lora_out"), report_to=report_to)
    model = types.SimpleNamespace(device=torch.device("cpu"), dtype=torch.float32)
    callback = object()
    for modality, config_class in (("completion", trl.SFTConfig), ("contrastive", trl.DPOConfig)):
        lora_train._make_trainer(modality, config, model, None, None, str(tmp_path / "scratch"), [callback])
        args = built["args"]
        assert isinstance(args, config_class) and list(args.report_to) == expected
        assert args.run_name == f"lora_out-{modality}" and built["callbacks"] == [callback]


def test_shipped_configs_load() -> None:
    from lrm.training.lite_runs import LiteDistillRun, LiteTrainRun
    from lrm.training.lora_train import LoraRunConfig

    lora = load_config(CONFIGS / "lora_pickcube.yaml", LoraRunConfig)
    assert lora.model == "Qwen/Qwen3-VL-8B-Instruct" and lora.train.gradient_checkpointing
    assert lora.image_size == (256, 256)  # the qwen3vl backend's default
    assert load_config(CONFIGS / "lite_pickcube.yaml", LiteTrainRun).type == "lite"
    # the teacher is read with the config: the shipped one names a LoRA run's output, here a shipped backend stands in
    assert yaml.safe_load((CONFIGS / "lite_distill.yaml").read_text())["teacher"].endswith("backend.yaml")
    teacher = CONFIGS.parent / "backends" / "lite.yaml"
    distill = load_config(CONFIGS / "lite_distill.yaml", LiteDistillRun, [f"teacher={teacher}"])
    assert distill.teacher.config.type == "lite"


def one_error_line(capsys) -> str:
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1, err
    return err[0]


def test_bad_input_is_one_line_and_exit_2(
    tmp_path: pathlib.Path, tiny_qwen3vl: TinyModelPaths, store_path: pathlib.Path, capsys
) -> None:
    config = lora_config(tmp_path, tiny_qwen3vl, store_path)
    data = yaml.safe_load(config.read_text())
    data["train"]["stpes"] = 3
    bad = write(tmp_path / "bad.yaml", data)
    assert main(["train-lrm", "--config", str(bad)]) == 2
    line = one_error_line(capsys)
    assert "train.stpes" in line and "did you mean 'steps'" in line and str(bad) in line

    assert main(["train-lrm", "--config", str(write(tmp_path / "t.yaml", {"type": "lora"}))]) == 2
    assert "type: 'lora' is not one of qwen3vl_lora, lite, lite_distill" in one_error_line(capsys)

    assert main(["train-lrm", "--config", str(config), "--store", str(tmp_path / "nowhere")]) == 2
    assert "nowhere" in one_error_line(capsys)

    assert main(["train-lrm", "--config", str(config), "--set", "model=" + str(tmp_path / "no-model")]) == 2
    assert "no-model" in one_error_line(capsys)

    assert main(["train-lrm", "--config", str(config), "--set", "modalities=[rewards]"]) == 2
    assert "unknown modality 'rewards'" in one_error_line(capsys)

    distill = write(tmp_path / "d.yaml", {"type": "lite_distill", "store": str(store_path)})
    assert main(["train-lrm", "--config", str(distill)]) == 2
    assert "teacher" in one_error_line(capsys)
    assert not (tmp_path / "out" / "adapters").exists()
