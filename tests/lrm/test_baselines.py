"""Baselines behind the RewardModel interface, on tiny random models of their real architectures.

Robometer and TOPReward run through LeRobot's own `lerobot.rewards` classes on the
tiny Qwen3-VL (the Robometer checkpoint saved and reloaded like Robometer-4B);
RoboReward runs the tiny Qwen3-VL as a video judge with the reference's rubric.
What each is shown (frames at an fps, the reference's cap, aspect-kept resizing)
and how TOPReward's log-probability becomes a reward are checked by hand.
"""

from __future__ import annotations

import math
import pathlib

import numpy as np
import pytest
import torch

from common.config import ConfigError, load_config
from lrm.backends import RewardBackendConfig, make_reward_backend
from lrm.backends.lerobot_rewards import RobometerBackendConfig, TOPRewardBackendConfig, topreward_value
from lrm.backends.roboreward import RoboRewardBackendConfig, messages, parse_score, score_value
from lrm.backends.video import fit_longer_side, prepare_video, sample_indices
from lrm.interval_hold import IntervalHoldConfig, IntervalHoldReward
from lrm.types import RequestError, RewardRequest, validate_request
from tests.lrm.test_qwen3vl import frames_like_a_scene
from tests.support.tiny_reward_models import TinyModelPaths, build_tiny_robometer

TASK = "pick up the red cube"
VIDEO = np.stack([frames_like_a_scene(t) for t in range(6)])  # 96 x 128 frames


def requests() -> list[RewardRequest]:
    out = [
        RewardRequest("progress", {"current": VIDEO[k - 1], "first": VIDEO[0]}, TASK, video=VIDEO[:k]) for k in (1, 3, 6)
    ]
    out.append(RewardRequest("completion", {"current": VIDEO[5]}, "stack the cube", video=VIDEO))
    return out


def numbered_video(length: int, h: int = 8, w: int = 8) -> np.ndarray:
    """Frame i is filled with the value i, so a sampled frame says which one it was."""
    return np.repeat(np.arange(length, dtype=np.uint8)[:, None, None, None], h * w * 3).reshape(length, h, w, 3)


@pytest.fixture(scope="module")
def robometer(tiny_qwen3vl: TinyModelPaths, tmp_path_factory: pytest.TempPathFactory):
    checkpoint = build_tiny_robometer(tmp_path_factory.mktemp("robometer") / "ckpt", tiny_qwen3vl.base)
    config = RewardBackendConfig(
        type="robometer",
        robometer=RobometerBackendConfig(
            pretrained_path=str(checkpoint), base_model_id=str(tiny_qwen3vl.base), max_frames=4, max_side=64
        ),
    )
    return make_reward_backend(config)


@pytest.fixture(scope="module")
def topreward(tiny_qwen3vl: TinyModelPaths):
    config = RewardBackendConfig(
        type="topreward",
        topreward=TOPRewardBackendConfig(vlm_name=str(tiny_qwen3vl.base), max_frames=4, max_side=64),
    )
    return make_reward_backend(config)


@pytest.fixture(scope="module")
def roboreward(tiny_qwen3vl: TinyModelPaths):
    config = RoboRewardBackendConfig(model=str(tiny_qwen3vl.base), mode="logits", fps=0.5, max_side=64, max_frames=4)
    return make_reward_backend(RewardBackendConfig(type="roboreward", roboreward=config))


# --------------------------------------------------------------------------- what the models are shown


