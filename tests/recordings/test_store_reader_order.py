"""A reader beside a writer, step by step: no threads, no timing.

The writer publishes an episode in this order (`recordings.arrays`): frames,
episode JSON, `episode_ends` grown by one (torn entry), the end value (the
commit). A reader reads `episode_ends` first and takes it as its commit point:
whatever it meets past that count is a publication in progress, never damage.
Each test stops one side at a named step, by monkeypatching, and runs the other.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from recordings import arrays as arrays_mod
from recordings import layout
from recordings.store import EpisodeStore
from tests.recordings.store_testdata import assert_same_episode, make_episode


def assert_sees(reader: EpisodeStore, k: int, step: str) -> None:
    """Exactly episodes 0..k-1, whole and exact, and nothing damaged."""
    assert reader.num_episodes == k, step
    assert reader.damaged == {}, (step, reader.damaged)
    assert [rec.index for rec in reader.episodes()] == list(range(k)), step
    for i in range(k):
        assert_same_episode(reader.load_episode(i), make_episode(i))


def test_reader_refresh_never_takes_a_publication_in_progress_for_damage(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Stop the writer at every step of publishing episode k; a refreshed reader and a freshly
    opened one see exactly the k committed episodes, and k + 1 once the end is written."""
    path = tmp_path / "store"
    writer = EpisodeStore.create(path, chunk_frames=4, durable=False)
    reader = EpisodeStore.open(path, mode="r")
    publishing = {"k": -1}
    steps: list[tuple[int, str]] = []

    def stop(step: str, k: int) -> None:
        steps.append((k, step))
        assert reader.refresh() == k, step
        assert_sees(reader, k, step)
        with EpisodeStore.open(path, mode="r") as fresh:
            assert_sees(fresh, k, step)

    real_json, real_commit = layout.write_json_atomic, arrays_mod._commit_point

    def write_json(target: Path, *args: Any, **kwargs: Any) -> None:
        episode_json = target.parent.name == Path(layout.EPISODES_DIR).name
        if episode_json:
            stop("frames written, no JSON", publishing["k"])
        real_json(target, *args, **kwargs)
        if episode_json:
            stop("JSON written, episode_ends not grown", publishing["k"])

    def commit_point(ends: Any, index: int, end: int) -> None:
        stop("episode_ends grown, end not written (torn)", index)
        real_commit(ends, index, end)

    monkeypatch.setattr(layout, "write_json_atomic", write_json)
    monkeypatch.setattr(arrays_mod, "_commit_point", commit_point)
    for k in range(4):  # the first one fixes the schema; streamed and appended ones alike
        publishing["k"] = k
        ep = make_episode(k)
        if k % 2 == 0:
            with writer.begin_episode(ep.meta) as w:
                for t in range(len(ep)):
                    w.add_frame(ep.frame(t))
        else:
            writer.append(ep)
        assert reader.refresh() == k + 1  # the commit is what makes it visible
        assert_sees(reader, k + 1, "committed")
    assert [k for k, _ in steps] == [k for k in range(4) for _ in range(3)]
    writer.close()
    reader.close()


def test_reader_takes_episode_ends_as_its_commit_point_while_a_writer_publishes_mid_refresh(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Right after the reader has read episode_ends, the writer commits episode k (the first one
    fixes the schema) and starts k + 1 (its JSON is written): the schema, JSONs and arrays the
    reader meets are newer than its commit point, and it must see k episodes, undamaged."""
    path = tmp_path / "store"
    writer = EpisodeStore.create(path, chunk_frames=4, durable=False)
    reader = EpisodeStore.open(path, mode="r")
    assert reader.num_episodes == 0 and reader.cameras == {}
    real_read_ends = arrays_mod.read_ends
    pending: list[Callable[[], None]] = []

    def read_ends(*args: Any, **kwargs: Any) -> list[int | None]:
        values = real_read_ends(*args, **kwargs)
        while pending:
            pending.pop()()
        return values

    def publish(k: int) -> None:
        writer.append(make_episode(k))
        # The next episode's JSON, as a writer stopped before growing episode_ends leaves it.
        episodes = path / layout.EPISODES_DIR
        info = json.loads((episodes / layout.episode_json_name(k)).read_text())
        info.update(index=k + 1, start=info["end"], end=info["end"] + info["length"])
        (episodes / layout.episode_json_name(k + 1)).write_text(json.dumps(info))

    monkeypatch.setattr(arrays_mod, "read_ends", read_ends)
    for k in range(4):
        pending.append(lambda k=k: publish(k))
        assert reader.refresh() == k
        assert not pending, "the writer did not run inside the refresh"
        assert_sees(reader, k, f"refresh racing episode {k}")
        (path / layout.EPISODES_DIR / layout.episode_json_name(k + 1)).unlink()  # never committed
        assert reader.refresh() == k + 1
        assert_sees(reader, k + 1, f"after episode {k}")
    writer.close()
    reader.close()


def test_reader_meets_a_new_reward_trace_whole_or_not_at_all(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A trace is published array first, then the episode JSON that names it; a reader about to
    read that JSON when the writer publishes one must not find the JSON newer than its arrays."""
    path = tmp_path / "store"
    writer = EpisodeStore.create(path, chunk_frames=4, durable=False)
    for i in range(2):
        writer.append(make_episode(i))
    reader = EpisodeStore.open(path, mode="r")
    values = np.linspace(0, 1, reader.record(1).length, dtype=np.float32)
    real_info = reader._arrays._episode_info
    pending: list[Callable[[], None]] = [lambda: writer.write_rewards(1, "score", values)]

    def episode_info(index: int) -> Any:
        if index == 1:
            while pending:
                pending.pop()()
        return real_info(index)

    monkeypatch.setattr(reader._arrays, "_episode_info", episode_info)
    assert reader.refresh() == 2
    assert not pending, "the writer did not run inside the refresh"
    assert reader.damaged == {}
    assert_same_episode(reader.load_episode(0), make_episode(0))
    got = reader.load_episode(1)
    score = got.rewards.pop("score", None)  # this view may hold the trace or not, but whole
    assert score is None or score.tobytes() == values.tobytes()
    assert_same_episode(got, make_episode(1))
    assert reader.damaged == {}
    assert reader.refresh() == 2 and reader.record(1).rewards[-1] == "score"
    assert reader.load_episode(1).rewards["score"].tobytes() == values.tobytes()
    writer.close()
    reader.close()
