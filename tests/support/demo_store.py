"""A few synthetic demonstrations in a fresh episode store: the smallest store a command accepts."""

from __future__ import annotations

import pathlib

import numpy as np

from recordings.store import EpisodeStore
from tests.policies.conftest import synthetic_episode

__all__ = ["demo_store"]


def demo_store(path: pathlib.Path, episodes: int = 2, length: int = 6) -> pathlib.Path:
    """`episodes` successful demos of `length` frames (a 16x16 camera, 5-d state, 3-d action) at `path`."""
    rng = np.random.default_rng(0)
    with EpisodeStore.open(path, mode="a", durable=False) as store:
        for _ in range(episodes):
            store.append(synthetic_episode(rng, length, source="demo", oracle_success=True))
    return path