def test_frames_are_sampled_at_the_given_fps_ending_at_the_current_one() -> None:
    # 25 frames at 20 fps shown at 2 fps: every 10th frame back from the current one (24): 24, 14, 4.
    assert sample_indices(25, video_fps=20, fps=2, max_frames=15) == ([4, 14, 24], 2.0)
    # 5 fps shown at 2 fps: a stride of 2.5 back from 10 lands on 10, 7.5, 5, 2.5, 0, rounded half up
    # to 10, 8, 5, 3, 0; the span 0..10 (2 s at 5 fps) holds 4 intervals: 4 / 2 s = 2 fps.
    assert sample_indices(11, video_fps=5, fps=2, max_frames=10) == ([0, 3, 5, 8, 10], 2.0)
    # a video sparser than the wanted rate is shown whole, at its own rate
    assert sample_indices(5, video_fps=1, fps=2, max_frames=8) == ([0, 1, 2, 3, 4], 1.0)
    # a video that does not say its rate is taken to be at `fps` already (interval-hold's query frames)
    assert sample_indices(3, video_fps=None, fps=0.5, max_frames=8) == ([0, 1, 2], 0.5)
    # the cap is the reference's np.linspace(0, n - 1, cap, dtype=int): for 10 frames and 4 kept,
    # 0, 3, 6, 9; the kept frames span 9 source frames in 3 steps: 2 fps * 3 / 9 = 2/3 fps.
    index, shown = sample_indices(10, video_fps=None, fps=2, max_frames=4)
    assert index == [0, 3, 6, 9] and shown == pytest.approx(2 / 3)
    # linspace(0, 9, 8) = 0, 1.29, 2.57, 3.86, 5.14, 6.43, 7.71, 9: truncated, not rounded
    # (rounding would give 0, 1, 3, 4, 5, 6, 8, 9); Robometer is told no rate.
    assert sample_indices(10, video_fps=None, fps=None, max_frames=8) == ([0, 1, 2, 3, 5, 6, 7, 9], None)
    assert sample_indices(7, video_fps=None, fps=None, max_frames=1) == ([6], None)  # one frame: the current one
    frames, shown = prepare_video(numbered_video(25), video_fps=20, fps=2, max_frames=15, max_side=None)
    assert frames[:, 0, 0, 0].tolist() == [4, 14, 24] and shown == 2.0


def test_frames_are_shrunk_keeping_the_aspect_ratio() -> None:
    # the reference's Robometer rule: scale = min(1, 320 / longer side), sizes truncated to int
    landscape = np.zeros((480, 640, 3), np.uint8)
    assert fit_longer_side(landscape, 320).shape == (240, 320, 3)  # 640x480 -> 320x240
    assert fit_longer_side(np.zeros((640, 480, 3), np.uint8), 320).shape == (320, 240, 3)
    # 1000 x 333: scale 0.32, 333 * 0.32 = 106.56 -> 106
    assert fit_longer_side(np.zeros((333, 1000, 3), np.uint8), 320).shape == (106, 320, 3)
    small = np.zeros((50, 100, 3), np.uint8)
    assert fit_longer_side(small, 320) is small and fit_longer_side(landscape, None) is landscape  # never enlarged
    gradient = np.tile(np.linspace(0, 255, 640).astype(np.uint8)[None, :, None], (480, 1, 3))
    shrunk = fit_longer_side(gradient, 320)
    assert abs(int(shrunk[120, 160, 0]) - int(gradient[240, 320, 0])) <= 2  # the same picture, not a crop


def test_topreward_value_is_the_references_affine_map() -> None:
    # clip((log P - lo) / (hi - lo), 0, 1) with lo, hi = -25, -5: a log-probability of -20 is
    # (-20 + 25) / 20 = 0.25, where exp(-20) = 2.1e-9 would make every frame ~0.
    bounds = (-25.0, -5.0)
    assert topreward_value(-20.0, bounds) == 0.25
    assert topreward_value(-15.0, bounds) == 0.5
    assert topreward_value(-7.0, bounds) == pytest.approx(0.9)
    assert topreward_value(-25.0, bounds) == 0.0 and topreward_value(-30.0, bounds) == 0.0  # clipped below
    assert topreward_value(-5.0, bounds) == 1.0 and topreward_value(-0.5, bounds) == 1.0  # and above
    assert topreward_value(-2.0, (-4.0, 0.0)) == 0.5  # other bounds: (-2 + 4) / 4
    assert math.exp(-20.0) < 1e-8


