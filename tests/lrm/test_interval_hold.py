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


# ---------------------------------------------------------------- the paper's protocol


def run_paper(hold: IntervalHoldReward, steps: int, reset_frame: int = 99) -> np.ndarray:
    """Frames as a rollout sees them: the reset observation, then the frame after each action (t + 1)."""
    for env in range(hold.num_envs):
        hold.reset(env, "pick", frame(reset_frame))
    return np.array([hold.step({i: frame(t + 1) for i in hold.due()}) for t in range(steps)])


def test_paper_queries_from_step_k_with_the_reset_observation_as_anchor() -> None:
    model = Recorder()
    hold = IntervalHoldReward(model, IntervalHoldConfig(every=3, protocol="paper"), num_envs=2)
    assert hold.needs_reset_frame
    rewards = run_paper(hold, 7)
    # queries after 3 and 6 actions; nothing before the first one
    assert [int(c[0].frames["current"][0, 0, 0]) for c in model.calls] == [3, 6]
    assert rewards[:, 0] == pytest.approx([0, 0, 0.03, 0.03, 0.03, 0.06, 0.06])
    assert all(int(r.frames["first"][0, 0, 0]) == 99 for c in model.calls for r in c)


def test_paper_tri_mix_maps_contrastive_and_adds_nothing_without_a_comparison() -> None:
    thirds = {"contrastive": 1 / 3, "progress": 1 / 3, "completion": 1 / 3}
    model = Recorder()
    hold = IntervalHoldReward(model, IntervalHoldConfig(every=10, weights=thirds, protocol="paper"), 1)
    rewards = run_paper(hold, 20)
    # step 10: no earlier query frame, so contrastive adds 0 (not the mapped 0.5); progress 0.1; not done
    assert [r.modality for r in model.calls[0]] == ["progress", "completion"]
    assert rewards[9, 0] == pytest.approx(0.1 / 3)
    assert hold.values(0) == pytest.approx({"progress": 0.2, "completion": 1.0, "contrastive": 1.0})
    # step 20: frame 20 vs frame 10 is progress: (+1 + 1) / 2 = 1, progress 0.2, done
    assert rewards[19, 0] == pytest.approx((1.0 + 0.2 + 1.0) / 3)
    assert [int(r.frames["previous"][0, 0, 0]) for r in model.calls[1] if r.modality == "contrastive"] == [10]
    # the same mix under the legacy protocol counts the missing comparison as a neutral 0.5
    legacy = IntervalHoldReward(Recorder(), IntervalHoldConfig(every=10, weights=thirds, contrastive_signed=False), 1)
    legacy.reset(0, "pick")
    assert legacy.step({0: frame(10)})[0] == pytest.approx((0.5 + 0.1 + 0.0) / 3)


class FailsAtSecondQuery(Recorder):
    """Like Recorder, but the second query's requests come back failed (as lrm.guarded reports them)."""

    def score(self, requests):  # noqa: ANN001, ANN201
        rewards = super().score(requests)
        if len(self.calls) == 2:
            return [Reward(0.7, "held after failure", parsed_ok=False, failed=True) for _ in rewards]
        return rewards


@pytest.mark.parametrize(("protocol", "expected"), [("paper", 0.0), ("legacy", (0.85 + 0.7 + 0.7) / 3)])
def test_a_failed_request_adds_zero_in_the_paper_protocol(protocol: str, expected: float) -> None:
    thirds = {"contrastive": 1 / 3, "progress": 1 / 3, "completion": 1 / 3}
    config = IntervalHoldConfig(every=2, weights=thirds, protocol=protocol, contrastive_signed=False)
    hold = IntervalHoldReward(FailsAtSecondQuery(), config, 1)
    rewards = run_paper(hold, 4) if protocol == "paper" else run(hold_reset(hold), 3)
    assert rewards[-1, 0] == pytest.approx(expected)


def hold_reset(hold: IntervalHoldReward) -> IntervalHoldReward:
    hold.reset(0, "pick")
    return hold


def test_contrastive_alone_stays_signed_in_the_paper_protocol() -> None:
    hold = IntervalHoldReward(Recorder(), IntervalHoldConfig(every=2, weights={"contrastive": 1.0}, protocol="paper"), 1)
    assert not hold.needs_reset_frame
    hold.reset(0, "pick")  # contrastive needs no reset observation
    rewards = np.array([hold.step({i: frame(10 - t) for i in hold.due()}) for t in range(4)])
    assert rewards[:, 0] == pytest.approx([0, 0, 0, -1])  # frame 7 after frame 9: further from done


def test_paper_protocol_errors_and_resolution() -> None:
    hold = IntervalHoldReward(Recorder(), IntervalHoldConfig(every=1, protocol="paper"), 1)
    hold.reset(0, "pick")
    with pytest.raises(ValueError, match=r"env 0 has no reset observation.*pass it to reset\(env, task, first_frame\)"):
        hold.step({0: frame(1)})
    assert IntervalHoldConfig().resolved("paper").protocol == "paper"
    assert IntervalHoldConfig(protocol="legacy").resolved("paper").protocol == "legacy"
    assert IntervalHoldConfig().protocol is None and not IntervalHoldConfig().paper
