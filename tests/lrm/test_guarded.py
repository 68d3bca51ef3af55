"""GuardedRewardModel: a failing or garbage answer holds that env's previous value and is counted, the rest pass."""

from __future__ import annotations

import math

import numpy as np
import pytest

from lrm.guarded import GuardedRewardModel
from lrm.types import Reward, RewardRequest

FRAME = np.zeros((4, 4, 3), np.uint8)


def request(env: int, previous: float | None = None, modality: str = "progress") -> RewardRequest:
    return RewardRequest(modality, {"current": FRAME, "first": FRAME, "previous": FRAME}, "task", env_id=env,
                         previous_value=previous)


class BadForEnv:
    """Answers 0.5 for every env but `bad`, for which it misbehaves as `how` says."""

    def __init__(self, bad: int, how: str) -> None:
        self.bad, self.how, self.calls = bad, how, 0

    def score(self, requests):  # noqa: ANN001, ANN201
        self.calls += 1
        if any(r.env_id == self.bad for r in requests):
            if self.how == "raise":
                raise RuntimeError("backend down")
            if self.how == "short":
                return [Reward(0.5, "")] * (len(requests) - 1)
            if self.how == "not_a_reward":
                return [0.5] * len(requests)
        value = {"nan": math.nan, "range": 1.5}.get(self.how, 0.5)
        return [Reward(value if r.env_id == self.bad else 0.5, "") for r in requests]


@pytest.mark.parametrize("how", ["raise", "nan", "range", "short", "not_a_reward"])
def test_a_bad_answer_for_one_env_holds_its_previous_value_and_is_counted(how: str) -> None:
    guard = GuardedRewardModel(BadForEnv(bad=1, how=how))
    rewards = guard.score([request(0, 0.1), request(1, 0.3), request(2)])
    assert [r.value for r in rewards] == [0.5, 0.3, 0.5]
    assert [r.parsed_ok for r in rewards] == [True, False, True]
    assert dict(guard.failures) == {1: 1} and guard.failure_count == 1


def test_a_failure_at_the_first_query_holds_zero_and_a_good_batch_is_one_call() -> None:
    model = BadForEnv(bad=1, how="raise")
    guard = GuardedRewardModel(model)
    assert [r.value for r in guard.score([request(0), request(2)])] == [0.5, 0.5] and model.calls == 1
    assert guard.score([request(1)])[0].value == 0.0
    assert guard.failure_count == 1


def test_contrastive_may_be_negative_and_video_need_is_passed_on() -> None:
    class Negative:
        needs_video = True

        def score(self, requests):  # noqa: ANN001, ANN201
            return [Reward(-1.0, "") for _ in requests]

    guard = GuardedRewardModel(Negative())
    assert guard.needs_video
    assert guard.score([request(0, modality="contrastive")])[0].value == -1.0
    assert guard.failure_count == 0
