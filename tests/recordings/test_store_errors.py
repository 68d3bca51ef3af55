"""Every refusal is a one-line StoreError naming the culprit, and writes nothing visible."""

from __future__ import annotations

import copy
import os
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest

from recordings.episode import Episode, EpisodeMeta, Frame
from recordings.errors import (
    EpisodeIndexError,
    InvalidEpisodeError,
    NotAStoreError,
    ReadOnlyStoreError,
    StoreError,
    StoreExistsError,
    StoreNotFoundError,
    WriterStateError,
)
from recordings.store import EpisodeStore
from tests.recordings.store_testdata import make_episode


def snapshot(path: Path) -> dict[str, tuple[int, int]]:
    """Every file with its size and mtime: 'nothing written' means this is unchanged."""
    out = {}
    for dirpath, _dirs, files in os.walk(path):
        for f in files:
            p = Path(dirpath) / f
            st = p.stat()
            out[str(p.relative_to(path))] = (st.st_size, st.st_mtime_ns)
    return out


@pytest.fixture
def store(tmp_path: Path) -> EpisodeStore:
    s = EpisodeStore.create(tmp_path / "store", chunk_frames=4, durable=False)
    s.append(make_episode(0))
    yield s
    s.close()


def expect_refusal(store: EpisodeStore, action: Callable[[], object], *fragments: str, exc=StoreError) -> str:
    before = snapshot(store.path)
    counts = (store.num_episodes, store.num_frames, store.size_bytes())
    with pytest.raises(exc) as err:
        action()
    msg = str(err.value)
    assert isinstance(err.value, StoreError)
    assert "\n" not in msg, msg
    for fragment in fragments:
        assert fragment in msg, f"{fragment!r} not in {msg!r}"
    assert (store.num_episodes, store.num_frames, store.size_bytes()) == counts
    assert snapshot(store.path) == before
    with EpisodeStore.open(store.path) as reader:
        assert reader.num_episodes == counts[0]
    return msg


def bad(ep: Episode, **changes: object) -> Episode:
    ep = copy.deepcopy(ep)
    for k, v in changes.items():
        setattr(ep, k, v)
    return ep


# -- whole episodes --------------------------------------------------------------------


def test_wrong_image_channels(store: EpisodeStore) -> None:
    ep = make_episode(1)
    n = len(ep)
    images = dict(ep.images, right=np.zeros((n, 24, 32, 4), np.uint8))
    msg = expect_refusal(
        store,
        lambda: store.append(bad(ep, images=images)),
        "camera 'right'",
        f"({n}, 24, 32, 4)",
        f"expected ({n}, 24, 32, 3) uint8",
        exc=InvalidEpisodeError,
    )
    assert msg.startswith("camera 'right': images have shape")


def test_wrong_image_dtype_and_size(store: EpisodeStore) -> None:
    ep = make_episode(1)
    as_float = dict(ep.images, left=ep.images["left"].astype(np.float32))
    expect_refusal(store, lambda: store.append(bad(ep, images=as_float)), "camera 'left'", "float32")
    smaller = dict(ep.images, left=ep.images["left"][:, :20])
    expect_refusal(store, lambda: store.append(bad(ep, images=smaller)), "camera 'left'", "24, 32, 3) uint8")
    shorter = dict(ep.images, left=ep.images["left"][:-1])
    expect_refusal(store, lambda: store.append(bad(ep, images=shorter)), "camera 'left'")


def test_missing_and_extra_camera(store: EpisodeStore) -> None:
    ep = make_episode(1)
    expect_refusal(
        store,
        lambda: store.append(bad(ep, images={"left": ep.images["left"]})),
        "camera 'right' is missing",
        "store cameras: left, right",
    )
    extra = dict(ep.images, wrist=ep.images["left"])
    expect_refusal(store, lambda: store.append(bad(ep, images=extra)), "camera 'wrist'", "not a store camera")


def test_wrong_state_and_action(store: EpisodeStore) -> None:
    ep = make_episode(1)
    n = len(ep)
    expect_refusal(
        store,
        lambda: store.append(bad(ep, state=np.zeros((n, 4), np.float32))),
        "state",
        f"({n}, 4)",
        f"expected ({n}, 5)",
    )
    expect_refusal(
        store,
        lambda: store.append(bad(ep, action=np.zeros((n, 3), np.complex64))),
        "action",
        "complex64",
        "cannot be safely cast",
    )
    expect_refusal(
        store, lambda: store.append(bad(ep, action=np.array([["a"] * 3] * n))), "action", "cannot be safely cast"
    )
    huge = np.zeros((n, 5))
    huge[2, 1] = 1e300
    expect_refusal(store, lambda: store.append(bad(ep, state=huge)), "state", "1e+300", "out of float32 range")


