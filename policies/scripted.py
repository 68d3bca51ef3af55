"""Policies without learning: the floor a trained policy must beat, and an arm that stays where it is."""

from __future__ import annotations

from typing import Any

import numpy as np

from policies.errors import PolicyError

__all__ = ["HoldPolicy", "RandomPolicy"]


class RandomPolicy:
    """Uniform random actions in the env's action box: the floor any trained policy must beat.

    The box comes from the env (the caller sets `set_action_bounds`) unless given here.
    """

    needs_images = False
    camera_names: list[str] = []

    def __init__(self, low: np.ndarray | None = None, high: np.ndarray | None = None, seed: int = 0) -> None:
        self.low = self.high = None
        self.set_action_bounds(low, high)
        self._rng = np.random.default_rng(seed)

    def set_action_bounds(self, low: np.ndarray | None, high: np.ndarray | None) -> None:
        self.low = None if low is None else np.asarray(low, dtype=np.float32)
        self.high = None if high is None else np.asarray(high, dtype=np.float32)

    def reset(self) -> None:
        """Nothing to forget."""

    def act(self, observation: Any) -> np.ndarray:
        if self.low is None or self.high is None:
            raise PolicyError("RandomPolicy needs the action bounds (set_action_bounds)")
        return self._rng.uniform(self.low, self.high).astype(np.float32)


class HoldPolicy:
    """Commands the measured joint positions (the operator's `policy.dry_run: hold`): the arm stays put."""

    needs_images = False
    camera_names: list[str] = []

    def reset(self) -> None:
        """Nothing to forget."""

    def act(self, observation: Any) -> np.ndarray:
        return np.asarray(observation.state, dtype=np.float32).copy()
