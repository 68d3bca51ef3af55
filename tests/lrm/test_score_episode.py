"""Offline episode scoring asks exactly what interval-hold asks, batched; the oracle; video requests."""

from __future__ import annotations

import numpy as np
import pytest

from lrm.backends.oracle import OracleRewardModel, oracle_values
from lrm.backends.prompts import load_prompt, sample_video
from lrm.evaluation.score_episode import EpisodeScores, query_steps, resolve_modalities, score_query_frames
from lrm.interval_hold import IntervalHoldConfig, IntervalHoldReward
from lrm.types import RequestError, Reward, RewardRequest, validate_request
from tests.lrm.test_interval_hold import Recorder, frame


class FlakyProgress(Recorder):
    """Progress answers are unparseable at every third call row: the fallback must hold the last value."""

    def score(self, requests):  # noqa: ANN001, ANN201
        out = super().score(requests)
        for r, reward in zip(requests, out, strict=True):
            if r.modality == "progress" and int(r.frames["current"][0, 0, 0]) % 30 == 20:
                reward.value, reward.parsed_ok = (r.previous_value or 0.0), False
        return out


def test_offline_scores_equal_interval_hold() -> None:
    length, every = 47, 10
    modalities = ("contrastive", "progress", "completion")
    config = IntervalHoldConfig(every=every, weights=dict.fromkeys(modalities, 1.0))
    hold = IntervalHoldReward(FlakyProgress(), config, 1)
    hold.reset(0, "pick")
    online = {m: [] for m in modalities}
    for t in range(length):
        due = hold.due()
        hold.step({i: frame(t) for i in due})
        if due:
            for m in modalities:
                online[m].append(hold.values(0)[m])
    steps = query_steps(length, every)
    model = FlakyProgress()
    frames = [frame(int(t)) for t in steps]
    scores = score_query_frames(model, frames, "pick", modalities, steps=steps, batch_requests=4)
    for m in modalities:
        assert scores.values(m).tolist() == pytest.approx(online[m])
    assert scores.failures("progress") == 1  # the query at frame 20 held 0.1 from frame 10
    assert max(len(c) for c in model.calls) <= 4
    held = scores.held("progress", length)
    assert held[:10].tolist() == [0.0] * 10 and held[40:].tolist() == [pytest.approx(0.4)] * 7


def test_traces_and_modalities() -> None:
    scores = EpisodeScores(steps=np.array([0, 3]), rewards={"progress": [Reward(0.1, ""), Reward(0.5, "")]})
    trace = scores.trace("progress", 5)
    assert np.isnan(trace[[1, 2, 4]]).all() and trace[[0, 3]].tolist() == pytest.approx([0.1, 0.5])
    assert scores.held("progress", 5).tolist() == pytest.approx([0.1, 0.1, 0.1, 0.5, 0.5])
    assert resolve_modalities("all") == ("contrastive", "progress", "completion")
    assert resolve_modalities("cont") == ("contrastive",) and resolve_modalities("progress") == ("progress",)
    with pytest.raises(ValueError, match="unknown modality 'x'"):
        resolve_modalities("x")
    with pytest.raises(ValueError, match="every must be >= 1"):
        query_steps(5, 0)


class Env:
    def __init__(self, dense: float, success: bool) -> None:
        self.dense_reward, self.success = dense, success