def test_presets_name_their_checkpoints_and_check_their_settings(tmp_path: pathlib.Path) -> None:
    directory = pathlib.Path("configs/lrm/backends")
    robo = load_config(directory / "roboreward.yaml", RewardBackendConfig).roboreward
    assert (robo.model, robo.mode, robo.max_new_tokens, robo.max_frames, robo.max_side) == (
        "teetone/RoboReward-8B", "generate", 64, 16, None
    )
    assert "ANSWER: <score>" in robo.prompt.config.text and robo.prompt.config.text.endswith("Task: {task}")
    top = load_config(directory / "topreward.yaml", RewardBackendConfig).topreward
    assert (top.vlm_name, top.max_frames, top.logp_range, top.max_side) == (
        "Qwen/Qwen3-VL-8B-Instruct", 15, (-25.0, -5.0), None
    )
    meter = load_config(directory / "robometer.yaml", RewardBackendConfig).robometer
    assert (meter.pretrained_path, meter.base_model_id, meter.max_frames, meter.max_side) == (
        "lerobot/Robometer-4B", "Qwen/Qwen3-VL-4B-Instruct", 8, 320
    )
    bad = tmp_path / "bad.yaml"
    for body, message in (
        ("type: topreward\ntopreward: {logp_range: [-5, -25]}\n", "key 'topreward': topreward: logp_range must be"),
        ("type: topreward\ntopreward: {fps: 0}\n", "topreward: fps must be a positive number, got 0"),
        ("type: robometer\nrobometer: {max_side: 8}\n", "robometer: max_side must be at least 32 pixels"),
        ("type: robometer\nrobometer: {image_size: [224, 224]}\n", "unknown key 'robometer.image_size'"),
        ("type: roboreward\nroboreward: {on_unparseable: hold_on}\n", "expected one of 'zero', 'hold'"),
    ):
        bad.write_text(body)
        with pytest.raises(ConfigError, match=message):
            load_config(bad, RewardBackendConfig)
    prompt = tmp_path / "prompt.yaml"
    prompt.write_text("text: rate the robot\n")
    bad.write_text(f"type: roboreward\nroboreward: {{prompt: {prompt}}}\n")
    with pytest.raises(ConfigError, match="the prompt must contain"):
        load_config(bad, RewardBackendConfig)


def test_a_request_says_the_rate_of_its_video() -> None:
    validate_request(RewardRequest("completion", {"current": VIDEO[0]}, TASK, video=VIDEO, video_fps=20.0), 0)
    for fps in (0, -1.0, float("nan"), "20"):
        with pytest.raises(RequestError, match="request 3: video_fps must be a positive number"):
            request = RewardRequest("completion", {"current": VIDEO[0]}, TASK, video=VIDEO, video_fps=fps)  # type: ignore[arg-type]
            validate_request(request, 3)


# --------------------------------------------------------------------------- the backends


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
    shown = np.stack([fit_longer_side(f, 64) for f in VIDEO[:3]])  # what the backend feeds it
    encoded = robometer.encoder.encode_samples([(shown, TASK)])
    public = robometer.model.compute_reward({f"{ROBOMETER_FEATURE_PREFIX}{k}": v for k, v in encoded.items()})
    assert float(public[0]) == pytest.approx(alone.value, abs=1e-5)
    assert robometer.model.config.pretrained_path  # loaded like Robometer-4B: from_config + safetensors


def test_robometer_is_shown_the_capped_video_with_its_aspect_ratio(robometer, monkeypatch) -> None:
    seen = []
    encode = robometer.encoder.encode_samples
    monkeypatch.setattr(robometer.encoder, "encode_samples", lambda samples: seen.extend(samples) or encode(samples))
    robometer.score([RewardRequest("progress", {"current": VIDEO[5], "first": VIDEO[0]}, TASK, video=VIDEO)])
    (frames, task), = seen
    # 6 frames capped at 4: linspace(0, 5, 4) = 0, 1.67, 3.33, 5 -> 0, 1, 3, 5; 96 x 128 -> 48 x 64
    assert frames.shape == (4, 48, 64, 3) and task == TASK
    expected = np.stack([fit_longer_side(VIDEO[i], 64) for i in (0, 1, 3, 5)])
    assert np.array_equal(frames, expected)


def test_topreward_scores_through_lerobot(topreward) -> None:
    from lerobot.lerobot_types import TransitionKey

    batch = requests()
    rewards = topreward.score(batch)
    for reward in rewards:
        # the value is the affine map of log P(True), and probs hold P(True) itself
        log_p = math.log(reward.probs["True"])
        assert reward.value == pytest.approx(topreward_value(log_p, (-25.0, -5.0)), abs=1e-6)
        assert reward.value == pytest.approx(min(1.0, max(0.0, (log_p + 25.0) / 20.0)), abs=1e-6)
        assert 0.0 < reward.probs["True"] < 1.0 and "log P(True)" in reward.raw_text
    assert topreward.score([batch[2]])[0].value == pytest.approx(rewards[2].value, rel=1e-4)
    # LeRobot's own encoder and compute_reward on the frames the backend shows, at the rate it shows
    # them (6 frames, none with a rate, so at fps 2; capped at 4: frames 0, 1, 3, 5 over 5 source
    # frames in 3 steps: 2 * 3 / 5 = 1.2 fps), give the same log-probability.
    assert rewards[2].raw_text.endswith("over 4 frames at 1.2 fps")
    shown = np.stack([fit_longer_side(VIDEO[i], 64) for i in (0, 1, 3, 5)])
    topreward.encoder.fps = 1.2
    transition = {
        TransitionKey.OBSERVATION: {topreward.lerobot_config.image_key: torch.from_numpy(shown[None])},
        TransitionKey.COMPLEMENTARY_DATA: {"task": [TASK]},
    }
    log_p = float(topreward.model.compute_reward(topreward.encoder(transition)[TransitionKey.OBSERVATION])[0])
    assert rewards[2].probs["True"] == pytest.approx(math.exp(log_p), rel=1e-4)


