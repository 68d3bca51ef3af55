"""What the operator session tells a UI: small immutable records, safe to hand from the rollout thread to the UI.

No numpy arrays travel except one small thumbnail; camera frames are reduced
to statistics in the rollout thread so that the UI thread never does image work.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

__all__ = [
    "CameraStats",
    "Notice",
    "PhaseChanged",
    "RolloutEnded",
    "RolloutStarted",
    "RoundStats",
    "SessionEvent",
    "StepUpdate",
    "StoreInfo",
    "VerdictChanged",
]


@dataclass(frozen=True)
class CameraStats:
    mean: float
    min: int
    max: int

    @classmethod
    def of(cls, image: np.ndarray) -> CameraStats:
        return cls(mean=float(image.mean()), min=int(image.min()), max=int(image.max()))


@dataclass(frozen=True)
class PhaseChanged:
    phase: str  # starting | reset | rollout | judging | review | finetune | evaluate | done | stopped | error
    detail: str = ""
    paused: bool = False


@dataclass(frozen=True)
class RolloutStarted:
    round: int
    slot: int
    slots: int
    seed: int | None
    task: str
    max_steps: int
    time_limit_s: float | None


@dataclass(frozen=True)
class StepUpdate:
    episode: int
    step: int
    time_s: float  # episode time of the frame (the store's timestamp)
    wall_s: float  # seconds since the rollout started, pauses included
    cameras: dict[str, CameraStats]
    rewards: dict[str, float]  # held value of every reward trace at this step
    thumbnail: np.ndarray | None = None  # small (h, w, 3) uint8 of the first camera, when this step rendered


@dataclass(frozen=True)
class RolloutEnded:
    episode: int | None  # None: discarded (re-record)
    status: str
    steps: int
    reason: str = ""
    lrm_verdict: bool | None = None
    lrm_score: float | None = None  # P(completed) of the judged frame(s)
    oracle_success: bool | None = None


@dataclass(frozen=True)
class VerdictChanged:
    episode: int
    operator_verdict: bool | None
    lrm_verdict: bool | None
    lrm_score: float | None


@dataclass(frozen=True)
class RoundStats:
    round: int
    rollouts: int = 0  # committed, not aborted
    aborted: int = 0
    lrm_accepted: int = 0
    operator_marked: int = 0
    accepted: int = 0  # the verdict that counts (operator's, else LRM's)
    oracle_successes: int | None = None  # sim only
    train_loss: float | None = None
    selected: int | None = None  # episodes the fine-tune trained on
    eval_success: float | None = None
    source: str = "operator"  # "improve": a round of the improve run this session continues
    live: bool = False  # the round is still running: counts so far

    @property
    def success_rate(self) -> float | None:
        return self.accepted / self.rollouts if self.rollouts else None


@dataclass(frozen=True)
class StoreInfo:
    path: str
    episodes: int
    frames: int


@dataclass(frozen=True)
class Notice:
    text: str
    severity: str = "information"  # information | warning | error


SessionEvent = (PhaseChanged | RolloutStarted | StepUpdate | RolloutEnded | VerdictChanged | RoundStats | StoreInfo
                | Notice)
