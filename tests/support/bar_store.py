"""A synthetic episode store where progress is visible: a bar that grows with time.

For tests and smoke runs of the dataset builder and the compact reward model.
Each episode shows a horizontal bar on a noisy background; in a successful
episode it grows from empty to full over the episode (progress = t / (T - 1)),
in a failed one it stalls at a random fraction below `fail_max`. Each task
draws its bar in its own colour and row.
"""

from __future__ import annotations

import os
from collections.abc import Sequence

import numpy as np

from recordings.episode import Episode, EpisodeMeta
from recordings.store import EpisodeStore

__all__ = ["bar_frame", "make_bar_store"]

_COLOURS = [(230, 60, 40), (40, 200, 60), (50, 90, 240), (230, 200, 30)]


def bar_frame(fraction: float, task_id: int, size: int, rng: np.random.Generator) -> np.ndarray:
    """One (size, size, 3) uint8 frame with a bar filled to `fraction` of the width."""
    img = rng.integers(0, 40, size=(size, size, 3), dtype=np.uint8)
    rows = size // 4
    top = (task_id % 3) * rows + rows // 2
    width = int(round(float(np.clip(fraction, 0.0, 1.0)) * size))
    img[top : top + rows, :width] = _COLOURS[task_id % len(_COLOURS)]
    return img


def make_bar_store(
    path: str | os.PathLike[str],
    *,
    tasks: Sequence[str] = ("fill the bar",),
    successes: int = 6,
    failures: int = 3,
    length: tuple[int, int] = (20, 40),
    size: int = 32,
    fail_max: float = 0.6,
    seed: int = 0,
) -> EpisodeStore:
    """Create a store at `path` with `successes` + `failures` episodes per task; returns it open for reading."""
    rng = np.random.default_rng(seed)
    with EpisodeStore.create(path, fps=10.0, durable=False) as store:
        for task_id, task in enumerate(tasks):
            outcomes = [True] * successes + [False] * failures
            for success in outcomes:
                t_len = int(rng.integers(length[0], length[1] + 1))
                u = np.linspace(0.0, 1.0, t_len)
                fractions = u if success else u * rng.uniform(0.1, fail_max)
                images = np.stack([bar_frame(f, task_id, size, rng) for f in fractions])
                meta = EpisodeMeta(task=task, source="sim", oracle_success=success, seed=int(rng.integers(1 << 30)))
                store.append(
                    Episode(
                        meta=meta,
                        images={"cam": images},
                        state=fractions[:, None].astype(np.float32),
                        action=np.zeros((t_len, 1), np.float32),
                        timestamp=np.arange(t_len, dtype=np.float64) / 10.0,
                    )
                )
    return EpisodeStore.open(path, "r")
