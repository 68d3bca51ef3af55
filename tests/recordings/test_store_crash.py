"""Crash safety and concurrent readers, with real worker processes killed by SIGKILL.

The workers are forked from one server process that imported zarr and the store once
(tests/support/fork_server.py): a fresh interpreter for each of the ~34 workers spent ~0.7 s importing them.
"""

from __future__ import annotations

import os
import random
import signal
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from recordings import layout
from recordings.store import EpisodeStore
from tests.recordings.store_testdata import assert_same_episode, make_episode
from tests.support.fork_server import Child, ForkServer

WORKER = Path(__file__).with_name("store_crash_worker.py")
REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def workers(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ForkServer]:
    server = ForkServer(WORKER, tmp_path_factory.mktemp("workers") / "stderr.log", cwd=REPO)
    yield server
    server.close()


def start_worker(workers: ForkServer, store: Path, *args: str) -> Child:
    proc = workers.run(str(store), *args)
    proc.expect("ready", timeout=30)
    return proc


def run_until_killed(workers: ForkServer, store: Path, *args: str, timeout: float = 60) -> None:
    """Run a worker that kills itself at a kill point; it must die by SIGKILL."""
    proc = start_worker(workers, store, *args)
    try:
        proc.wait(timeout=timeout)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(timeout=30)
    assert proc.returncode == -signal.SIGKILL, f"worker exited {proc.returncode}: {workers.errors()}"


def torn_state(path: Path, store: EpisodeStore) -> set[str]:
    """What a killed writer left past the committed prefix (as seen by a read-only open)."""
    found = set()
    ends = layout.open_array(store._arrays.zstore, layout.EPISODE_ENDS)
    assert ends is not None
    if ends.shape[0] > store.num_episodes:
        found.add("ends-entry")
    for key in [layout.STATE, layout.camera_key("left")]:
        arr = layout.open_array(store._arrays.zstore, key)
        if arr is not None and arr.shape[0] > store.num_frames:
            found.add("frames")
    names = os.listdir(path / layout.EPISODES_DIR) if (path / layout.EPISODES_DIR).exists() else []
    if any((layout.episode_json_index(n) or -1) >= store.num_episodes for n in names):
        found.add("orphan-json")
    if layout.partial_files(path):
        found.add("partial")
    return found


def check_all(store: EpisodeStore) -> None:
    for i in range(store.num_episodes):
        assert_same_episode(store.load_episode(i), make_episode(i))


def check_repaired(path: Path, store: EpisodeStore) -> None:
    """After a writer's open: no torn tail left at all."""
    assert layout.partial_files(path) == []
    ends = layout.open_array(store._arrays.zstore, layout.EPISODE_ENDS)
    assert ends is not None and ends.shape[0] == store.num_episodes
    for key, arr in store._arrays.frames.items():
        assert arr.shape[0] == store.num_frames, key
    names = [layout.episode_json_index(n) for n in os.listdir(path / layout.EPISODES_DIR)]
    assert sorted(n for n in names if n is not None) == list(range(store.num_episodes))


def verify_then_append(path: Path, committed_before: int) -> tuple[int, set[str]]:
    """The checks after every kill: read-only view, repair, exact bytes, one more append."""
    torn = set()
    if not path.exists():  # killed while creating the store: it is built beside the path, nothing is left
        assert committed_before == 0
        torn.add("uncreated")
        EpisodeStore.create(path, chunk_frames=4, durable=False).close()  # as the workers create it
    with EpisodeStore.open(path, mode="r") as reader:
        assert reader.num_episodes >= committed_before
        torn |= torn_state(path, reader)
        check_all(reader)
        seen = reader.num_episodes
    with EpisodeStore.open(path, mode="a", durable=False) as store:
        assert store.num_episodes == seen  # repair never drops a committed episode
        check_repaired(path, store)
        check_all(store)
        ep = make_episode(store.num_episodes)
        with store.begin_episode(ep.meta) as w:
            for t in range(len(ep)):
                w.add_frame(ep.frame(t))
        assert_same_episode(store.load_episode(-1), ep)
        return store.num_episodes, torn


