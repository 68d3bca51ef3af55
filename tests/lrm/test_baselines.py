"""Baselines behind the RewardModel interface, on tiny random models of their real architectures.

Robometer and TOPReward run through LeRobot's own `lerobot.rewards` classes on the
tiny Qwen3-VL (the Robometer checkpoint saved and reloaded like Robometer-4B);
RoboReward runs on the qwen3vl code path with its rubric prompt over the video.
"""

from __future__ import annotations

import pathlib

import numpy as np
import pytest
import torch

from lrm.backends import RewardBackendConfig, make_reward_backend
from lrm.backends.lerobot_rewards import RobometerBackendConfig, TOPRewardBackendConfig
from lrm.interval_hold import IntervalHoldConfig, IntervalHoldReward
from lrm.types import RequestError, RewardRequest, resize_image
from tests.lrm.test_qwen3vl import frames_like_a_scene
from tests.support.tiny_reward_models import TinyModelPaths, build_tiny_robometer

TASK = "pick up the red cube"
VIDEO = np.stack([frames_like_a_scene(t) for t in range(6)])


def requests() -> list[RewardRequest]:
    out = [
        RewardRequest("progress", {"current": VIDEO[k - 1], "first": VIDEO[0]}, TASK, video=VIDEO[:k]) for k in (1, 3, 6)
    ]
    out.append(RewardRequest("completion", {"current": VIDEO[5]}, "stack the cube", video=VIDEO))
    return out


@pytest.fixture(scope="module")
def robometer(tiny_qwen3vl: TinyModelPaths, tmp_path_factory: pytest.TempPathFactory):
    checkpoint = build_tiny_robometer(tmp_path_factory.mktemp("robometer") / "ckpt", tiny_qwen3vl.base)
    config = RewardBackendConfig(
        type="robometer",
        robometer=RobometerBackendConfig(
            pretrained_path=str(checkpoint), base_model_id=str(tiny_qwen3vl.base), max_frames=4, image_size=(64, 64)
        ),
    )
    return make_reward_backend(config)


@pytest.fixture(scope="module")
def topreward(tiny_qwen3vl: TinyModelPaths):
    config = RewardBackendConfig(
        type="topreward",
        topreward=TOPRewardBackendConfig(vlm_name=str(tiny_qwen3vl.base), max_frames=4, image_size=(64, 64)),
    )
    return make_reward_backend(config)


def test_robometer_scores_through_lerobot(robometer) -> None:
    from lerobot.rewards.robometer.modeling_robometer import ROBOMETER_FEATURE_PREFIX

    batch = requests()
    rewards = robometer.score(batch)
    assert len(rewards) == len(batch)
    for request, reward in zip(batch, rewards, strict=True):
        assert 0.0 <= reward.value <= 1.0
        assert sum(reward.probs.values()) == pytest.approx(1.0)
        if request.modality == "completion":
            assert reward.value == float(reward.probs["success"] > 0.5)
    # one request alone gives the same value, and equals LeRobot's own compute_reward
    alone = robometer.score([batch[1]])[0]
    assert alone.value == pytest.approx(rewards[1].value, abs=1e-4)
    resized = np.stack([resize_image(f, (64, 64)) for f in VIDEO[:3]])  # what the backend feeds it
    encoded = robometer.encoder.encode_samples([(resized, TASK)])
    public = robometer.model.compute_reward({f"{ROBOMETER_FEATURE_PREFIX}{k}": v for k, v in encoded.items()})
    assert float(public[0]) == pytest.approx(alone.value, abs=1e-5)
    assert robometer.model.config.pretrained_path  # loaded like Robometer-4B: from_config + safetensors


def test_topreward_scores_through_lerobot(topreward) -> None:
    batch = requests()
    rewards = topreward.score(batch)
    for reward in rewards:
        assert 0.0 < reward.value < 1.0 and reward.probs["True"] == reward.value
        assert "log P(True)" in reward.raw_text
    assert topreward.score([batch[2]])[0].value == pytest.approx(rewards[2].value, rel=1e-4)


def test_video_baselines_refuse_what_they_cannot_answer(robometer, topreward) -> None:
    no_video = RewardRequest("completion", {"current": VIDEO[0]}, TASK)
    contrastive = RewardRequest("contrastive", {"current": VIDEO[1], "previous": VIDEO[0]}, TASK, video=VIDEO[:2])
    for model, name in ((robometer, "robometer"), (topreward, "topreward")):
        with pytest.raises(RequestError, match=f"request 0: {name} judges a video"):
            model.score([no_video])
        with pytest.raises(RequestError, match=f"request 1: {name} answers"):
            model.score([requests()[0], contrastive])


def test_interval_hold_feeds_the_growing_video(robometer) -> None:
    hold = IntervalHoldReward(robometer, IntervalHoldConfig(every=2, weights={"progress": 1.0}), num_envs=1)
    hold.reset(0, TASK)
    rewards = [hold.step({0: VIDEO[t]})[0] for t in range(5)]
    assert rewards[0] == rewards[1] and rewards[2] == rewards[3] and 0.0 <= rewards[4] <= 1.0


def test_roboreward_on_the_qwen3vl_path(tiny_qwen3vl: TinyModelPaths) -> None:
    config = RewardBackendConfig(type="roboreward")
    config.roboreward.model = str(tiny_qwen3vl.base)
    config.roboreward.image_size = (64, 64)
    config.roboreward.mode = "logits"
    model = make_reward_backend(config)
    assert model.needs_video and config.trace_name("progress") == "roboreward_progress"
    rewards = model.score(requests()[:3])
    for reward in rewards:
        assert list(reward.probs) == ["1", "2", "3", "4", "5"]
        assert sum(reward.probs.values()) == pytest.approx(1.0, abs=1e-5)
        expected = sum(p * v for p, v in zip(reward.probs.values(), (0, 0.25, 0.5, 0.75, 1.0)))
        assert reward.value == pytest.approx(expected, abs=1e-6)
    assert rewards[0].probs != pytest.approx(rewards[2].probs, abs=1e-6)  # a longer video is a different prompt
    with pytest.raises(RequestError, match="request 0: the progress prompt shows the episode video"):
        model.score([RewardRequest("progress", {"current": VIDEO[0], "first": VIDEO[0]}, TASK)])
    model.config.mode = "generate"
    model.config.max_new_tokens_direct = 4
    generated = model.score(requests()[:1])[0]
    assert generated.probs is None and (not generated.parsed_ok or 0.0 <= generated.value <= 1.0)


def test_backend_config_rejects_unknown_type() -> None:
    with pytest.raises(ValueError, match="unknown reward backend 'magic'"):
        RewardBackendConfig(type="magic")  # type: ignore[arg-type]
    assert torch.get_default_dtype() == torch.float32
    assert pathlib.Path("configs/lrm/backends/robometer.yaml").is_file()
