"""Deterministic episodes for the episode-store tests.

Episode `i` depends only on `i` (seeded per index), so a test can regenerate
the exact bytes a killed writer subprocess was appending.
"""

from __future__ import annotations

import numpy as np

from recordings.episode import SOURCES, Episode, EpisodeMeta

CAMERAS = ("left", "right")
H, W = 24, 32
STATE_DIM, ACTION_DIM = 5, 3


def make_episode(i: int, *, min_len: int = 3, max_len: int = 29) -> Episode:
    rng = np.random.default_rng(10_000 + i)
    n = int(rng.integers(min_len, max_len + 1))
    timestamp = np.cumsum(rng.uniform(0.02, 0.05, n))
    rewards: dict[str, np.ndarray] = {}
    if i % 2 == 0:
        prog = np.full(n, np.nan, np.float32)
        prog[::3] = rng.random(len(prog[::3]), dtype=np.float32)
        rewards["progress"] = prog
    if i >= 5 and i % 3 == 0:  # a modality that first appears in a later episode
        comp = np.full(n, np.nan, np.float32)
        comp[-1] = float(i % 2)
        rewards["completion"] = comp
    source = SOURCES[i % 3]
    meta = EpisodeMeta(
        task=f"task-{i % 3}",
        source=source,
        env_id="PickCube-v1" if source == "sim" else "",
        policy_id=f"pi05-r{i // 4}",
        round=i // 4,
        seed=i,
        lrm_verdict=(None, True, False)[i % 3],
        lrm_score=None if i % 3 == 0 else round(float(rng.random()), 6),
        operator_verdict=(None, None, True, False, None)[i % 5],
        oracle_success=(i % 2 == 0) if source == "sim" else None,
        aborted=(i % 7 == 6),
        start_time=f"2025-01-01T00:00:{i % 60:02d}.000+00:00",
        config_hash=f"cfg{i % 4}",
        extra={"i": i, "note": "crash test"},
    )
    return Episode(
        meta=meta,
        images={c: rng.integers(0, 256, (n, H, W, 3), dtype=np.uint8) for c in CAMERAS},
        state=rng.standard_normal((n, STATE_DIM)).astype(np.float32),
        action=rng.standard_normal((n, ACTION_DIM)).astype(np.float32),
        timestamp=timestamp,
        rewards=rewards,
    )


def expected_meta_json(episode: Episode) -> dict:
    """What the store keeps: duration_s is filled from the timestamps when None."""
    data = episode.meta.to_json()
    if data["duration_s"] is None:
        data["duration_s"] = float(episode.timestamp[-1] - episode.timestamp[0])
    return data


def assert_same_episode(got: Episode, want: Episode) -> None:
    """Byte-exact comparison of everything an episode holds."""
    assert got.meta.to_json() == expected_meta_json(want)
    assert list(got.images) == list(want.images)
    for name, imgs in want.images.items():
        assert got.images[name].dtype == np.uint8
        assert got.images[name].tobytes() == imgs.tobytes(), f"camera {name}"
    assert got.state.dtype == np.float32 and got.state.tobytes() == want.state.astype(np.float32).tobytes()
    assert got.action.dtype == np.float32 and got.action.tobytes() == want.action.astype(np.float32).tobytes()
    assert got.timestamp.dtype == np.float64 and got.timestamp.tobytes() == want.timestamp.tobytes()
    assert sorted(got.rewards) == sorted(want.rewards)
    for m, r in want.rewards.items():
        assert got.rewards[m].dtype == np.float32
        assert got.rewards[m].tobytes() == r.astype(np.float32).tobytes(), f"reward {m}"
