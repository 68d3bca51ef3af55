"""A damaged store never loses an intact episode: the damage matrix.

Each case builds a small store (four synthetic episodes, 4-frame chunks),
damages it one way, and then checks, by content hash, what issue 18 asks:
`store verify` names the damaged episodes (exit 3), the next append succeeds,
and every intact episode comes back byte for byte from the store after the
append, from a LeRobotDataset export and from behaviour cloning's loader; the
damaged ones are kept (quarantined), never cut off with what follows them.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

os.environ["HF_HUB_OFFLINE"] = "1"

import numpy as np
import pytest
import zarr
from zarr.storage import LocalStore

from app.cli import main
from recordings import layout
from recordings.episode import Episode
from recordings.errors import DamagedEpisodeError
from recordings.quarantine import CHUNK_DIR
from recordings.lerobot_export import load_export_sidecar
from recordings.selection import EpisodeFilter
from recordings.store import EpisodeStore
from tests.recordings.store_testdata import make_episode

CHUNK = 4
# Episode ends 9, 20, 30, 37: episode 1 holds whole chunks 3 and 4; the last end is mid-chunk,
# so the next append rewrites (and must first decode) the chunk the store ends in.
LENGTHS = [9, 11, 10, 7]
NEXT_LENGTH = 6
FPS = 30


def episode(i: int) -> Episode:
    length = LENGTHS[i] if i < len(LENGTHS) else NEXT_LENGTH
    ep = make_episode(i, min_len=length, max_len=length)
    ep.meta.duration_s = float(ep.timestamp[-1] - ep.timestamp[0])  # as the store fills it in
    return ep


ALL = ("meta", "images", "state", "action", "time", "rewards")
TRAINED = ("images", "state", "action")  # what behaviour cloning and a LeRobotDataset keep of an episode


def content_hash(ep: Episode, *, fields: tuple[str, ...] = ALL) -> str:
    h = hashlib.sha256()
    if "meta" in fields:
        h.update(json.dumps(ep.meta.to_json(), sort_keys=True).encode())
    if "images" in fields:
        for name in sorted(ep.images):
            h.update(np.ascontiguousarray(ep.images[name]).tobytes())
    for name, arr in (("state", ep.state), ("action", ep.action), ("time", ep.timestamp)):
        if name in fields:
            h.update(np.ascontiguousarray(arr).tobytes())
    if "rewards" in fields:
        for m in sorted(ep.rewards):
            h.update(ep.rewards[m].tobytes())
    return h.hexdigest()


def build(path: Path) -> dict[int, Episode]:
    with EpisodeStore.create(path, fps=FPS, chunk_frames=CHUNK, durable=False) as store:
        for i in range(len(LENGTHS)):
            store.append(episode(i))
    with EpisodeStore.open(path) as store:
        return {i: store.load_episode(i) for i in range(len(LENGTHS))}


# -- the ways to damage a store -----------------------------------------------------------


def chunk_file(path: Path, key: str, k: int) -> Path:
    array = zarr.open_array(LocalStore(path), path=key, zarr_format=3)
    return layout.chunk_paths(path, array, k * CHUNK, k * CHUNK + 1)[0]


def json_path(path: Path, i: int) -> Path:
    return path / layout.EPISODES_DIR / layout.episode_json_name(i)


def set_end(path: Path, i: int, value: int) -> None:
    zarr.open_array(LocalStore(path), path=layout.EPISODE_ENDS, zarr_format=3)[i] = value


def garble_json(path: Path) -> None:
    p = json_path(path, 1)
    p.write_bytes(p.read_bytes()[:40] + b"\x00\xff garbled")


def wrong_types(path: Path) -> None:
    p = json_path(path, 1)
    info = json.loads(p.read_text())
    info["meta"]["round"] = "three"
    info["meta"]["oracle_success"] = "yes"
    p.write_text(json.dumps(info))


def stale_json(path: Path) -> None:
    json_path(path, 1).write_bytes(json_path(path, 2).read_bytes())  # another episode's JSON in its place


def flip_state_bit(path: Path) -> None:
    state = zarr.open_array(LocalStore(path), path=layout.STATE, zarr_format=3)
    row = state[12].copy()
    row.view(np.uint32)[0] ^= 1 << 9  # one bit of a float in episode 1: decodes fine, reads different
    state[12] = row


def flip_file_byte(path: Path) -> None:
    p = chunk_file(path, layout.camera_key("left"), 4)
    data = bytearray(p.read_bytes())
    data[len(data) // 2] ^= 0x5A
    p.write_bytes(bytes(data))


def truncate(key: str, k: int) -> Callable[[Path], None]:
    def damage(path: Path) -> None:
        p = chunk_file(path, key, k)
        p.write_bytes(p.read_bytes()[:10])

    return damage


def extra_garbage(path: Path) -> None:
    # A stray chunk past the end, where the next episode's frames will go, and files nobody wrote.
    (path / layout.STATE / "c.10.0").write_bytes(os.urandom(64))
    json_path(path, 99).write_text("{not json")
    (path / layout.EPISODES_DIR / "notes.txt").write_text("hello")
    (path / "data" / "junk.bin").write_bytes(os.urandom(100))


def garble_header(path: Path) -> None:
    (path / layout.ACTION / "zarr.json").write_text('{"zarr_format": 3, "node_ty')


@dataclass
class Case:
    name: str
    damage: Callable[[Path], None]
    found: set[int]  # what verify names before the append
    lost: set[int]  # damaged for good: quarantined after the append too
    index_damage: bool = False  # the commit record itself is damaged (restored by the next writer)


CASES = [
    Case("json-garbled", garble_json, {1}, {1}),
    Case("json-missing", lambda p: json_path(p, 1).unlink(), {1}, {1}),
    Case("json-wrong-types", wrong_types, {1}, {1}),
    Case("json-of-another-episode", stale_json, {1}, {1}),
    Case("ends-chunk-deleted", lambda p: (p / layout.EPISODE_ENDS / "c.0").unlink(), set(), set(), True),
    Case("ends-not-monotonic", lambda p: set_end(p, 1, 3), set(), set(), True),
    Case("ends-past-the-data", lambda p: set_end(p, 3, 10**6), set(), set(), True),
    Case("data-chunk-missing", lambda p: chunk_file(p, layout.camera_key("left"), 3).unlink(), {1}, {1}),
    Case("data-bit-flipped", flip_state_bit, {1}, {1}),
    Case("data-file-byte-flipped", flip_file_byte, {1}, {1}),
    Case("camera-chunk-truncated", truncate(layout.camera_key("right"), 4), {1}, {1}),
    Case("tail-action-chunk-truncated", truncate(layout.ACTION, 9), {3}, {3}),
    Case("extra-garbage-files", extra_garbage, set(), set()),
    Case("array-zarr-json-garbled", garble_header, {0, 1, 2, 3}, set()),
]


def append_streamed(path: Path, ep: Episode) -> int:
    with EpisodeStore.open(path, mode="a", durable=False) as store, store.begin_episode(ep.meta) as writer:
        for t in range(len(ep)):
            writer.add_frame(ep.frame(t))
    return writer.index


@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
def test_damage_keeps_every_intact_episode(
    case: Case, tmp_path: Path, capsys: pytest.CaptureFixture[str], caplog: pytest.LogCaptureFixture
) -> None:
    path = tmp_path / "store"
    before = build(path)
    case.damage(path)

    # verify names exactly the damaged episodes, and says so with its exit code
    with EpisodeStore.open(path) as store:
        assert store.num_episodes == len(LENGTHS)  # nothing looks shorter
        report = store.verify()
    assert set(report.damaged) == case.found, [str(d) for d in report.damaged.values()]
    assert bool(report.index_problems) == case.index_damage, report.index_problems
    capsys.readouterr()
    assert main(["store", "verify", str(path)]) == (3 if case.found or case.index_damage else 0)
    out = capsys.readouterr().out
    for i in case.found:
        assert f"DAMAGED episode {i}:" in out

    # the next append succeeds and gets the next index: nothing committed was cut off
    new = episode(len(LENGTHS))
    assert append_streamed(path, new) == len(LENGTHS)
    intact = set(range(len(LENGTHS))) - case.lost
    expected = {i: content_hash(before[i]) for i in intact}
    expected[len(LENGTHS)] = content_hash(new)

    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="recordings"), EpisodeStore.open(path) as store:
        warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
        assert store.num_episodes == len(LENGTHS) + 1
        assert sorted(store.damaged) == sorted(case.lost)
        assert not store.index_problems  # the writer restored the commit record from the episode JSONs
        # readers skip damaged episodes with one line naming them, and refuse them by index
        assert [r.index for r in store.episodes()] == sorted(expected)
        if case.lost:
            assert len(warnings) == 1 and f"damaged episodes {', '.join(map(str, sorted(case.lost)))}" in warnings[0]
            for i in case.lost:
                with pytest.raises(DamagedEpisodeError, match=f"episode {i} is damaged") as refused:
                    store.load_episode(i)
                assert "\n" not in str(refused.value)
        else:
            assert warnings == []
        got = {i: content_hash(store.load_episode(i)) for i in expected}
        assert got == expected
        report = store.verify()
        assert set(report.damaged) == case.lost and set(report.intact) == set(expected)

        # behaviour cloning's selection and loader see exactly the intact episodes, byte for byte
        from policies.actor_critic.bc_train import load_frames

        selected = [r.index for r in store.episodes(EpisodeFilter(aborted=None))]
        assert selected == sorted(expected)
        frames = load_frames(store, selected, cameras=["left", "right"])
        for i in selected:
            rows = frames.episode == i
            loaded = Episode(
                meta=store.record(i).meta,
                images={c: frames.images[c][rows] for c in ("left", "right")},
                state=frames.state[rows],
                action=frames.action[rows],
                timestamp=np.zeros(0),
            )
            want = before[i] if i < len(LENGTHS) else new
            assert content_hash(loaded, fields=TRAINED) == content_hash(want, fields=TRAINED)

    # export: the intact episodes reach the LeRobotDataset unchanged, the damaged ones not at all
    out_dir = tmp_path / "dataset"
    assert main(["store", "export", str(path), "--out", str(out_dir), "--fps", str(FPS)]) == 0
    exported = exported_hashes(out_dir)
    assert exported == {
        i: content_hash(before[i] if i < len(LENGTHS) else new, fields=TRAINED)
        for i in expected
    }


def exported_hashes(root: Path) -> dict[int, str]:
    """Store episode index -> hash of the images, state and action LeRobot's loader gives back."""
    import torch
    from lerobot.datasets.lerobot_dataset import LeRobotDataset

    dataset = LeRobotDataset("local/lrm-robot", root=root)
    sidecar = load_export_sidecar(root)
    frames: dict[int, list[dict]] = {}
    for t in range(len(dataset)):
        item = dataset[t]
        frames.setdefault(int(item["episode_index"]), []).append(item)
    hashes = {}
    for lerobot_index, items in frames.items():
        store_index, meta = sidecar[lerobot_index]

        def pixels(image: torch.Tensor) -> np.ndarray:
            return (image * 255).round().to(torch.uint8).permute(1, 2, 0).numpy()

        ep = Episode(
            meta=meta,
            images={c: np.stack([pixels(x[f"observation.images.{c}"]) for x in items]) for c in ("left", "right")},
            state=np.stack([x["observation.state"].numpy() for x in items]),
            action=np.stack([x["action"].numpy() for x in items]),
            timestamp=np.zeros(0),
        )
        hashes[store_index] = content_hash(ep, fields=TRAINED)
    return hashes


