"""Episode store: round trips, queries, metadata updates, schema, locking."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest

from recordings import layout
from recordings.episode import Episode, EpisodeMeta, Frame
from recordings.errors import StoreLockedError
from recordings.selection import UNSET
from recordings.store import EpisodeStore
from tests.recordings.store_testdata import CAMERAS, assert_same_episode, make_episode


def stream(store: EpisodeStore, ep: Episode) -> int:
    with store.begin_episode(ep.meta) as w:
        for t in range(len(ep)):
            w.add_frame(ep.frame(t))
    return w.index


@pytest.fixture
def store(tmp_path: Path) -> EpisodeStore:
    s = EpisodeStore.create(tmp_path / "store", fps=30, chunk_frames=4, durable=False)
    yield s
    s.close()


def test_round_trip_append_and_stream_byte_exact(store: EpisodeStore) -> None:
    eps = [make_episode(i) for i in range(10)]
    for i, ep in enumerate(eps):
        idx = stream(store, ep) if i % 2 else store.append(ep)
        assert idx == i
    assert len(store) == store.num_episodes == 10
    assert store.num_frames == sum(len(e) for e in eps)
    assert store.cameras == {c: (24, 32) for c in CAMERAS}
    assert (store.state_dim, store.action_dim, store.fps) == (5, 3, 30.0)
    for i, ep in enumerate(eps):
        assert_same_episode(store.load_episode(i), ep)
        frames = list(store.iter_frames(i))
        assert len(frames) == len(ep)
        for t, f in enumerate(frames):
            want = ep.frame(t)
            for c in CAMERAS:
                assert f.images[c].tobytes() == want.images[c].tobytes()
            assert f.state.tobytes() == want.state.tobytes()
            assert f.action.tobytes() == want.action.tobytes()
            assert f.timestamp == want.timestamp
            assert set(f.rewards) == set(want.rewards)
            for m, v in want.rewards.items():
                assert (math.isnan(v) and math.isnan(f.rewards[m])) or f.rewards[m] == np.float32(v)
    # A reader in the same process sees the same bytes.
    with EpisodeStore.open(store.path) as reader:
        for i, ep in enumerate(eps):
            assert_same_episode(reader.load_episode(i), ep)
    # A modality that first appeared in episode 6 reads NaN for all earlier frames.
    comp = store._arrays.frames[layout.reward_key("completion")][: store.record(6).start]
    assert np.isnan(comp).all()


def test_streaming_writer_details(store: EpisodeStore) -> None:
    meta = EpisodeMeta(task="stack", source="robot")
    frames = [
        Frame(
            images={c: np.full((24, 32, 3), t, np.uint8) for c in CAMERAS},
            state=np.arange(5, dtype=np.float64) * t,  # float64 is cast to float32
            action=[0.0, 1.0, t],  # lists are fine too
            timestamp=0.5 + t / 30,
            rewards={"progress": t / 10} if t % 4 == 0 else {},
        )
        for t in range(11)
    ]
    with store.begin_episode(meta) as w:
        for f in frames:
            w.add_frame(f)
        assert w.num_frames == 11 and w.index == 0
    ep = store.load_episode(0)
    assert ep.meta.duration_s == pytest.approx(10 / 30)
    assert ep.state.dtype == np.float32 and ep.state[3].tolist() == [0, 3, 6, 9, 12]
    assert ep.images["left"][7].max() == 7
    prog = ep.rewards["progress"]
    assert prog[0] == 0 and prog[4] == np.float32(0.4) and np.isnan(prog[1])
    assert meta.duration_s is None  # the caller's meta is not modified


def test_context_manager_commit_discard_and_aborted(store: EpisodeStore) -> None:
    ep = make_episode(0)
    with pytest.raises(RuntimeError):
        with store.begin_episode(ep.meta) as w:
            for t in range(len(ep)):
                w.add_frame(ep.frame(t))
            raise RuntimeError("robot fault")
    assert store.num_episodes == 0 and store.num_frames == 0
    assert w.state == "discarded"

    # A fault handler keeps what was recorded so far.
    with pytest.raises(RuntimeError):
        with store.begin_episode(ep.meta) as w:
            try:
                for t in range(5):
                    w.add_frame(ep.frame(t))
                raise RuntimeError("joint limit")
            except RuntimeError:
                w.commit(aborted=True)
                raise
    assert store.num_episodes == 1
    kept = store.load_episode(0)
    assert len(kept) == 5 and kept.meta.aborted
    assert kept.images["left"].tobytes() == ep.images["left"][:5].tobytes()

    w = store.begin_episode(ep.meta)
    w.add_frame(ep.frame(0))
    w.discard()
    w.discard()  # idempotent
    assert store.num_episodes == 1
    assert stream(store, make_episode(1)) == 1


def test_discarding_the_first_episode_does_not_fix_the_schema(tmp_path: Path) -> None:
    s = EpisodeStore.create(tmp_path / "s", chunk_frames=2, durable=False)
    ep = make_episode(0)
    w = s.begin_episode(ep.meta)
    for t in range(len(ep)):  # several chunk flushes create the arrays
        w.add_frame(ep.frame(t))
    w.discard()
    assert s.schema is None and s.num_frames == 0
    assert not (tmp_path / "s" / "data" / "camera" / "left").exists()
    other = Episode(
        meta=EpisodeMeta(task="t", source="sim"),
        images={"top": np.zeros((2, 8, 8, 3), np.uint8)},
        state=np.zeros((2, 2), np.float32),
        action=np.zeros((2, 1), np.float32),
        timestamp=np.array([0.0, 0.1]),
    )
    assert s.append(other) == 0
    assert s.cameras == {"top": (8, 8)} and s.state_dim == 2
    s.close()


def test_schema_given_at_create(tmp_path: Path) -> None:
    s = EpisodeStore.create(
        tmp_path / "s", fps=15, cameras={"left": (24, 32), "right": (24, 32)}, state_dim=5, action_dim=3
    )
    assert s.cameras == {"left": (24, 32), "right": (24, 32)} and s.fps == 15.0
    assert s.num_episodes == 0
    s.append(make_episode(3))
    s.close()
    attrs = json.loads((tmp_path / "s" / "zarr.json").read_text())["attributes"]
    assert attrs["format"] == "lrm-robot-episodes" and attrs["format_version"] == 1
    assert attrs["cameras"] == {"left": [24, 32], "right": [24, 32]}
    assert (attrs["state_dim"], attrs["action_dim"], attrs["fps"]) == (5, 3, 15.0)


def test_open_append_creates_and_reopens(tmp_path: Path) -> None:
    path = tmp_path / "new" / "store"
    with EpisodeStore.open(path, mode="a", durable=False, chunk_frames=3) as s:
        assert s.num_episodes == 0 and s.chunk_frames == 3
        s.append(make_episode(0))
    with EpisodeStore.open(path, mode="a") as s:
        assert s.num_episodes == 1 and s.chunk_frames == 3
        s.append(make_episode(1))
        assert s.durable
    with EpisodeStore.open(path) as s:
        assert s.mode == "r" and s.num_episodes == 2
        assert_same_episode(s.load_episode(1), make_episode(1))
    assert not list(path.parent.glob(".store.creating-*"))


def test_episodes_filters(store: EpisodeStore) -> None:
    eps = [make_episode(i) for i in range(15)]
    for ep in eps:
        store.append(ep)

    def idx(**kw: object) -> list[int]:
        return [r.index for r in store.episodes(**kw)]

    def want(pred) -> list[int]:  # type: ignore[no-untyped-def]
        return [i for i, e in enumerate(eps) if pred(e.meta)]

    assert idx() == list(range(15))
    assert idx(source="sim") == want(lambda m: m.source == "sim")
    assert idx(source=["sim", "demo"]) == want(lambda m: m.source in ("sim", "demo"))
    assert idx(task="task-1") == want(lambda m: m.task == "task-1")
    assert idx(round=2) == want(lambda m: m.round == 2)
    assert idx(round={0, 3}) == want(lambda m: m.round in (0, 3))
    assert idx(lrm_verdict=True) == want(lambda m: m.lrm_verdict is True)
    assert idx(lrm_verdict=False) == want(lambda m: m.lrm_verdict is False)
    assert idx(operator_verdict=UNSET) == want(lambda m: m.operator_verdict is None)
    assert idx(oracle_success=True) == want(lambda m: m.oracle_success is True)
    assert idx(accepted=True) == want(lambda m: m.accepted is True)
    assert idx(accepted=False) == want(lambda m: m.accepted is False)
    assert idx(aborted=True) == want(lambda m: m.aborted)
    assert idx(aborted=False) == want(lambda m: not m.aborted)
    assert idx(source="sim", accepted=True, round=[0, 1, 2, 3]) == want(
        lambda m: m.source == "sim" and m.accepted is True and m.round <= 3
    )
    assert idx(indices=[4, 1, -1, 4]) == [1, 4, 14]
    assert idx(indices=[1, 2, 3], source="robot") == [i for i in (1, 2, 3) if eps[i].meta.source == "robot"]
    recs = store.episodes(indices=[2])
    assert recs[0].start == sum(len(e) for e in eps[:2]) and recs[0].length == len(eps[2])
    assert recs[0].end == recs[0].start + recs[0].length
    recs[0].meta.task = "mutated"  # records hand out copies
    assert store.record(2).meta.task == eps[2].meta.task


def test_update_meta(store: EpisodeStore, tmp_path: Path) -> None:
    for i in range(3):
        store.append(make_episode(i))
    reader = EpisodeStore.open(store.path)
    assert reader.record(1).meta.operator_verdict is None
    new = store.update_meta(1, operator_verdict=False, extra={"reviewer": "ana"})
    assert new.operator_verdict is False and new.accepted is False
    assert store.record(1).meta.operator_verdict is False
    assert [r.index for r in store.episodes(operator_verdict=False)] == [1]
    data = json.loads((store.path / "meta" / "episodes" / "000001.json").read_text())
    assert data["meta"]["operator_verdict"] is False and data["meta"]["extra"] == {"reviewer": "ana"}
    assert (data["start"], data["end"]) == (store.record(1).start, store.record(1).end)
    # Another process's reader sees it after refresh(), other fields untouched.
    assert reader.record(1).meta.operator_verdict is None
    reader.refresh()
    assert reader.record(1).meta.operator_verdict is False
    assert reader.record(1).meta.task == make_episode(1).meta.task
    assert_same_episode(reader.load_episode(0), make_episode(0))
    reader.close()
    with EpisodeStore.open(store.path) as again:
        assert again.record(1).meta.extra == {"reviewer": "ana"}


def test_iter_frames_reads_one_chunk_at_a_time(store: EpisodeStore, monkeypatch: pytest.MonkeyPatch) -> None:
    store.append(make_episode(0, min_len=3, max_len=3))
    ep = make_episode(1, min_len=20, max_len=20)
    store.append(ep)
    rec = store.record(1)
    calls: list[tuple[int, int]] = []
    from recordings import integrity

    real = integrity.read_rows

    def spy(arrays, start, stop):  # type: ignore[no-untyped-def]
        calls.append((start, stop))
        return real(arrays, start, stop)

    monkeypatch.setattr(integrity, "read_rows", spy)
    it = store.iter_frames(1)
    assert calls == []  # lazy: nothing read before the first frame is asked for
    first = next(it)
    assert calls == [(rec.start, 4)]  # episode 1 starts at frame 3; chunks are 4 frames
    assert first.images["right"].tobytes() == ep.images["right"][0].tobytes()
    rest = list(it)
    assert len(rest) == 19
    assert all(b - a <= 4 for a, b in calls) and calls[-1][1] == rec.end


def test_size_and_compression_settings(tmp_path: Path) -> None:
    s = EpisodeStore.create(
        tmp_path / "s",
        chunk_frames=8,
        image_compression=layout.Compression("zstd", 3, "bitshuffle"),
        durable=False,
    )
    ep = make_episode(0)
    ep.images = {c: np.zeros_like(v) for c, v in ep.images.items()}
    s.append(ep)
    assert 0 < s.size_bytes() < sum(v.nbytes for v in ep.images.values())
    meta = json.loads((tmp_path / "s" / "data" / "camera" / "left" / "zarr.json").read_text())
    assert meta["chunk_grid"]["configuration"]["chunk_shape"] == [8, 24, 32, 3]
    assert meta["codecs"][-1]["configuration"]["cname"] == "zstd"
    s.close()


def test_single_writer_lock(store: EpisodeStore, tmp_path: Path) -> None:
    with pytest.raises(StoreLockedError) as err:
        EpisodeStore.open(store.path, mode="a")
    assert "already open for writing" in str(err.value) and str(store.path) in str(err.value)
    with EpisodeStore.open(store.path, mode="r") as reader:  # readers are never blocked
        assert reader.num_episodes == 0
    store.close()
    with EpisodeStore.open(store.path, mode="a") as second:  # released by close()
        assert second.mode == "a"


def test_durable_mode_round_trip(tmp_path: Path) -> None:
    with EpisodeStore.create(tmp_path / "s", chunk_frames=4, durable=True) as s:
        stream(s, make_episode(0))
        s.append(make_episode(1))
        s.update_meta(0, operator_verdict=True)
    with EpisodeStore.open(tmp_path / "s") as r:
        assert_same_episode(r.load_episode(1), make_episode(1))
        assert r.record(0).meta.operator_verdict is True


def test_lost_json_of_a_committed_episode_quarantines_it_and_a_torn_entry_is_cut(tmp_path: Path) -> None:
    """A committed episode is never truncated: with its JSON lost (e.g. power loss without
    durability) it is quarantined and keeps its index; only a torn end entry (fill 0) is cut."""
    path = tmp_path / "s"
    with EpisodeStore.create(path, chunk_frames=4, durable=False) as s:
        for i in range(3):
            s.append(make_episode(i))
        end2 = s.record(2).end
    (path / "meta" / "episodes" / "000002.json").unlink()
    with EpisodeStore.open(path) as r:
        assert r.num_episodes == 3 and sorted(r.damaged) == [2] and r.num_frames == end2
        assert [rec.index for rec in r.episodes()] == [0, 1]
    with EpisodeStore.open(path, mode="a") as s:
        assert s.num_episodes == 3 and s.num_frames == end2  # nothing cut
        ends = s._arrays.ends
        ends.resize((4,))  # what a writer killed after its resize would leave
        assert ends[3] == 0
    with EpisodeStore.open(path, mode="a") as s:
        assert s.num_episodes == 3 and s._arrays.ends.shape == (3,)
        assert s.append(make_episode(3)) == 3
        for i in (0, 1, 3):
            assert_same_episode(s.load_episode(i), make_episode(i))
        assert sorted(s.damaged) == [2]


def test_dropped_store_releases_the_lock(tmp_path: Path) -> None:
    import gc

    s = EpisodeStore.create(tmp_path / "s", durable=False)
    del s
    gc.collect()
    with EpisodeStore.open(tmp_path / "s", mode="a") as again:
        assert again.num_episodes == 0


def test_durable_commit_syncs_before_and_after_the_end_index(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Power loss must not reorder the frames/JSON after the end index: check the fsync order."""
    import os as os_mod

    from recordings import arrays as arrays_mod

    s = EpisodeStore.create(tmp_path / "s", chunk_frames=4, durable=True)
    events: list[str] = []
    real_fsync, real_commit = os_mod.fsync, arrays_mod._commit_point

    def fsync(fd: int) -> None:
        events.append("fsync:" + os_mod.readlink(f"/proc/self/fd/{fd}"))
        real_fsync(fd)

    def commit_point(*args: object) -> None:
        events.append("COMMIT")
        real_commit(*args)

    monkeypatch.setattr(os_mod, "fsync", fsync)
    monkeypatch.setattr(arrays_mod, "_commit_point", commit_point)
    stream(s, make_episode(0))
    cut = events.index("COMMIT")
    before, after = " ".join(events[:cut]), " ".join(events[cut:])
    root = str(tmp_path / "s")
    assert f"{root}/data/camera/left/c.0.0.0.0" in before  # frame chunks
    assert f"{root}/data/camera/left/zarr.json" in before  # array shapes
    assert f"{root}/meta/episodes/000000.json" in before  # the JSON (synced as its tmp file before the rename)
    assert f"fsync:{root}/meta/episodes " in before + " "  # ... and its directory entry
    assert f"{root}/meta/episode_ends/c.0" in after and f"{root}/meta/episode_ends/zarr.json" in after
    assert f"{root}/meta/episode_ends/c.0" not in before
    s.close()