def test_topreward_tells_the_model_the_rate_of_the_frames_it_shows(topreward, monkeypatch) -> None:
    rates = []
    encode = topreward.encoder._encode_batch
    monkeypatch.setattr(
        topreward.encoder, "_encode_batch", lambda *a: rates.append((a[0].shape[1], topreward.encoder.fps)) or encode(*a)
    )
    video = np.stack([frames_like_a_scene(t % 6) for t in range(31)])
    request = RewardRequest("progress", {"current": video[-1], "first": video[0]}, TASK, video=video, video_fps=20.0)
    topreward.score([request])
    # 31 frames at 20 fps shown at 2 fps: frames 0, 10, 20, 30 (4, the cap), told 2 fps
    assert rates == [(4, 2.0)]


def test_video_baselines_refuse_what_they_cannot_answer(robometer, topreward, roboreward) -> None:
    no_video = RewardRequest("completion", {"current": VIDEO[0]}, TASK)
    contrastive = RewardRequest("contrastive", {"current": VIDEO[1], "previous": VIDEO[0]}, TASK, video=VIDEO[:2])
    for model, name in ((robometer, "robometer"), (topreward, "topreward")):
        with pytest.raises(RequestError, match=f"request 0: {name} judges a video"):
            model.score([no_video])
        with pytest.raises(RequestError, match=f"request 1: {name} answers"):
            model.score([requests()[0], contrastive])
    with pytest.raises(RequestError, match="request 1: roboreward answers progress only, not 'completion'"):
        roboreward.score([requests()[0], requests()[3]])
    with pytest.raises(RequestError, match="request 0: roboreward judges a video"):
        roboreward.score([RewardRequest("progress", {"current": VIDEO[0], "first": VIDEO[0]}, TASK)])


def test_interval_hold_feeds_the_growing_video(robometer) -> None:
    hold = IntervalHoldReward(robometer, IntervalHoldConfig(every=2, weights={"progress": 1.0}), num_envs=1)
    hold.reset(0, TASK)
    rewards = [hold.step({0: VIDEO[t]})[0] for t in range(5)]
    assert rewards[0] == rewards[1] and rewards[2] == rewards[3] and 0.0 <= rewards[4] <= 1.0


# The reference's RoboReward prompt (vlm_reward_server.py, ROBOREWARD_PROMPT), kept here as the
# golden copy that the shipped prompt file must render to, with the task "put carrot on plate".
GOLDEN_ROBOREWARD_CHAT = (
    "<|im_start|>user\n<|vision_start|><|video_pad|><|vision_end|>"
    "Given the task, assign a discrete progress score reward (1,2,3,4,5) for the robot in the video in the "
    "format: ANSWER: <score>\n"
    "Rubric for end-of-episode progress (judge only the final state without time limits):\n"
    "1 - No Success: Final state shows no goal-relevant change for the command.\n"
    "2 - Minimal Progress: Final state shows a small but insufficient change toward the goal.\n"
    "3 - Partial Completion: The final state shows good progress toward the goal but violates more than one "
    "requirement or a major requirement.\n"
    "4 - Near Completion: Final state is correct in region and intent but misses a single minor requirement.\n"
    "5 - Perfect Completion: Final state satisfies all requirements.\n\n"
    "Task: put carrot on plate<|im_end|>\n<|im_start|>assistant\n"
)


def test_roboreward_prompt_is_the_references(roboreward) -> None:
    chat = messages(roboreward.prompt, "put carrot on plate")
    assert len(chat) == 1 and chat[0]["role"] == "user"  # no system message, as the reference
    assert [part["type"] for part in chat[0]["content"]] == ["video", "text"]  # the video first
    rendered = roboreward.processor.apply_chat_template(chat, tokenize=False, add_generation_prompt=True)
    assert rendered == GOLDEN_ROBOREWARD_CHAT


