"""EpisodeStore.write_rewards: reward traces set on committed episodes after the fact."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from recordings import layout
from recordings.errors import EpisodeIndexError, InvalidEpisodeError, ReadOnlyStoreError, WriterStateError
from recordings.store import EpisodeStore
from tests.recordings.store_testdata import assert_same_episode, make_episode


@pytest.fixture
def store(tmp_path: Path) -> EpisodeStore:
    # chunk_frames=4 with episodes of odd lengths: every episode shares chunks with its neighbours.
    s = EpisodeStore.create(tmp_path / "store", fps=30, chunk_frames=4, durable=False)
    for i in range(4):
        s.append(make_episode(i))
    yield s
    s.close()


def test_new_trace_on_a_middle_episode_leaves_the_others_intact(store: EpisodeStore) -> None:
    before = [store.load_episode(i) for i in range(4)]
    n = store.record(1).length
    trace = np.full(n, np.nan, np.float32)
    trace[::2] = np.linspace(0, 1, len(trace[::2]))
    rec = store.write_rewards(1, "lrm_progress", trace)
    assert "lrm_progress" in rec.rewards
    np.testing.assert_array_equal(store.load_episode(1).rewards["lrm_progress"], trace)
    for i in (0, 2, 3):
        assert_same_episode(store.load_episode(i), before[i])
        assert "lrm_progress" not in store.record(i).rewards
    # a reader in another process sees it after opening; episodes appended later still work
    store.append(make_episode(4))
    reader = EpisodeStore.open(store.path, "r")
    np.testing.assert_array_equal(reader.load_episode(1).rewards["lrm_progress"], trace)
    assert reader.load_episode(4).rewards.keys() == make_episode(4).rewards.keys()
    frames = list(reader.iter_frames(1))
    assert frames[0].rewards["lrm_progress"] == pytest.approx(float(trace[0]))


def test_overwrite_an_existing_trace_keeps_neighbours(store: EpisodeStore) -> None:
    # episode 0 and 2 recorded "progress"; rewrite episode 2's and check episode 0's is untouched.
    old0 = store.load_episode(0).rewards["progress"]
    n = store.record(2).length
    store.write_rewards(2, "progress", np.arange(n, dtype=np.float64) / n)
    np.testing.assert_allclose(store.load_episode(2).rewards["progress"], np.arange(n) / n, rtol=1e-6)
    np.testing.assert_array_equal(store.load_episode(0).rewards["progress"], old0)
    assert store.record(2).rewards.count("progress") == 1
    reopened = EpisodeStore.open(store.path, "r")
    np.testing.assert_allclose(reopened.load_episode(2).rewards["progress"], np.arange(n) / n, rtol=1e-6)


def test_a_trace_written_but_never_committed_is_invisible(store: EpisodeStore, monkeypatch) -> None:
    """A crash between the array write and the JSON rewrite leaves the episode as it was."""

    def crash(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(layout, "write_json_atomic", crash)
    with pytest.raises(KeyboardInterrupt):
        store.write_rewards(3, "new_trace", np.zeros(store.record(3).length))
    monkeypatch.undo()
    store.close()
    again = EpisodeStore.open(store.path, "a", durable=False)
    assert again.num_episodes == 4
    assert "new_trace" not in again.record(3).rewards
    again.append(make_episode(4))  # the leftover array grows with the others
    again.write_rewards(3, "new_trace", np.ones(again.record(3).length))
    assert np.all(again.load_episode(3).rewards["new_trace"] == 1)
    again.close()


def test_errors(store: EpisodeStore) -> None:
    n = store.record(0).length
    with pytest.raises(InvalidEpisodeError, match=r"reward 'x' has shape \(3,\), expected"):
        store.write_rewards(0, "x", np.zeros(3))
    with pytest.raises(InvalidEpisodeError, match="reward modality name"):
        store.write_rewards(0, "bad/name", np.zeros(n))
    with pytest.raises(EpisodeIndexError):
        store.write_rewards(9, "x", np.zeros(n))
    with pytest.raises(InvalidEpisodeError, match="cannot be safely cast"):
        store.write_rewards(0, "x", np.array(["a"] * n))
    reader = EpisodeStore.open(store.path, "r")
    with pytest.raises(ReadOnlyStoreError):
        reader.write_rewards(0, "x", np.zeros(n))
    writer = store.begin_episode(make_episode(5).meta)
    with pytest.raises(WriterStateError):
        store.write_rewards(0, "x", np.zeros(n))
    writer.discard()
    assert "x" not in store.record(0).rewards
