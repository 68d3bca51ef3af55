"""The Env interface (DESIGN.md, "Interfaces") that the simulator and the real robot both expose.

A rollout loop only ever talks to this seam, so it never asks where it runs.
Rendering is on demand (`capture`): on a CPU a camera frame costs ~20x a
physics step, so `step` returns state only and the caller renders when a
policy or a reward query needs pixels.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Protocol, runtime_checkable

import numpy as np


@dataclass
class Observation:
    """What the env shows after `reset` or `step`.

    `images` is empty unless captured (camera name -> H x W x 3 uint8);
    `state` is a fixed-size float32 vector whose layout the env documents;
    `step` counts the actions taken since the last reset (0 after reset).
    """

    state: np.ndarray
    task: str
    step: int
    images: dict[str, np.ndarray] = field(default_factory=dict)


@runtime_checkable
class Env(Protocol):
    """Structural type of an environment; `success`/`dense_reward` exist in simulation only."""

    task: str

    @property
    def camera_names(self) -> list[str]: ...

    def reset(self, seed: int | None = None) -> Observation: ...

    def step(self, action: np.ndarray) -> tuple[Observation, dict[str, Any]]: ...

    def capture(self) -> dict[str, np.ndarray]: ...

    def close(self) -> None: ...