@pytest.mark.timeout(120)
def test_sigkill_at_random_times(workers: ForkServer, tmp_path: Path) -> None:
    """>= 20 real SIGKILLs at random delays: every committed episode survives byte for byte."""
    path = tmp_path / "store"
    rng = random.Random(1234)
    committed = 0
    torn_kinds: Counter[str] = Counter()
    trials = 22
    for trial in range(trials):
        args = ["--durable"] if trial % 3 == 2 else []
        proc = start_worker(workers, path, *args)
        # 0 .. 0.35 s after "ready": kills land in the open/repair, frame flushes,
        # JSON writes and the commit, depending on the draw.
        time.sleep(rng.choice([0.0, 0.01, 0.05]) + rng.random() * 0.3)
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=30)
        assert proc.returncode == -signal.SIGKILL, workers.errors()
        committed, torn = verify_then_append(path, committed)
        torn_kinds.update(torn or {"clean"})
    print(f"\n{trials} kills, {committed} episodes; torn tails seen: {dict(torn_kinds)}")
    assert committed >= trials
    assert torn_kinds["frames"] > 0, f"no kill landed inside a write: {dict(torn_kinds)}"


KILL_POINTS = [
    ("zarr-write", 3),  # inside the first episode's first chunk writes
    ("zarr-write", 40),
    ("zarr-write", 77),
    ("block", 2),
    ("json", 2),
    ("ends-resized", 1),
    ("ends-resized", 3),
    ("committed", 2),
]


@pytest.mark.timeout(120)
def test_sigkill_at_each_kill_point(workers: ForkServer, tmp_path: Path) -> None:
    """Deterministic kills at every step of the commit protocol, then a kill inside the repair."""
    path = tmp_path / "store"
    # A kill while the store is being created leaves nothing at the path (it is
    # built beside it and renamed into place); the next writer creates it afresh.
    run_until_killed(workers, path, "--kill-at", "zarr-write", "--kill-after", "3")
    assert not path.exists()
    EpisodeStore.create(path, chunk_frames=4, durable=False).close()
    committed = 0
    expected_torn = {"ends-resized": "ends-entry", "json": "orphan-json", "block": "frames", "zarr-write": "partial"}
    for point, after in KILL_POINTS:
        run_until_killed(workers, path, "--kill-at", point, "--kill-after", str(after))
        with EpisodeStore.open(path, mode="r") as reader:
            torn = torn_state(path, reader)
            n_visible = reader.num_episodes
        if point in expected_torn:
            assert expected_torn[point] in torn, (point, after, torn)
        if point == "committed":
            assert n_visible == committed + 2  # the episode whose end was written is visible
        if point == "ends-resized":
            # Leave the torn entry in place and kill the next writer inside its repair,
            # after it zeroed the stale entry but before it shrank episode_ends.
            run_until_killed(workers, path, "--kill-at", "repair-zeroed", "--kill-after", "1")
            with EpisodeStore.open(path, mode="r") as reader:
                assert reader.num_episodes == n_visible
                assert "ends-entry" in torn_state(path, reader)
        committed, _ = verify_then_append(path, committed)
    assert committed >= len(KILL_POINTS)


@pytest.mark.timeout(120)
def test_reader_sees_only_whole_episodes_while_writer_appends(workers: ForkServer, tmp_path: Path) -> None:
    path = tmp_path / "store"
    EpisodeStore.create(path, chunk_frames=4, durable=False).close()
    reader = EpisodeStore.open(path, mode="r")
    assert reader.num_episodes == 0 and reader.cameras == {}
    count = 30
    proc = start_worker(workers, path, "--count", str(count), "--sleep", "0.005")
    checked = 0
    counts_seen = set()
    deadline = time.monotonic() + 90
    try:
        while time.monotonic() < deadline:
            running = proc.poll() is None
            n = reader.refresh()
            counts_seen.add(n)
            assert n >= checked
            for i in range(checked, n):  # every newly visible episode is complete and exact
                assert_same_episode(reader.load_episode(i), make_episode(i))
                frames = list(reader.iter_frames(i))
                assert len(frames) == reader.record(i).length
            if n:  # re-read the latest one: its tail chunk may be rewritten by the next append
                last = reader.load_episode(n - 1)
                assert_same_episode(last, make_episode(n - 1))
            checked = n
            if not running:
                break
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.wait(timeout=30)
    assert proc.returncode == 0, workers.errors()
    assert reader.refresh() == count
    assert len(counts_seen) > 3, f"reader never overlapped the writer: {sorted(counts_seen)}"
    check_all(reader)
    assert np.isnan(reader.load_episode(1).rewards.get("progress", np.array([np.nan]))).all()
