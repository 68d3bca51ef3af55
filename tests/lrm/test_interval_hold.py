"""Interval-hold queries every K steps, holds values, batches all due envs, and mixes modalities."""

from __future__ import annotations

import numpy as np
import pytest

from lrm.interval_hold import IntervalHoldConfig, IntervalHoldReward
from lrm.types import Reward, RewardRequest


def frame(step: int) -> np.ndarray:
    """A frame whose pixel value encodes the env step it was taken at."""
    return np.full((8, 8, 3), step, dtype=np.uint8)


class Recorder:
    """A fake reward model: progress = current/100, completion = current >= 20, contrastive = sign of change."""

    def __init__(self) -> None:
        self.calls: list[list[RewardRequest]] = []

    def score(self, requests):  # noqa: ANN001, ANN201
        self.calls.append(list(requests))
        out = []
        for r in requests:
            now = int(r.frames["current"][0, 0, 0])
            if r.modality == "progress":
                out.append(Reward(now / 100, ""))
            elif r.modality == "completion":
                out.append(Reward(float(now >= 20), ""))
            else:
                out.append(Reward(float(np.sign(now - int(r.frames["previous"][0, 0, 0]))), ""))
        return out


def run(hold: IntervalHoldReward, steps: int) -> np.ndarray:
    rewards, t = [], 0
    for t in range(steps):
        due = hold.due()
        rewards.append(hold.step({i: frame(t) for i in due}))
    return np.array(rewards)


def test_queries_every_k_steps_and_holds() -> None:
    model = Recorder()
    hold = IntervalHoldReward(model, IntervalHoldConfig(every=3, weights={"progress": 2.0}), num_envs=2)
    hold.reset(0, "pick")
    hold.reset(1, "pick")
    rewards = run(hold, 7)
    assert len(model.calls) == 3  # steps 0, 3, 6, each one batched call for both envs
    assert all(len(c) == 2 for c in model.calls)
    assert rewards[:, 0] == pytest.approx([0, 0, 0, 0.06, 0.06, 0.06, 0.12])
    assert hold.queries == 6
    # the anchor is the first frame after reset; progress fallback sees the held value
    last = model.calls[-1][0]
    assert int(last.frames["first"][0, 0, 0]) == 0 and last.previous_value == pytest.approx(0.03)


def test_contrastive_uses_the_previous_query_frame() -> None:
    model = Recorder()
    hold = IntervalHoldReward(model, IntervalHoldConfig(every=2, weights={"contrastive": 1.0}), num_envs=1)
    hold.reset(0, "pick")
    rewards = run(hold, 5)
    assert rewards[:, 0] == pytest.approx([0, 0, 1, 1, 1])  # no comparison at the first query
    assert [int(c[0].frames["previous"][0, 0, 0]) for c in model.calls] == [0, 2]


def test_tri_faceted_mix_with_mapped_contrastive() -> None:
    weights = {"contrastive": 0.5, "progress": 1.0, "completion": 2.0}
    hold = IntervalHoldReward(Recorder(), IntervalHoldConfig(every=10, weights=weights, contrastive_signed=False), 1)
    hold.reset(0, "pick")
    rewards = run(hold, 21)
    # step 0: contrastive 0 -> 0.5 mapped; progress 0; completion 0
    assert rewards[0, 0] == pytest.approx(0.25)
    # step 20: contrastive +1 -> 1; progress 0.2; completion 1
    assert rewards[20, 0] == pytest.approx(0.5 + 0.2 + 2.0)
    assert hold.values(0) == pytest.approx({"contrastive": 1.0, "progress": 0.2, "completion": 1.0})


def test_envs_reset_independently() -> None:
    model = Recorder()
    hold = IntervalHoldReward(model, IntervalHoldConfig(every=4), num_envs=2)
    hold.reset(0, "a")
    hold.reset(1, "b")
    hold.step({0: frame(0), 1: frame(0)})
    hold.step({})
    hold.reset(1, "b")
    assert hold.due() == [1]
    hold.step({1: frame(9)})
    assert [r.env_id for r in model.calls[-1]] == [1]
    assert int(model.calls[-1][0].frames["first"][0, 0, 0]) == 9


def test_errors() -> None:
    hold = IntervalHoldReward(Recorder(), IntervalHoldConfig(every=2), num_envs=2)
    hold.reset(0, "a")
    with pytest.raises(ValueError, match=r"no frame for env\(s\) \[1\]"):
        hold.step({0: frame(0)})
    with pytest.raises(ValueError, match="env 1 has no task"):
        hold.step({0: frame(0), 1: frame(0)})
    with pytest.raises(ValueError, match="every must be >= 1"):
        IntervalHoldConfig(every=0)
    with pytest.raises(ValueError, match="unknown modality 'vibes'"):
        IntervalHoldConfig(weights={"vibes": 1.0})