def test_damage_found_only_while_reading_is_quarantined_and_skipped(tmp_path: Path) -> None:
    """No verify first: a bit flip is caught by the checksum when an episode is read, and every
    reader after that (training, export, a writer's record) leaves the episode out."""
    path = tmp_path / "store"
    build(path)
    flip_state_bit(path)
    with EpisodeStore.open(path) as store:
        assert sorted(store.damaged) == []  # nothing structural: only the bytes can tell
        from policies.actor_critic.bc_train import load_frames

        frames = load_frames(store, [0, 1, 2, 3])
        assert sorted(set(frames.episode.tolist())) == [0, 2, 3]
        assert sorted(store.damaged) == [1]
        assert [r.index for r in store.episodes()] == [0, 2, 3]
        with pytest.raises(DamagedEpisodeError, match="episode 1 is damaged .*data/state"):
            list(store.iter_frames(1))
    with EpisodeStore.open(path, mode="a", durable=False) as store:
        with pytest.raises(DamagedEpisodeError):
            store.load_episode(1)  # found by a writer: recorded in the quarantine record
    with EpisodeStore.open(path) as store:
        assert sorted(store.damaged) == [1]


def test_iter_frames_refuses_a_mismatch_after_the_last_frame(tmp_path: Path) -> None:
    path = tmp_path / "store"
    build(path)
    flip_state_bit(path)
    with EpisodeStore.open(path) as store:
        frames = store.iter_frames(1)
        seen = 0
        with pytest.raises(DamagedEpisodeError, match="differ from the checksum written at commit"):
            for _ in frames:
                seen += 1
        assert seen == LENGTHS[1]


