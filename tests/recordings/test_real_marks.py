"""Per-frame, per-camera marks of which images were rendered (recordings.episode: `real`)."""

from __future__ import annotations

import json
import logging
import shutil

import numpy as np
import pytest

from recordings import layout
from recordings.episode import Episode, EpisodeMeta, Frame
from recordings.errors import DamagedEpisodeError, InvalidEpisodeError
from recordings.store import EpisodeStore

CAMS = {"base": (8, 8), "hand": (8, 8)}


def _frame(t: int, real: dict[str, bool] | None = None) -> Frame:
    real = real or {}
    images = {c: np.full((8, 8, 3), 0 if not real.get(c, True) else 50 + t, np.uint8) for c in CAMS}
    return Frame(images=images, state=np.zeros(2, np.float32), action=np.zeros(1, np.float32), timestamp=t / 10,
                 real=real)


def _meta() -> EpisodeMeta:
    return EpisodeMeta(task="pick", source="sim")


def test_streamed_marks_are_stored_counted_and_read_back(tmp_path):
    with EpisodeStore.open(tmp_path / "s", mode="a", durable=False, chunk_frames=4) as store:
        with store.begin_episode(_meta()) as w:
            for t in range(9):
                w.add_frame(_frame(t, {"base": t in (0, 8)}))  # "hand" unnamed: real
        ep = store.load_episode(0)
        frames = list(store.iter_frames(0))
    assert ep.real_mask("base").tolist() == [t in (0, 8) for t in range(9)]
    assert ep.real_mask("hand").all() and ep.real_frames().tolist() == ep.real_mask("base").tolist()
    assert [f.is_real("base") for f in frames] == ep.real_mask("base").tolist()
    reader = EpisodeStore.open(tmp_path / "s")
    assert reader.record(0).real_frames == {"base": 2, "hand": 9}
    assert reader.real_marks(0)["base"].sum() == 2


def test_appended_episode_defaults_to_all_real_and_checks_its_marks(tmp_path):
    frames = [_frame(t) for t in range(5)]
    with EpisodeStore.open(tmp_path / "s", mode="a", durable=False) as store:
        store.append(Episode.from_frames(_meta(), frames))  # no marks given: all real
        marked = Episode.from_frames(_meta(), frames)
        marked.real = {"hand": np.array([True, False, False, False, True])}
        store.append(marked)
        bad = Episode.from_frames(_meta(), frames)
        bad.real = {"hand": np.ones(4, bool)}
        with pytest.raises(InvalidEpisodeError, match="real-image marks"):
            store.append(bad)
        assert store.record(0).real_frames == {"base": 5, "hand": 5}
        assert store.load_episode(1).real_mask("hand").tolist() == [True, False, False, False, True]


def test_marks_are_covered_by_the_checksums(tmp_path):
    with EpisodeStore.open(tmp_path / "s", mode="a", durable=False) as store:
        store.append(Episode.from_frames(_meta(), [_frame(t, {"base": t == 0}) for t in range(5)]))
    info = json.loads((tmp_path / "s" / layout.EPISODES_DIR / "000000.json").read_text())
    assert layout.real_key("base") in info["checksums"]["arrays"] and info["real"] == {"base": 1, "hand": 5}
    with EpisodeStore.open(tmp_path / "s", mode="a", durable=False) as store:
        store._arrays.frames[layout.real_key("base")][0:5] = True  # flip the marks behind the store's back
    reader = EpisodeStore.open(tmp_path / "s")
    with pytest.raises(DamagedEpisodeError, match="data/real/base"):
        reader.load_episode(0)


def _make_old_store(path):
    """A store as written before the mark existed: no data/real arrays, no "real" in the episode JSON."""
    with EpisodeStore.open(path, mode="a", durable=False) as store:
        store.append(Episode.from_frames(_meta(), [_frame(t, {"base": t == 0}) for t in range(5)]))
        store.append(Episode.from_frames(_meta(), [_frame(t) for t in range(5)]))
    shutil.rmtree(path / layout.REAL_DIR)
    for name in ("000000.json", "000001.json"):
        p = path / layout.EPISODES_DIR / name
        info = json.loads(p.read_text())
        del info["real"]
        for c in CAMS:
            del info["checksums"]["arrays"][layout.real_key(c)]
        p.write_text(json.dumps(info))


def test_old_store_is_read_as_it_is_with_one_warning_line_for_black_frames(tmp_path, caplog):
    _make_old_store(tmp_path / "s")
    reader = EpisodeStore.open(tmp_path / "s")
    assert reader.record(0).real_frames is None and reader.real_marks(0) is None
    with caplog.at_level(logging.WARNING, logger="recordings.store"):
        ep = reader.load_episode(0)
        reader.load_episode(0)
        list(reader.iter_frames(0))
        reader.load_episode(1)  # no black frames: nothing to say
    assert ep.real_mask("base").all()  # read as it is
    lines = [r.getMessage() for r in caplog.records]
    assert len(lines) == 1 and "\n" not in lines[0]
    assert "episode 0" in lines[0] and "base 4/5" in lines[0] and "without real-image marks" in lines[0]


def test_old_store_takes_new_marked_episodes(tmp_path):
    _make_old_store(tmp_path / "s")
    with EpisodeStore.open(tmp_path / "s", mode="a", durable=False) as store:
        with store.begin_episode(_meta()) as w:
            for t in range(3):
                w.add_frame(_frame(t, {"hand": t == 2}))
    reader = EpisodeStore.open(tmp_path / "s")
    assert reader.verify().ok
    assert reader.record(0).real_frames is None and reader.record(2).real_frames == {"base": 3, "hand": 1}
    assert reader.load_episode(2).real_mask("hand").tolist() == [False, False, True]