def test_bad_timestamps(store: EpisodeStore) -> None:
    ep = make_episode(1)
    ts = ep.timestamp.copy()
    ts[3] = np.nan
    expect_refusal(store, lambda: store.append(bad(ep, timestamp=ts)), "timestamp: frame 3", "finite")
    ts = ep.timestamp.copy()
    ts[4] = ts[3]
    expect_refusal(store, lambda: store.append(bad(ep, timestamp=ts)), "timestamp: frame 4", "not after frame 3")
    expect_refusal(store, lambda: store.append(bad(ep, timestamp=ep.timestamp[::-1].copy())), "timestamp: frame 1")
    expect_refusal(store, lambda: store.append(bad(ep, timestamp=ep.timestamp[:0])), "no frames")


def test_bad_rewards_and_meta(store: EpisodeStore) -> None:
    ep = make_episode(1)
    n = len(ep)
    expect_refusal(
        store, lambda: store.append(bad(ep, rewards={"bad/name": np.zeros(n)})), "reward modality name 'bad/name'"
    )
    expect_refusal(
        store, lambda: store.append(bad(ep, rewards={"progress": np.zeros(n + 1)})), "reward 'progress'", f"({n + 1},)"
    )
    meta = copy.deepcopy(ep.meta)
    meta.extra = {"when": object()}
    expect_refusal(store, lambda: store.append(bad(ep, meta=meta)), "not JSON-serializable")
    meta = copy.deepcopy(ep.meta)
    meta.operator_verdict = "yes"  # type: ignore[assignment]
    expect_refusal(store, lambda: store.append(bad(ep, meta=meta)), "'operator_verdict'", "expected bool or None")


def test_first_episode_errors_leave_store_without_schema(tmp_path: Path) -> None:
    s = EpisodeStore.create(tmp_path / "s", durable=False)
    ep = make_episode(0)
    expect_refusal(s, lambda: s.append(bad(ep, state=ep.state[:-1])), "state")
    expect_refusal(s, lambda: s.append(bad(ep, images={"bad name": ep.images["left"]})), "camera name 'bad name'")
    assert s.schema is None
    w = s.begin_episode(ep.meta)
    frame = ep.frame(0)
    frame.images = {"left": frame.images["left"][..., :2]}
    expect_refusal(s, lambda: w.add_frame(frame), "camera 'left': frame 0", "(24, 32, 2)")
    w.discard()
    assert s.schema is None
    s.close()


# -- streamed frames ------------------------------------------------------------------------


def test_rejected_frames_change_nothing_and_episode_continues(store: EpisodeStore) -> None:
    ep = make_episode(2, min_len=12, max_len=12)
    w = store.begin_episode(ep.meta)
    for t in range(6):  # flushes have happened (chunk 4), the rest is buffered
        w.add_frame(ep.frame(t))
    w._wait_pending()  # let the background chunk write finish before taking snapshots

    def frame_with(**changes: object) -> Frame:
        f = copy.deepcopy(ep.frame(6))
        for k, v in changes.items():
            setattr(f, k, v)
        return f

    f6 = ep.frame(6)
    cases = [
        (
            frame_with(images=dict(f6.images, left=np.zeros((24, 32, 4), np.uint8))),
            "camera 'left': frame 6 has shape (24, 32, 4) uint8, expected (24, 32, 3) uint8",
        ),
        (
            frame_with(images=dict(f6.images, left=f6.images["left"].astype(np.int64))),
            "camera 'left': frame 6",
            "int64",
        ),
        (frame_with(images={"left": f6.images["left"]}), "camera 'right' is missing from frame 6"),
        (frame_with(images=dict(f6.images, top=f6.images["left"])), "camera 'top' in frame 6"),
        (frame_with(state=np.zeros(6)), "state: frame 6 has shape (6,), expected (5,)"),
        (frame_with(action=np.array(["x", "y", "z"])), "action: frame 6", "cannot be safely cast"),
        (frame_with(timestamp=float("inf")), "timestamp: frame 6 is inf"),
        (frame_with(timestamp=ep.timestamp[5]), "timestamp: frame 6", "not after frame 5"),
        (frame_with(timestamp="0.5"), "timestamp: frame 6"),
        (frame_with(rewards={"progress": "high"}), "reward 'progress': frame 6"),
    ]
    for frame, *fragments in cases:
        expect_refusal(store, lambda frame=frame: w.add_frame(frame), *fragments, exc=InvalidEpisodeError)
        assert w.num_frames == 6
    for t in range(6, 12):
        w.add_frame(ep.frame(t))
    assert w.commit() == 1
    from tests.recordings.store_testdata import assert_same_episode

    assert_same_episode(store.load_episode(1), ep)


def test_empty_commit_and_writer_state(store: EpisodeStore) -> None:
    w = store.begin_episode(EpisodeMeta(task="t", source="sim"))
    expect_refusal(store, w.commit, "no frames", exc=InvalidEpisodeError)
    expect_refusal(
        store, lambda: store.append(make_episode(1)), "while episode 1 is being recorded", exc=WriterStateError
    )
    expect_refusal(
        store, lambda: store.begin_episode(EpisodeMeta(task="t", source="sim")), "episode 1", exc=WriterStateError
    )
    w.discard()
    expect_refusal(store, lambda: w.add_frame(make_episode(1).frame(0)), "already discarded", exc=WriterStateError)
    ep = make_episode(1)
    with store.begin_episode(ep.meta) as w2:
        w2.add_frame(ep.frame(0))
    expect_refusal(store, w2.discard, "already committed", exc=WriterStateError)
    with pytest.raises(InvalidEpisodeError):
        store.begin_episode("not a meta")  # type: ignore[arg-type]


