"""The `oracle` baseline: the simulator's own dense reward and success flag (sim only).

It is the privileged upper bound the paper compares the LRM against (66.87 vs
~60 success). It does not look at pixels: each request carries the simulator's
values at the query step in `RewardRequest.oracle`, so the oracle goes through
the same interval-hold, batching and logging as every other backend, and a
rollout loop fills those values from the Env (`oracle_values(env)`), the only
place that knows them. A real robot has no oracle; a request without values is
a one-line RequestError, never a silent zero.

Per modality:
- progress: the normalised dense reward, clipped to [0, 1];
- completion: the success flag, 1 or 0;
- contrastive: the sign of the change of the dense reward since the previous
  query (`previous_dense_reward`), 0 within `tolerance` or at the first query.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping, Sequence
from typing import Any

from lrm.types import MODALITIES, RequestError, Reward, RewardRequest

ORACLE_KEYS = ("dense_reward", "success", "previous_dense_reward")


@dataclasses.dataclass
class OracleBackendConfig:
    """`tolerance`: dense-reward changes at most this large count as "no change" for contrastive."""

    tolerance: float = 1e-3


def oracle_values(env: Any, previous: Mapping[str, float] | None = None) -> dict[str, float]:
    """The oracle fields of a request from a sim Env (`dense_reward`, `success`) at its current state.

    `previous` is what this returned at the env's previous query, for contrastive.
    """
    values = {"dense_reward": float(env.dense_reward), "success": float(bool(env.success))}
    if previous is not None and "dense_reward" in previous:
        values["previous_dense_reward"] = float(previous["dense_reward"])
    return values


class OracleRewardModel:
    """Maps the simulator's values in each request to the modality's reward (module doc)."""

    needs_video = False

    def __init__(self, config: OracleBackendConfig | None = None) -> None:
        self.config = config or OracleBackendConfig()

    def score(self, requests: Sequence[RewardRequest]) -> list[Reward]:
        checked = [self._values(r, i) for i, r in enumerate(requests)]  # all checked before any result
        return [self._reward(r.modality, v) for r, v in zip(requests, checked, strict=True)]

    def _values(self, request: RewardRequest, index: int) -> dict[str, float]:
        if request.modality not in MODALITIES:
            raise RequestError(f"request {index}: unknown modality {request.modality!r}, expected one of {MODALITIES}")
        if request.oracle is None:
            raise RequestError(
                f"request {index}: the oracle backend needs the simulator's values in request.oracle "
                "(dense_reward, success); it exists in simulation only"
            )
        need = {"progress": "dense_reward", "contrastive": "dense_reward", "completion": "success"}[request.modality]
        values: dict[str, float] = {}
        for key, value in request.oracle.items():
            if key not in ORACLE_KEYS:
                raise RequestError(f"request {index}: unknown oracle key {key!r}, expected {ORACLE_KEYS}")
            try:
                number = float(value)
            except (TypeError, ValueError):
                raise RequestError(f"request {index}: oracle {key!r} must be a number, got {value!r}") from None
            if not math.isfinite(number):
                raise RequestError(f"request {index}: oracle {key!r} must be finite, got {number}")
            values[key] = number
        if need not in values:
            raise RequestError(f"request {index}: modality {request.modality!r} needs oracle[{need!r}]")
        return values

    def _reward(self, modality: str, values: dict[str, float]) -> Reward:
        if modality == "progress":
            value = min(1.0, max(0.0, values["dense_reward"]))
        elif modality == "completion":
            value = 1.0 if values["success"] >= 0.5 else 0.0
        else:
            previous = values.get("previous_dense_reward")
            change = 0.0 if previous is None else values["dense_reward"] - previous
            value = 0.0 if abs(change) <= self.config.tolerance else math.copysign(1.0, change)
        return Reward(value=value, raw_text=f"oracle {values}", probs=None, parsed_ok=True)


def make_reward_model(config: OracleBackendConfig) -> OracleRewardModel:
    return OracleRewardModel(config)


__all__ = ["OracleBackendConfig", "OracleRewardModel", "make_reward_model", "oracle_values"]
