"""The published preset end to end on the tiny Qwen3-VL: answer budgets, fallbacks, both modes, pixel budgets.

The tiny model is random, so its answers are gibberish: generate mode then
exercises the reference's fallbacks, logits mode the reference's answer words.
"""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from lrm.backends.qwen3vl import Qwen3VLBackendConfig, Qwen3VLRewardModel
from lrm.backends.reference_parsing import reference_fallback
from lrm.types import RewardRequest, fit_pixels, prepare_frames
from tests.lrm.test_published_prompts import published_config
from tests.support.tiny_reward_models import TinyModelPaths

SMALL_BUDGETS = "qwen3vl.max_new_tokens_by_modality={contrastive: 12, progress: 8, completion: 6}"


def frame(seed: int, height: int = 96, width: int = 128) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (height, width, 3), dtype=np.uint8)


def requests() -> list[RewardRequest]:
    task = "put the carrot on the plate"
    return [
        RewardRequest("contrastive", {"current": frame(0), "previous": frame(1), "first": frame(2)}, task, env_id=0),
        RewardRequest("progress", {"current": frame(3), "first": frame(2)}, task, env_id=0, previous_value=0.4),
        RewardRequest("completion", {"current": frame(4)}, task, env_id=0),
        RewardRequest("progress", {"current": frame(5), "first": frame(2)}, task, env_id=1, previous_value=0.9),
    ]


@pytest.fixture(scope="module")
def generator(tiny_qwen3vl: TinyModelPaths) -> Qwen3VLRewardModel:
    return Qwen3VLRewardModel(published_config(tiny_qwen3vl, SMALL_BUDGETS).qwen3vl)


def with_settings(model: Qwen3VLRewardModel, monkeypatch, **settings) -> Qwen3VLRewardModel:
    """The loaded model with other scoring settings for one test (they are read per call, not at loading)."""
    monkeypatch.setattr(model, "config", dataclasses.replace(model.config, **settings))
    return model


def test_the_preset() -> None:
    from common.config import load_config
    from lrm.backends import RewardBackendConfig

    config = load_config("configs/lrm/backends/lrm_published.yaml", RewardBackendConfig)
    q = config.qwen3vl
    assert config.type == "qwen3vl" and config.hold_protocol == "paper"
    assert q.model == "Qwen/Qwen3-VL-8B-Instruct"
    assert {m: (s.path, s.subfolder) for m, s in q.adapters.items()} == {
        m: ("USC-PSI-Lab/LRM-models", m) for m in ("progress", "contrastive", "completion")
    }
    assert list(q.adapters)[0] == "progress"
    assert q.max_new_tokens_by_modality == {"contrastive": 512, "progress": 128, "completion": 128}
    assert q.fallback == "reference" and q.image_size is None and q.max_pixels is None
    assert Qwen3VLBackendConfig().image_size is None  # native frames unless a config says otherwise


def test_budgets_and_the_reference_fallbacks(generator: Qwen3VLRewardModel) -> None:
    assert [generator.token_budget(m) for m in ("contrastive", "progress", "completion")] == [12, 8, 6]
    rewards = generator.score(requests())
    for request, reward in zip(requests(), rewards, strict=True):
        template = generator.templates[request.modality]
        if not reward.parsed_ok:  # the reference's fallback, never the previous value
            assert reward.value == pytest.approx(reference_fallback(reward.raw_text, template))
        elif request.modality == "contrastive":
            assert reward.value in (-1.0, 1.0)
        elif request.modality == "completion":
            assert reward.value in (0.0, 1.0)
        else:
            assert 0.0 <= reward.value <= 1.0
    assert generator.fallback_policy == "reference"


def test_hold_previous_is_a_named_option(generator: Qwen3VLRewardModel, monkeypatch) -> None:
    model = with_settings(generator, monkeypatch, fallback="hold_previous")
    template = model.templates["progress"]
    reward = model._parsed_reward(template, requests()[1], "the robot moves")
    assert not reward.parsed_ok and reward.value == 0.4
    assert model._parsed_reward(template, requests()[1], '{ "completion_progress": 0.65 }').value == 0.65


def test_logits_mode_scores_the_reference_answer_words(generator: Qwen3VLRewardModel, monkeypatch) -> None:
    model = with_settings(generator, monkeypatch, mode="logits")
    rewards = model.score(requests())
    names = {"contrastive": ["ImageA", "ImageB"], "completion": ["yes", "no"],
             "progress": [f"{i / 10:.1f}" for i in range(11)]}
    for request, reward in zip(requests(), rewards, strict=True):
        template = model.templates[request.modality]
        assert list(reward.probs) == names[request.modality]
        assert sum(reward.probs.values()) == pytest.approx(1.0, abs=1e-5)
        assert reward.value == pytest.approx(sum(p * o.value for p, o in zip(reward.probs.values(), template.options)))
        assert reward.raw_text.endswith(template.answer_prefix) and template.answer_prefix.startswith("{ ")
    contrastive = rewards[0]
    assert contrastive.value == pytest.approx(contrastive.probs["ImageB"] - contrastive.probs["ImageA"])


def test_a_pixel_budget_keeps_the_aspect_ratio(generator: Qwen3VLRewardModel, monkeypatch) -> None:
    wide = frame(7, 64, 128)
    assert fit_pixels(wide, None) is wide and fit_pixels(wide, 64 * 128) is wide
    assert fit_pixels(wide, 2048).shape == (32, 64, 3)
    assert fit_pixels(frame(8, 480, 640), 150_000).shape == (335, 447, 3)  # <= the budget, 4:3 within a pixel
    model = with_settings(generator, monkeypatch, max_pixels=2048)
    request = RewardRequest("completion", {"current": wide}, "stack the cube")
    config = model.config
    inputs = model._encode(model.templates["completion"], [request],
                           [prepare_frames(request, 0, config.image_size, config.max_pixels)])
    assert inputs["image_grid_thw"].tolist() == [[1, 2, 4]]  # 32x64 pixels in 16-pixel patches
    with pytest.raises(ValueError, match="image_size .* or max_pixels .*, not both"):
        Qwen3VLBackendConfig(image_size=(64, 64), max_pixels=4096)
