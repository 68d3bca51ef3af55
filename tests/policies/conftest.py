"""Shared fixtures: a synthetic store (fast, no simulator) and a session-wide store of PickCube demos."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from recordings.episode import Episode, EpisodeMeta
from recordings.store import EpisodeStore

HERE = Path(__file__).resolve().parent
DEMO_SEEDS_START = 0  # demos use seeds 0..; evaluations start at 10_000 so they never overlap
NUM_DEMOS = 50


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if HERE in Path(str(item.fspath)).resolve().parents:
            item.add_marker(pytest.mark.filterwarnings("ignore::DeprecationWarning:mani_skill"))


def synthetic_episode(rng: np.random.Generator, length: int, **meta) -> Episode:
    """An episode whose action is a fixed linear function of the state (learnable), with a 16x16 camera."""
    state = rng.standard_normal((length, 5)).astype(np.float32)
    weights = np.arange(15, dtype=np.float32).reshape(5, 3) / 10
    return Episode(
        meta=EpisodeMeta(task="pick up the cube", source=meta.pop("source", "sim"), **meta),
        images={"base_camera": rng.integers(0, 256, (length, 16, 16, 3), dtype=np.uint8)},
        state=state,
        action=(state @ weights).astype(np.float32),
        timestamp=np.arange(length, dtype=np.float64) / 20,
    )


@pytest.fixture
def synthetic_store(tmp_path) -> Path:
    """6 episodes: 3 demos, 2 accepted rollouts (LRM / operator), 1 rejected rollout."""
    rng = np.random.default_rng(0)
    path = tmp_path / "store"
    with EpisodeStore.open(path, mode="a", durable=False) as store:
        for meta in (
            dict(source="demo", oracle_success=True),
            dict(source="demo", oracle_success=True),
            dict(source="demo", oracle_success=True),
            dict(lrm_verdict=True, round=1),
            dict(lrm_verdict=False, operator_verdict=True, round=1),
            dict(lrm_verdict=False, round=1),
        ):
            store.append(synthetic_episode(rng, 20, **meta))
    return path


@pytest.fixture(scope="session")
def pickcube_demos(tmp_path_factory) -> Path:
    """NUM_DEMOS motion-planning demos of PickCube, privileged state, no cameras (~25 s once per session)."""
    from sim.demos import record_demos
    from sim.maniskill_env import SimEnvConfig

    path = tmp_path_factory.mktemp("demos") / "store"
    config = SimEnvConfig(env_id="PickCube-v1", state_mode="full", cameras=[])
    report = record_demos(
        "PickCube-v1", NUM_DEMOS, path, seed=DEMO_SEEDS_START, env_config=config, progress=False
    )
    assert report.complete
    return path