# -- metadata updates, indices, modes ---------------------------------------------------------


def test_update_meta_errors(store: EpisodeStore) -> None:
    expect_refusal(
        store, lambda: store.update_meta(0, verdict=True), "unknown episode field 'verdict'", "operator_verdict"
    )
    expect_refusal(store, lambda: store.update_meta(0, source="lab"), "source 'lab'")
    expect_refusal(store, lambda: store.update_meta(0, round="two"), "'round'", "expected int")
    expect_refusal(store, lambda: store.update_meta(5, operator_verdict=True), "episode index 5", exc=EpisodeIndexError)
    expect_refusal(store, lambda: store.load_episode(-2), "episode index -2", "1 committed", exc=IndexError)


def test_read_only_store_refuses_writes(store: EpisodeStore) -> None:
    with EpisodeStore.open(store.path, mode="r") as reader:
        for action in (
            lambda: reader.append(make_episode(1)),
            lambda: reader.begin_episode(make_episode(1).meta),
            lambda: reader.update_meta(0, operator_verdict=True),
        ):
            expect_refusal(store, action, "read-only", exc=ReadOnlyStoreError)


def test_paths_that_are_not_stores(tmp_path: Path) -> None:
    cases = []
    plain_file = tmp_path / "notes.txt"
    plain_file.write_text("hello")
    cases.append(plain_file)
    other_dir = tmp_path / "photos"
    other_dir.mkdir()
    (other_dir / "a.png").write_bytes(b"x")
    cases.append(other_dir)
    zarr_dir = tmp_path / "other.zarr"
    zarr_dir.mkdir()
    (zarr_dir / "zarr.json").write_text('{"zarr_format": 3, "node_type": "group", "attributes": {}}')
    cases.append(zarr_dir)
    for path in cases:
        before = snapshot(path) if path.is_dir() else path.read_bytes()
        for opener in (
            lambda path=path: EpisodeStore.open(path, mode="r"),
            lambda path=path: EpisodeStore.open(path, mode="a"),
            lambda path=path: EpisodeStore.create(path),
        ):
            with pytest.raises(NotAStoreError) as err:
                opener()
            msg = str(err.value)
            assert msg == f"{path} is not an lrm-robot episode store (no zarr.json with format tag)"
        assert (snapshot(path) if path.is_dir() else path.read_bytes()) == before


def test_missing_store_read_only_and_existing_store_create(tmp_path: Path) -> None:
    missing = tmp_path / "nope"
    with pytest.raises(StoreNotFoundError) as err:
        EpisodeStore.open(missing)
    assert str(err.value) == f"{missing} does not exist (no episode store to open read-only)"
    assert not missing.exists()
    EpisodeStore.create(tmp_path / "s", durable=False).close()
    with pytest.raises(StoreExistsError, match="already holds an episode store"):
        EpisodeStore.create(tmp_path / "s")
    with pytest.raises(StoreError, match="mode must be"):
        EpisodeStore.open(tmp_path / "s", mode="w")  # type: ignore[arg-type]
    with pytest.raises(StoreError, match="given together"):
        EpisodeStore.create(tmp_path / "t", cameras={"a": (2, 2)})
    with pytest.raises(StoreError, match="chunk_frames"):
        EpisodeStore.create(tmp_path / "t", chunk_frames=0)
    assert not (tmp_path / "t").exists()


def test_failed_chunk_write_fails_the_episode_not_the_store(
    store: EpisodeStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A disk error in the background writer surfaces as a one-line error; discard cleans up."""
    from recordings import arrays as arrays_mod

    real = arrays_mod.write_block
    calls = {"n": 0}

    def flaky(*args: object, **kwargs: object) -> None:
        calls["n"] += 1
        if calls["n"] == 2:
            raise OSError(28, "No space left on device")
        real(*args, **kwargs)

    monkeypatch.setattr(arrays_mod, "write_block", flaky)
    before = (store.num_episodes, store.num_frames)
    ep = make_episode(1, min_len=20, max_len=20)
    w = store.begin_episode(ep.meta)
    with pytest.raises(WriterStateError) as err:
        for t in range(len(ep)):
            w.add_frame(ep.frame(t))
        w.commit()
    assert "No space left on device" in str(err.value) and "\n" not in str(err.value)
    assert w.state == "failed"
    with pytest.raises(WriterStateError, match="an earlier write failed"):
        w.commit(aborted=True)
    w.discard()
    assert (store.num_episodes, store.num_frames) == before
    monkeypatch.setattr(arrays_mod, "write_block", real)
    with EpisodeStore.open(store.path) as reader:
        assert reader.num_episodes == before[0]
    with store.begin_episode(ep.meta) as w2:
        for t in range(len(ep)):
            w2.add_frame(ep.frame(t))
    from tests.recordings.store_testdata import assert_same_episode

    assert_same_episode(store.load_episode(-1), ep)