def test_roboreward_reads_answers_as_the_reference() -> None:
    # the first "ANSWER: <1-5>" wins; else the first standalone digit 1..5; else nothing
    assert parse_score("ANSWER: 4") == 4 and score_value(4) == 0.75
    assert parse_score("The cube is lifted. ANSWER:5") == 5 and score_value(5) == 1.0
    assert parse_score("Step 2 shows a grasp. ANSWER: 3") == 3  # ANSWER beats an earlier digit
    assert parse_score("ANSWER: 7, I would say 2") == 2  # 7 is no score; the first bare 1..5 is 2
    assert parse_score("I rate it 1 of 5") == 1 and score_value(1) == 0.0
    assert parse_score("ANSWER: 12") == 1  # the reference's pattern has no word boundary after the digit
    assert parse_score("a score of 12 or 0") is None  # "12" holds no standalone digit, 0 is no score
    assert parse_score("no idea") is None and parse_score(None) is None  # type: ignore[arg-type]


def test_roboreward_scores_the_video(roboreward, monkeypatch) -> None:
    assert roboreward.needs_video and RewardBackendConfig(type="roboreward").trace_name("progress") == "roboreward_progress"
    rewards = roboreward.score(requests()[:3])
    for reward in rewards:
        assert list(reward.probs) == ["1", "2", "3", "4", "5"]
        assert sum(reward.probs.values()) == pytest.approx(1.0, abs=1e-5)
        expected = sum(p * v for p, v in zip(reward.probs.values(), (0, 0.25, 0.5, 0.75, 1.0)))
        assert reward.value == pytest.approx(expected, abs=1e-6)
    assert rewards[0].probs != pytest.approx(rewards[2].probs, abs=1e-6)  # a longer video is a different prompt
    # the rate reaches the model as Qwen3-VL's frame timestamps: 31 frames at 5 fps shown at 0.5 fps
    # are frames 0, 10, 20, 30; two frames per temporal patch: (0 + 2) / 2 = 1.0 s and (4 + 6) / 2 = 5.0 s
    texts = []
    encode = roboreward._encode
    monkeypatch.setattr(roboreward, "_encode", lambda tasks, shown: texts.append(shown) or encode(tasks, shown))
    video = numbered_video(31, 64, 64)
    roboreward.score([RewardRequest("progress", {"current": video[-1], "first": video[0]}, TASK, video=video, video_fps=5.0)])
    (((frames, rate),),) = texts
    assert frames[:, 0, 0, 0].tolist() == [0, 10, 20, 30] and rate == 0.5
    ids = encode([TASK], [(frames, rate)])["input_ids"][0]
    decoded = roboreward.tokenizer.decode(ids)
    assert "<1.0 seconds><|vision_start|>" in decoded and "<5.0 seconds><|vision_start|>" in decoded


def test_roboreward_generates_and_falls_back_like_the_reference(roboreward) -> None:
    request = RewardRequest("progress", {"current": VIDEO[0], "first": VIDEO[0]}, TASK, video=VIDEO[:2], previous_value=0.5)
    parsed = roboreward._parsed(["ANSWER: 4", "the robot waves"], [request, request])
    assert (parsed[0].value, parsed[0].parsed_ok) == (0.75, True)
    assert (parsed[1].value, parsed[1].parsed_ok) == (0.0, False)  # the reference's 0.0
    roboreward.config.on_unparseable = "hold"
    try:
        assert roboreward._parsed(["the robot waves"], [request])[0].value == 0.5  # the env's previous value
        roboreward.config.mode = "generate"
        roboreward.config.max_new_tokens = 4
        generated = roboreward.score(requests()[:1])[0]
    finally:
        roboreward.config.on_unparseable, roboreward.config.mode = "zero", "logits"
    assert generated.probs is None
    score = parse_score(generated.raw_text)
    assert generated.parsed_ok == (score is not None)
    assert generated.value == (score_value(score) if score is not None else 0.0)  # no previous value: 0


def test_backend_config_rejects_unknown_type() -> None:
    with pytest.raises(ValueError, match="unknown reward backend 'magic'"):
        RewardBackendConfig(type="magic")  # type: ignore[arg-type]
    assert torch.get_default_dtype() == torch.float32
    assert pathlib.Path("configs/lrm/backends/robometer.yaml").is_file()