def test_an_episode_repaired_by_hand_is_released(tmp_path: Path) -> None:
    """Metadata mended by hand counts at once (it is checked at every open); mended bytes once
    verify has read them again (the quarantine record remembers data damage until then)."""
    path = tmp_path / "store"
    build(path)
    original = json_path(path, 1).read_bytes()
    garble_json(path)
    append_streamed(path, episode(4))  # the writer lists episode 1 in the quarantine record
    assert json.loads((path / "meta" / "quarantine.json").read_text())["episodes"].keys() == {"1"}
    json_path(path, 1).write_bytes(original)  # restored from a backup
    with EpisodeStore.open(path) as store:
        assert store.damaged == {} and len(store.episodes()) == 5

    state_chunk = chunk_file(path, layout.STATE, 3).read_bytes()
    flip_state_bit(path)
    assert main(["store", "verify", str(path)]) == 3
    chunk_file(path, layout.STATE, 3).write_bytes(state_chunk)  # restored from a backup
    with EpisodeStore.open(path) as store:
        assert sorted(store.damaged) == [1]  # until it is read again
        report = store.verify()
        assert report.ok and report.intact == [0, 1, 2, 3, 4] and "no episodes" in report.recorded
        assert store.damaged == {} and [r.index for r in store.episodes()] == [0, 1, 2, 3, 4]
    with EpisodeStore.open(path) as store:
        assert store.damaged == {}


