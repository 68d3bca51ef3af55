"""A reward model that survives its backend: a failed query holds the env's previous value and is counted.

A reward backend is an outside model (a VLM, a network service, a file on a
shared disk): one that raises or returns garbage (NaN, out of range, the
wrong count, not a Reward) must not end hours of RL. `GuardedRewardModel`
scores the batch; if the batch fails it scores each request alone, and a
request that still fails gets its env's previous value back
(`RewardRequest.previous_value`, 0 at the first query), so the interval-hold
wrapper holds that env's reward; every such failure is counted per env.
"""

from __future__ import annotations

import logging
import math
from collections import Counter
from collections.abc import Sequence
from typing import Any

from lrm.types import Reward, RewardModel, RewardRequest

log = logging.getLogger(__name__)

__all__ = ["GuardedRewardModel"]

_RANGES = {"progress": (0.0, 1.0), "completion": (0.0, 1.0), "contrastive": (-1.0, 1.0)}


class GuardedRewardModel:
    """Wraps a RewardModel so that one bad answer costs one env one held reward, not the run (module doc)."""

    def __init__(self, model: RewardModel, tolerance: float = 1e-6) -> None:
        self.model = model
        self.needs_video = bool(getattr(model, "needs_video", False))
        self.tolerance = tolerance
        self.failures: Counter[int] = Counter()  # env id -> failed requests
        self.last_error = ""

    def score(self, requests: Sequence[RewardRequest]) -> list[Reward]:
        try:
            rewards = self.model.score(requests)
            if isinstance(rewards, list) and len(rewards) == len(requests) and all(
                self._usable(r, q) for r, q in zip(rewards, requests, strict=True)
            ):
                return rewards
        except Exception as exc:  # noqa: BLE001 - any backend failure is survivable, see module doc
            self.last_error = f"{type(exc).__name__}: {exc}"
        if len(requests) == 1:
            return [self._held(requests[0])]
        return [self.score([request])[0] for request in requests]  # find which request(s) are bad

    def _usable(self, reward: Any, request: RewardRequest) -> bool:
        if not isinstance(reward, Reward):
            self.last_error = f"backend returned {type(reward).__name__}, not a Reward"
            return False
        try:
            value = float(reward.value)
        except (TypeError, ValueError):
            self.last_error = f"reward value {reward.value!r} is not a number"
            return False
        low, high = _RANGES.get(request.modality, (-math.inf, math.inf))
        if not math.isfinite(value) or not low - self.tolerance <= value <= high + self.tolerance:
            self.last_error = f"{request.modality} reward {value!r} outside [{low}, {high}]"
            return False
        return True

    def _held(self, request: RewardRequest) -> Reward:
        env = int(request.env_id) if request.env_id is not None else -1
        self.failures[env] += 1
        log.warning("reward backend failed for env %s (%s); holding its previous value", env, self.last_error)
        held = 0.0 if request.previous_value is None else float(request.previous_value)
        return Reward(held, raw_text=f"held after failure: {self.last_error}", parsed_ok=False, failed=True)

    @property
    def failure_count(self) -> int:
        return sum(self.failures.values())
