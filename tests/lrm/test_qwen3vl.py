"""The qwen3vl backend on a tiny random Qwen3-VL, loaded through the production path.

The model is random, so its answers are gibberish: generate mode exercises the
parser's failure policy, logits mode the option probabilities. What is checked is
the machinery: order, shapes, ranges, determinism, adapter switching, and that the
cached option scoring equals brute-force teacher forcing.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from lrm.backends.qwen3vl import (
    Qwen3VLBackendConfig,
    Qwen3VLRewardModel,
    _append_tokens,
    reasoning_context,
    resolve_runtime,
)
from lrm.types import RequestError, RewardRequest
from tests.support.tiny_reward_models import TinyModelPaths

MODALITIES = ("contrastive", "progress", "completion")


def frames_like_a_scene(seed: int, h: int = 96, w: int = 128) -> np.ndarray:
    """A camera-like uint8 frame: smooth background, a table edge and a coloured block."""
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:h, 0:w]
    image = np.stack([80 + 40 * y / h, 90 + 30 * x / w, 110 + 0 * x], axis=-1)
    image[h * 2 // 3 :] = [120, 100, 80]
    top, left = rng.integers(10, h - 30), rng.integers(10, w - 30)
    image[top : top + 16, left : left + 16] = [200, 40, 40]
    image += rng.normal(0, 4, image.shape)
    return np.clip(image, 0, 255).astype(np.uint8)


def make_requests() -> list[RewardRequest]:
    f = frames_like_a_scene
    return [
        RewardRequest("completion", {"current": f(0)}, "pick up the red cube", env_id=0),
        RewardRequest("progress", {"current": f(1), "first": f(2)}, "pick up the red cube", env_id=1, previous_value=0.4),
        RewardRequest("contrastive", {"current": f(3), "previous": f(4)}, "push the cube to the goal", env_id=2),
        RewardRequest("contrastive", {"current": f(5), "previous": f(6), "first": f(7)}, "stack the cube", env_id=3),
        RewardRequest("completion", {"current": f(8, 64, 64)}, "stack the cube", env_id=4),
        RewardRequest("progress", {"current": f(9), "first": f(10)}, "push the cube to the goal", env_id=5),
    ]


def config(paths: TinyModelPaths, **overrides) -> Qwen3VLBackendConfig:
    settings = dict(
        model=str(paths.base),
        adapters={m: str(paths.adapters[m]) for m in MODALITIES},
        max_new_tokens=10,
        max_new_tokens_direct=6,
        image_size=(64, 64),
        max_batch_size=4,
    )
    settings.update(overrides)
    return Qwen3VLBackendConfig(**settings)


@pytest.fixture(scope="module")
def generator(tiny_qwen3vl: TinyModelPaths) -> Qwen3VLRewardModel:
    return Qwen3VLRewardModel(config(tiny_qwen3vl, mode="generate"))


@pytest.fixture(scope="module")
def scorer(tiny_qwen3vl: TinyModelPaths) -> Qwen3VLRewardModel:
    return Qwen3VLRewardModel(config(tiny_qwen3vl, mode="logits", max_batch_size=3))


def test_runtime_on_cpu() -> None:
    device, dtype, attn = resolve_runtime(Qwen3VLBackendConfig(device="cpu"))
    assert (device, dtype, attn) == ("cpu", torch.float32, "sdpa")


def test_one_base_with_three_named_adapters(generator: Qwen3VLRewardModel) -> None:
    assert set(generator.model.peft_config) == set(MODALITIES)
    base_weights = [n for n, _ in generator.model.named_parameters() if "lora" not in n]
    assert len(base_weights) == len(set(base_weights))  # one copy of the base


def test_generate_mode_ranges_and_failure_policy(generator: Qwen3VLRewardModel) -> None:
    requests = make_requests()
    before = sum(generator.stats.answers.values())
    rewards = generator.score(requests)
    assert len(rewards) == len(requests)
    for request, reward in zip(requests, rewards, strict=True):
        assert reward.probs is None
        assert isinstance(reward.raw_text, str)
        if not reward.parsed_ok:
            expected = request.previous_value if request.modality == "progress" and request.previous_value else 0.0
            assert reward.value == expected
        elif request.modality == "completion":
            assert reward.value in (0.0, 1.0)
        elif request.modality == "contrastive":
            assert reward.value in (-1.0, 1.0)
        else:
            assert 0.0 <= reward.value <= 1.0
    assert sum(generator.stats.answers.values()) == before + len(requests)


def test_greedy_decoding_is_deterministic(generator: Qwen3VLRewardModel) -> None:
    requests = make_requests()
    first = [r.raw_text for r in generator.score(requests)]
    second = [r.raw_text for r in generator.score(requests)]
    assert first == second
    assert any(first)  # the model did produce text


def test_logits_mode_probabilities(scorer: Qwen3VLRewardModel) -> None:
    requests = make_requests()
    rewards = scorer.score(requests)
    assert len(rewards) == len(requests)
    for request, reward in zip(requests, rewards, strict=True):
        template = scorer.templates[request.modality]
        assert reward.parsed_ok and reward.probs is not None
        assert list(reward.probs) == [o.name for o in template.options]
        assert sum(reward.probs.values()) == pytest.approx(1.0, abs=1e-5)
        assert all(0.0 <= p <= 1.0 for p in reward.probs.values())
        expected = sum(p * o.value for p, o in zip(reward.probs.values(), template.options))
        assert reward.value == pytest.approx(expected, abs=1e-6)
        assert reward.raw_text.endswith(template.answer_prefix)
        low, high = (-1.0, 1.0) if request.modality == "contrastive" else (0.0, 1.0)
        assert low <= reward.value <= high
    assert len(rewards[1].probs) == 11 and set(rewards[0].probs) == {"yes", "no"}


def test_logits_mode_is_batch_invariant_and_in_request_order(scorer: Qwen3VLRewardModel) -> None:
    requests = make_requests()
    together = scorer.score(requests)
    alone = [scorer.score([r])[0] for r in reversed(requests)][::-1]
    for a, b in zip(together, alone, strict=True):
        assert a.raw_text == b.raw_text
        assert a.value == pytest.approx(b.value, abs=1e-4)


def test_option_scores_equal_teacher_forcing(scorer: Qwen3VLRewardModel) -> None:
    """The cached, shared-prefix scoring gives the same distribution as scoring every full answer."""
    requests = [r for r in make_requests() if r.modality == "progress"]
    got = [r.probs for r in scorer.score(requests)]
    template = scorer.templates["progress"]
    from lrm.types import prepare_frames

    frames = [prepare_frames(r, i, scorer.config.image_size) for i, r in enumerate(requests)]
    with torch.inference_mode(), scorer._adapter("progress"):
        inputs = scorer._encode(template, requests, frames)
        contexts = [reasoning_context(t, template.answer_key) for t in scorer._generate(inputs, 10)]
        for b, context in enumerate(contexts):
            one = {k: (v[b : b + 1] if k != "pixel_values" else v) for k, v in inputs.items()}
            # pixel_values are flat over images: keep only this row's two images.
            patches = inputs["image_grid_thw"].prod(dim=1)
            per_image = patches.split(2)[b].sum().item()
            offset = patches[: 2 * b].sum().item()
            one["pixel_values"] = inputs["pixel_values"][offset : offset + per_image]
            one["image_grid_thw"] = inputs["image_grid_thw"][2 * b : 2 * b + 2]
            scores = []
            for option in template.options:
                answer = scorer.tokenizer(context + template.answer_text(option), add_special_tokens=False)["input_ids"]
                batch = _append_tokens(one, [answer], scorer.tokenizer.pad_token_id)
                logits = scorer.model(**batch).logits[0].float().log_softmax(-1)
                n = len(answer)
                positions = torch.arange(logits.shape[0] - n - 1, logits.shape[0] - 1)
                scores.append(logits[positions, torch.tensor(answer)].sum())
            brute = torch.softmax(torch.stack(scores), dim=0).numpy()
            assert np.allclose(list(got[b].values()), brute, atol=1e-4)


def test_adapter_switching_changes_outputs(tiny_qwen3vl: TinyModelPaths, scorer: Qwen3VLRewardModel) -> None:
    request = make_requests()[0]  # completion
    own = scorer.score([request])[0].probs
    scorer.score(make_requests()[2:4])  # switches to the contrastive adapter and back
    assert scorer.score([request])[0].probs == pytest.approx(own, abs=1e-6)
    swapped = Qwen3VLRewardModel(
        config(tiny_qwen3vl, mode="logits", adapters={"completion": str(tiny_qwen3vl.adapters["progress"])})
    )
    bare = Qwen3VLRewardModel(config(tiny_qwen3vl, mode="logits", adapters={}))
    other = swapped.score([request])[0].probs
    base = bare.score([request])[0].probs
    assert abs(other["yes"] - own["yes"]) > 1e-4
    assert abs(base["yes"] - own["yes"]) > 1e-4


def test_reasoning_off_answers_in_one_pass(tiny_qwen3vl: TinyModelPaths) -> None:
    model = Qwen3VLRewardModel(config(tiny_qwen3vl, mode="logits", reasoning=False))
    rewards = model.score(make_requests())
    for request, reward in zip(make_requests(), rewards, strict=True):
        assert reward.raw_text == model.templates[request.modality].answer_prefix
        assert sum(reward.probs.values()) == pytest.approx(1.0, abs=1e-5)


def test_bad_frame_fails_before_any_compute(generator: Qwen3VLRewardModel) -> None:
    requests = make_requests()
    requests[3] = RewardRequest("completion", {"current": np.zeros((64, 64), np.uint8)}, "t")
    before = dict(generator.stats.answers)
    with pytest.raises(RequestError, match=r"request 3: frame 'current' must be uint8 HxWx3"):
        generator.score(requests)
    assert generator.stats.answers == before


def test_reasoning_context() -> None:
    assert reasoning_context('cube lifted. {"completion_progress": 0.6}', "completion_progress") == "cube lifted. "
    assert reasoning_context("cut off mid-sent", "completion_progress") == "cut off mid-sent\n"
    assert reasoning_context("", "task_completed") == ""