def test_oracle_maps_sim_values() -> None:
    model = OracleRewardModel()
    first = oracle_values(Env(0.3, False))
    second = oracle_values(Env(0.6, True), previous=first)
    f = {"current": frame(0)}
    rewards = model.score(
        [
            RewardRequest("progress", {**f, "first": frame(0)}, "t", oracle=second),
            RewardRequest("completion", f, "t", oracle=second),
            RewardRequest("contrastive", {**f, "previous": frame(0)}, "t", oracle=second),
            RewardRequest("contrastive", {**f, "previous": frame(0)}, "t", oracle={**first, "previous_dense_reward": 0.3}),
            RewardRequest("progress", {**f, "first": frame(0)}, "t", oracle={"dense_reward": 1.7, "success": 1}),
        ]
    )
    assert [r.value for r in rewards] == [0.6, 1.0, 1.0, 0.0, 1.0]
    with pytest.raises(RequestError, match="request 1: the oracle backend needs the simulator's values"):
        model.score([RewardRequest("completion", f, "t", oracle=first), RewardRequest("completion", f, "t")])
    with pytest.raises(RequestError, match="unknown oracle key 'reward'"):
        model.score([RewardRequest("completion", f, "t", oracle={"reward": 1.0})])
    with pytest.raises(RequestError, match=r"needs oracle\['success'\]"):
        model.score([RewardRequest("completion", f, "t", oracle={"dense_reward": 1.0})])


def test_interval_hold_passes_oracle_values_and_videos() -> None:
    class VideoRecorder(Recorder):
        needs_video = True

    model = VideoRecorder()
    hold = IntervalHoldReward(model, IntervalHoldConfig(every=2, weights={"progress": 1.0}), 1)
    hold.reset(0, "t")
    for t in range(5):
        hold.step({0: frame(t)} if t % 2 == 0 else {}, oracle={0: {"dense_reward": t / 10, "success": 0}})
    videos = [c[0].video for c in model.calls]
    assert [v[:, 0, 0, 0].tolist() for v in videos] == [[0], [0, 2], [0, 2, 4]]  # the query frames so far
    assert model.calls[-1][0].oracle == {"dense_reward": 0.4, "success": 0, "previous_dense_reward": 0.2}

    oracle = IntervalHoldReward(OracleRewardModel(), IntervalHoldConfig(every=2, weights={"contrastive": 1.0}), 1)
    oracle.reset(0, "t")
    dense = [0.1, 0.1, 0.3, 0.3, 0.2]
    rewards = [oracle.step({0: frame(t)}, oracle={0: {"dense_reward": dense[t]}}) for t in range(5)]
    assert [float(r[0]) for r in rewards] == [0.0, 0.0, 1.0, 1.0, -1.0]


def test_video_requests_and_video_prompts(tmp_path) -> None:
    video = np.zeros((5, 8, 8, 3), np.uint8)
    validate_request(RewardRequest("completion", {"current": video[0]}, "t", video=video), 0)
    with pytest.raises(RequestError, match=r"request 2: video must be uint8 \(T, H, W, 3\)"):
        validate_request(RewardRequest("completion", {"current": video[0]}, "t", video=video[0]), 2)
    assert [int(i[0, 0, 0]) for i in sample_video(np.arange(10)[:, None, None, None], 4)] == [0, 3, 6, 9]
    assert len(sample_video(video, 8)) == 5
    video_prompt = tmp_path / "video_prompt.yaml"  # a qwen3vl template that shows the episode video as images
    video_prompt.write_text(
        "modality: progress\nanswer_key: score\nvideo_frames: 8\n"
        "options: [{text: '1', value: 0.0}, {text: '2', value: 1.0}]\n"
        "user: [{text: 'Task: {task}. Frames: '}, {video: true}, {text: Rate it.}]\n"
    )
    template = load_prompt(video_prompt)
    assert template.uses_video and template.modality == "progress"
    content = template.messages("t", frozenset({"current", "first"}), video_len=3)[-1]["content"]
    assert sum(c["type"] == "image" for c in content) == 3
    frames = {"current": video[0], "first": video[0]}
    assert len(template.prompt_images(frames, [video[1], video[2], video[3]])) == 3
    bad = tmp_path / "bad.yaml"
    bad.write_text(
        "modality: completion\nanswer_key: k\noptions: [{text: '1', value: 1}, {text: '0', value: 0}]\n"
        "user: [{text: a, video: true}]\n"
    )
    from lrm.backends.prompts import PromptError

    with pytest.raises(PromptError, match="give exactly one of 'text', 'image' or 'video: true'"):
        load_prompt(bad)