def test_undecodable_tail_chunk_is_set_aside_not_deleted(tmp_path: Path) -> None:
    path = tmp_path / "store"
    build(path)
    truncated = chunk_file(path, layout.ACTION, 9)
    truncate(layout.ACTION, 9)(path)
    damaged_bytes = truncated.read_bytes()
    append_streamed(path, episode(4))  # rewrites that chunk: its old bytes are kept aside
    kept = list((path / CHUNK_DIR).iterdir())
    assert len(kept) == 1 and kept[0].read_bytes() == damaged_bytes
    with EpisodeStore.open(path) as store:
        assert sorted(store.damaged) == [3]
        assert "set aside" in store.damaged[3].why


def test_old_store_without_checksums_reads_as_unverified(tmp_path: Path) -> None:
    path = tmp_path / "store"
    before = build(path)
    for i in range(len(LENGTHS)):
        info = json.loads(json_path(path, i).read_text())
        del info["checksums"]  # what a store written before checksums looks like
        json_path(path, i).write_text(json.dumps(info))
    with EpisodeStore.open(path) as store:
        report = store.verify()
        assert report.ok and report.unverified == [0, 1, 2, 3] and report.intact == []
        assert content_hash(store.load_episode(2)) == content_hash(before[2])
    assert main(["store", "verify", str(path)]) == 0


def test_store_info_reports_damage(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "store"
    build(path)
    garble_json(path)
    set_end(path, 2, 5)
    assert main(["store", "info", str(path), "--json"]) == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary["committed"] == 4 and summary["episodes"] == 3
    assert [d["index"] for d in summary["damaged"]] == [1]
    assert summary["index_problems"] == ["meta/episode_ends[2] is 5, the episode JSONs say 30"]


def test_reward_traces_written_later_keep_their_episode_verifiable(tmp_path: Path) -> None:
    path = tmp_path / "store"
    build(path)
    with EpisodeStore.open(path, mode="a", durable=False) as store:
        store.write_rewards(1, "progress", np.linspace(0, 1, LENGTHS[1]))  # a new modality
        store.write_rewards(0, "progress", np.zeros(LENGTHS[0]))  # replacing one
        assert store.verify().intact == [0, 1, 2, 3]
    rewards = zarr.open_array(LocalStore(path), path=layout.reward_key("progress"), zarr_format=3)
    rewards[10] = 7.0  # a value changed behind the store's back
    with EpisodeStore.open(path) as store:
        report = store.verify()
        assert list(report.damaged) == [1] and report.damaged[1].where == layout.reward_key("progress")
