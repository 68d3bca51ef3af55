"""Which episodes to use: filters OR-ed by the store, the improve round's selection, the two splits."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest

from recordings.episode import EpisodeMeta
from recordings.selection import (
    UNSET,
    EpisodeFilter,
    SelectionConfig,
    hashed_split,
    selection_for_round,
    shuffled_split,
)
from recordings.store import EpisodeStore
from tests.recordings.store_testdata import make_episode


@pytest.fixture
def store(tmp_path: Path) -> EpisodeStore:
    s = EpisodeStore.create(tmp_path / "store", chunk_frames=4, durable=False)
    for source, round_, lrm, aborted in [
        ("demo", 0, None, False),  # 0
        ("sim", 1, True, False),  # 1
        ("sim", 1, False, False),  # 2
        ("robot", 2, True, True),  # 3
        ("sim", 2, None, False),  # 4
    ]:
        ep = make_episode(len(s), min_len=2, max_len=3)
        ep.meta = EpisodeMeta(task="t", source=source, round=round_, lrm_verdict=lrm, aborted=aborted)
        s.append(ep)
    yield s
    s.close()


def test_a_filter_matches_every_field_it_gives():
    meta = EpisodeMeta(task="t", source="sim", round=2, lrm_verdict=True)
    assert EpisodeFilter().matches(meta)
    assert EpisodeFilter(source=["sim", "robot"], round=[1, 2], accepted=True).matches(meta)
    assert not EpisodeFilter(source=["demo"]).matches(meta)
    assert not EpisodeFilter(operator_verdict=False).matches(meta)
    assert EpisodeFilter(operator_verdict=UNSET).matches(meta)
    assert not EpisodeFilter().matches(EpisodeMeta(task="t", source="sim", aborted=True))  # left out by default


def test_store_ors_the_filters_and_ands_the_keywords(store):
    def idx(*filters, **keywords):
        return [r.index for r in store.episodes(*filters, **keywords)]

    assert idx() == [0, 1, 2, 3, 4]
    assert idx(EpisodeFilter(source=["demo"]), EpisodeFilter(lrm_verdict=True)) == [0, 1]  # 3 is aborted
    assert idx(EpisodeFilter(source=["demo"]), EpisodeFilter(lrm_verdict=True, aborted=None)) == [0, 1, 3]
    assert idx(EpisodeFilter(source=["sim"]), round=2) == [4]
    assert idx(EpisodeFilter(source=["sim"]), indices=[2, 3]) == [2]
    assert idx(lrm_verdict=UNSET) == [0, 4]


def test_round_selection_clauses():
    assert selection_for_round(SelectionConfig(), 2) == [
        EpisodeFilter(source=["demo"]),
        EpisodeFilter(source=["sim", "robot"], round=[1, 2], accepted=True),
    ]
    assert selection_for_round(SelectionConfig(demos=False, rollouts="oracle", rounds=1), 3) == [
        EpisodeFilter(source=["sim", "robot"], round=[3], oracle_success=True)
    ]
    assert selection_for_round(SelectionConfig(rollouts="none"), 1) == [EpisodeFilter(source=["demo"])]
    with pytest.raises(ValueError, match="rounds start at 1"):
        selection_for_round(SelectionConfig(), 0)
    with pytest.raises(ValueError, match="selects nothing"):
        SelectionConfig(demos=False, rollouts="none")


def test_config_fields_are_the_yaml_keys():
    """`select:` clauses and `selection:` sections keep their keys (config files and run fingerprints)."""
    assert [f.name for f in dataclasses.fields(EpisodeFilter)] == [
        "source", "task", "round", "accepted", "oracle_success", "lrm_verdict", "operator_verdict", "aborted",
    ]
    assert dataclasses.asdict(SelectionConfig()) == {"demos": True, "rollouts": "accepted", "rounds": None}


def test_shuffled_split_is_by_episode_and_reproducible():
    train, val = shuffled_split(range(10), 0.2, seed=3)
    assert len(val) == 2 and sorted(train + val) == list(range(10))
    assert (train, val) == shuffled_split(range(10), 0.2, seed=3)
    assert shuffled_split([7], 0.5, seed=0) == ([7], [])  # one episode: nothing to hold out
    assert shuffled_split(range(3), 0.0, seed=0) == ([0, 1, 2], [])


def test_hashed_split_is_deterministic_by_episode_and_stable():
    eps = list(range(20))
    tr, va = hashed_split(eps, 0.25, seed=3)
    assert (tr, va) == hashed_split(eps, 0.25, seed=3)
    assert len(va) == 5 and not set(tr) & set(va) and sorted(tr + va) == eps
    assert hashed_split(eps, 0.25, seed=4)[1] != va
    # stratified: each group gets at least one val episode, keeps one for training
    groups = [i % 2 == 0 for i in eps[:4]]
    tr2, va2 = hashed_split(eps[:4], 0.1, seed=0, groups=groups)
    assert len(va2) == 2 and {g for e, g in zip(eps[:4], groups) if e in va2} == {True, False}
    assert hashed_split(eps, 0.0, seed=0) == (eps, [])
