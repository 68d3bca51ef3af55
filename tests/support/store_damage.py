"""The store damage matrix: a small store, the ways to damage it, and what each must leave intact.

Shared by `tests/recordings/test_store_damage.py` (which asserts every case)
and `benchmarks/store_damage.py` (which counts outcomes, for the reliability
benchmark). A case names the episodes `verify` must find damaged right after
the damage (`found`) and those that stay damaged for good (`lost`); every other
episode must come back byte for byte, by content hash.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import zarr
from zarr.storage import LocalStore

from recordings import layout
from recordings.episode import Episode
from recordings.lerobot_export import load_export_sidecar
from recordings.store import EpisodeStore
from tests.recordings.store_testdata import CAMERAS, make_episode

CHUNK = 4
# Episode ends 9, 20, 30, 37: episode 1 holds whole chunks 3 and 4; the last end is mid-chunk,
# so the next append rewrites (and must first decode) the chunk the store ends in.
LENGTHS = [9, 11, 10, 7]
NEXT_LENGTH = 6
FPS = 30

ALL = ("meta", "images", "state", "action", "time", "rewards")
TRAINED = ("images", "state", "action")  # what behaviour cloning and a LeRobotDataset keep of an episode


def episode(i: int) -> Episode:
    """Episode i of the matrix store (i = len(LENGTHS): the one appended after the damage)."""
    length = LENGTHS[i] if i < len(LENGTHS) else NEXT_LENGTH
    ep = make_episode(i, min_len=length, max_len=length)
    ep.meta.duration_s = float(ep.timestamp[-1] - ep.timestamp[0])  # as the store fills it in
    return ep


def content_hash(ep: Episode, *, fields: tuple[str, ...] = ALL) -> str:
    """sha256 over the chosen parts of an episode: equal hashes, equal bytes."""
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
    """Create the matrix store at `path`; returns its episodes as read back."""
    with EpisodeStore.create(path, fps=FPS, chunk_frames=CHUNK, durable=False) as store:
        for i in range(len(LENGTHS)):
            store.append(episode(i))
    with EpisodeStore.open(path) as store:
        return {i: store.load_episode(i) for i in range(len(LENGTHS))}


def exported_hashes(root: Path) -> dict[int, str]:
    """Store episode index -> hash of the images, state and action LeRobot's loader gives back."""
    import torch  # imported here: LeRobot takes seconds to import, and only the export checks need it
    from lerobot.datasets.lerobot_dataset import LeRobotDataset

    def pixels(image: torch.Tensor) -> np.ndarray:
        """Loader image (float32 CHW in [0, 1]) -> the uint8 HWC bytes it was made from."""
        return (image * 255).round().to(torch.uint8).permute(1, 2, 0).numpy()

    dataset = LeRobotDataset("local/lrm-robot", root=root)  # the export's default repo id
    frames: dict[int, list[dict]] = {}
    for t in range(len(dataset)):
        item = dataset[t]
        frames.setdefault(int(item["episode_index"]), []).append(item)
    hashes = {}
    for lerobot_index, (store_index, meta) in load_export_sidecar(root).items():
        items = frames[lerobot_index]
        ep = Episode(
            meta=meta,
            images={c: np.stack([pixels(x[f"observation.images.{c}"]) for x in items]) for c in CAMERAS},
            state=np.stack([x["observation.state"].numpy() for x in items]),
            action=np.stack([x["action"].numpy() for x in items]),
            timestamp=np.zeros(0),
        )
        hashes[store_index] = content_hash(ep, fields=TRAINED)
    return hashes


def append_streamed(path: Path, ep: Episode) -> int:
    """The next append, frame by frame as a rollout records it; returns its index."""
    with EpisodeStore.open(path, mode="a", durable=False) as store, store.begin_episode(ep.meta) as writer:
        for t in range(len(ep)):
            writer.add_frame(ep.frame(t))
    return writer.index


# -- the ways to damage it ---------------------------------------------------------------


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
    found: set[int]  # what verify names right after the damage
    lost: set[int]  # damaged for good: still quarantined after the next append
    index_damage: bool = False  # the commit record itself is damaged (the next writer restores it)


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
