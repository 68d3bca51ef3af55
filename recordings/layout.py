"""On-disk layout of an episode store and the small file-system primitives it needs.

    <store>/zarr.json                  root group; attributes: format tag, version, fps, schema
    <store>/data/camera/<name>/        uint8   (N, H, W, 3)   one array per camera
    <store>/data/state/                float32 (N, S)
    <store>/data/action/               float32 (N, A)
    <store>/data/timestamp/            float64 (N,)
    <store>/data/reward/<modality>/    float32 (N,)  NaN = no reward at that frame
    <store>/data/real/<name>/          bool    (N,)  camera <name>'s image at that frame was rendered
                                                     (False: a black placeholder; see recordings.episode)
    <store>/meta/episode_ends/         int64   (E,)  fill 0; the commit record
    <store>/meta/episodes/000012.json  per-episode metadata (written before its end index)
    <store>/meta/quarantine.json       damaged committed episodes readers skip (recordings.integrity)
    <store>/meta/quarantine/           undecodable chunk files set aside by a writer
    <store>/writer.lock                flock'ed by the single writer

An episode JSON holds {"format": "lrm-robot-episode", "index", "start", "end",
"length", "rewards": [modalities recorded], "real": {camera: frames with a real
image} (absent in episodes committed before the mark was kept: their frames
are read as they are), "meta": EpisodeMeta.to_json(),
"checksums": {"algorithm", "arrays": {array key: digest of the episode's rows}}};
its start/end must agree with episode_ends (`recordings.recovery` settles a
disagreement), and its checksums tell whether its frames are still intact.

Frame arrays are flat over all episodes (Diffusion Policy's replay-buffer
layout): episode i spans [episode_ends[i-1], episode_ends[i]). Chunk keys use
'.' as separator so each array is one flat directory, which keeps directory
fsyncs cheap and listings short.
"""

from __future__ import annotations

import json
import os
import shutil
import uuid
from collections.abc import Iterable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import zarr
from zarr.codecs import BloscCodec
from zarr.storage import LocalStore

from recordings.errors import NotAStoreError, StoreExistsError
from recordings.schema import StoreSchema

FORMAT_TAG = "lrm-robot-episodes"
FORMAT_VERSION = 1
EPISODE_JSON_TAG = "lrm-robot-episode"

DATA = "data"
CAMERA_DIR = "data/camera"
REWARD_DIR = "data/reward"
REAL_DIR = "data/real"
STATE = "data/state"
ACTION = "data/action"
TIMESTAMP = "data/timestamp"
META = "meta"
EPISODE_ENDS = "meta/episode_ends"
EPISODES_DIR = "meta/episodes"
LOCK_FILE = "writer.lock"

# Suffix of interrupted atomic writes: zarr's LocalStore uses "<key>.<uuid>.partial",
# and so do our JSON writes, so one sweep removes both.
PARTIAL_SUFFIX = ".partial"

ENDS_CHUNK = 4096
DEFAULT_CHUNK_FRAMES = 10


def camera_key(name: str) -> str:
    return f"{CAMERA_DIR}/{name}"


def reward_key(modality: str) -> str:
    return f"{REWARD_DIR}/{modality}"


def real_key(camera: str) -> str:
    return f"{REAL_DIR}/{camera}"


def episode_json_name(index: int) -> str:
    return f"{index:06d}.json"


def episode_json_index(name: str) -> int | None:
    """The index in an episode JSON file name, or None for any other file."""
    stem, dot, ext = name.partition(".")
    if ext != "json" or not stem.isdigit():
        return None
    return int(stem)


@dataclass(frozen=True)
class Compression:
    """Blosc settings for a class of arrays.

    The image default (lz4, level 1, bit-shuffle) is what keeps three 480x640
    cameras well above real time on two cores; bit-shuffle is what makes lz4
    compress noisy uint8 pixels at all (byte shuffle is a no-op at typesize 1).
    """

    cname: str = "lz4"
    clevel: int = 1
    shuffle: str = "bitshuffle"  # "noshuffle" | "shuffle" | "bitshuffle"

    def codec(self, typesize: int) -> BloscCodec:
        return BloscCodec(cname=self.cname, clevel=self.clevel, shuffle=self.shuffle, typesize=typesize)

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_json(cls, data: dict[str, Any] | None) -> Compression:
        return cls(**data) if data else cls()


IMAGE_COMPRESSION = Compression("lz4", 1, "bitshuffle")
VECTOR_COMPRESSION = Compression("zstd", 3, "shuffle")

_KEY_ENCODING = {"name": "default", "separator": "."}


def create_frame_array(
    group_store: LocalStore,
    key: str,
    *,
    shape: tuple[int, ...],
    dtype: Any,
    chunk_frames: int,
    compression: Compression,
    fill_value: Any,
) -> zarr.Array:
    """Create (or replace a leftover of) one flat per-frame array, chunked along time only."""
    dtype = np.dtype(dtype)
    return zarr.create_array(
        group_store,
        name=key,
        shape=shape,
        dtype=dtype,
        chunks=(chunk_frames, *shape[1:]),
        compressors=compression.codec(dtype.itemsize),
        fill_value=fill_value,
        chunk_key_encoding=_KEY_ENCODING,
        overwrite=True,
    )


def create_ends_array(group_store: LocalStore) -> zarr.Array:
    """episode_ends: fill 0 so an entry resized-in but never written reads as torn."""
    return zarr.create_array(
        group_store,
        name=EPISODE_ENDS,
        shape=(0,),
        dtype=np.int64,
        chunks=(ENDS_CHUNK,),
        compressors=VECTOR_COMPRESSION.codec(8),
        fill_value=0,
        chunk_key_encoding=_KEY_ENCODING,
        overwrite=True,
    )


def open_array(zstore: LocalStore, key: str) -> zarr.Array | None:
    """Open an array freshly (re-reading its zarr.json), or None if it is absent or its zarr.json is damaged."""
    try:
        return zarr.open_array(zstore, path=key, zarr_format=3)
    except (FileNotFoundError, zarr.errors.NodeNotFoundError):
        return None
    except Exception:  # a damaged zarr.json: whatever zarr's metadata parser raises
        return None


def rebuild_array_header(root: Path, key: str, **spec: Any) -> zarr.Array:
    """Write a fresh zarr.json for frame array `key` (spec as for create_frame_array), keeping its chunk files.

    zarr's own create would delete the chunks, so the header is made in a
    scratch folder and moved in with one rename.
    """
    scratch = root / f".rebuild-{uuid.uuid4().hex[:12]}{PARTIAL_SUFFIX}"
    try:
        create_frame_array(LocalStore(scratch), key, **spec)
        (root / key).mkdir(parents=True, exist_ok=True)
        os.replace(scratch / key / "zarr.json", root / key / "zarr.json")
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    return zarr.open_array(LocalStore(root), path=key, zarr_format=3)


def chunk_files_from(root: Path, array: zarr.Array, start: int) -> list[Path]:
    """Chunk files of a time-chunked array that hold only frames at or after `start`."""
    c = array.chunks[0]
    found = []
    base = root / array.path
    try:
        names = os.listdir(base)
    except FileNotFoundError:
        return []
    for name in names:
        parts = name.split(".")
        if len(parts) == array.ndim + 1 and parts[0] == "c" and all(p.isdigit() for p in parts[1:]):
            if int(parts[1]) * c >= start:
                found.append(base / name)
    return found


def chunk_paths(root: Path, array: zarr.Array, start: int, stop: int) -> list[Path]:
    """Files holding frames [start, stop) of a time-chunked array."""
    c = array.chunks[0]
    zeros = (0,) * (array.ndim - 1)
    base = root / array.path
    return [
        base / array.metadata.encode_chunk_key((k, *zeros))
        for k in range(start // c, (max(stop, start + 1) - 1) // c + 1)
    ]


def fsync_paths(paths: Iterable[Path]) -> None:
    """fsync files (those deleted meanwhile are skipped) and then their directories.

    A rename is only durable once its directory is synced, and every zarr write
    is a rename, so the directories matter as much as the files.
    """
    dirs: set[Path] = set()
    for path in paths:
        try:
            fd = os.open(path, os.O_RDONLY)
        except FileNotFoundError:
            dirs.add(path.parent)
            continue
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
        dirs.add(path.parent)
    for d in dirs:
        fsync_dir(d)


def fsync_dir(path: Path) -> None:
    try:
        fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    except FileNotFoundError:
        return
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def write_json_atomic(path: Path, data: dict[str, Any], *, durable: bool) -> None:
    """Write JSON so that readers see the old file or the new one, never a torn one."""
    tmp = path.with_name(f"{path.name}.{uuid.uuid4().hex}{PARTIAL_SUFFIX}")
    payload = json.dumps(data, indent=1, sort_keys=False).encode()
    try:
        with open(tmp, "wb") as f:
            f.write(payload)
            if durable:
                f.flush()
                os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    if durable:
        fsync_dir(path.parent)


def read_json(path: Path) -> dict[str, Any] | None:
    try:
        with open(path, "rb") as f:
            data = json.load(f)
    except (FileNotFoundError, ValueError):
        return None
    return data if isinstance(data, dict) else None


def read_root_attrs(root: Path) -> dict[str, Any] | None:
    """Root group attributes if `root` holds a store of our format, else None."""
    doc = read_json(root / "zarr.json")
    if not doc or doc.get("node_type") != "group":
        return None
    attrs = doc.get("attributes") or {}
    return attrs if attrs.get("format") == FORMAT_TAG else None


def partial_files(root: Path) -> list[Path]:
    """Leftovers of atomic writes interrupted by a kill (files, and scratch folders of `rebuild_array_header`)."""
    found = []
    for dirpath, dirnames, filenames in os.walk(root):
        scratch = [d for d in dirnames if d.endswith(PARTIAL_SUFFIX)]
        dirnames[:] = [d for d in dirnames if d not in scratch]
        found.extend(Path(dirpath) / n for n in [*scratch, *filenames] if n.endswith(PARTIAL_SUFFIX))
    return found


def remove(path: Path) -> None:
    """Delete a file or a folder, whichever `path` is."""
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path, ignore_errors=True)
    else:
        path.unlink(missing_ok=True)


def tree_size(root: Path) -> int:
    total = 0
    for dirpath, _dirnames, filenames in os.walk(root):
        for n in filenames:
            try:
                total += os.stat(os.path.join(dirpath, n)).st_size
            except FileNotFoundError:
                pass
    return total


def schema_array_specs(schema: StoreSchema, attrs: dict[str, Any], *, length: int) -> dict[str, dict[str, Any]]:
    """create_frame_array arguments of the arrays every frame fills: one per camera, state, action, timestamp."""
    comp = attrs.get("compression") or {}
    images = Compression.from_json(comp.get("images"))
    vectors = Compression.from_json(comp.get("vectors"))
    specs: list[tuple[str, tuple[int, ...], Any, Compression]] = [
        (camera_key(name), (length, h, w, 3), np.uint8, images) for name, (h, w) in schema.cameras.items()
    ]
    specs += [
        (STATE, (length, schema.state_dim), np.float32, vectors),
        (ACTION, (length, schema.action_dim), np.float32, vectors),
        (TIMESTAMP, (length,), np.float64, vectors),
    ]
    return {
        key: {
            "shape": shape,
            "dtype": dtype,
            "chunk_frames": int(attrs["chunk_frames"]),
            "compression": compression,
            "fill_value": 0,
        }
        for key, shape, dtype, compression in specs
    }


def reward_array_spec(attrs: dict[str, Any], *, length: int) -> dict[str, Any]:
    """create_frame_array arguments of a reward array: NaN (not queried) wherever nothing was written."""
    return {
        "shape": (length,),
        "dtype": np.float32,
        "chunk_frames": int(attrs["chunk_frames"]),
        "compression": Compression.from_json((attrs.get("compression") or {}).get("vectors")),
        "fill_value": float("nan"),
    }


def real_array_spec(attrs: dict[str, Any], *, length: int) -> dict[str, Any]:
    """create_frame_array arguments of a camera's real-image mark. Fill False: frames of episodes
    committed before the array existed are not marked real by it (their JSON has no "real" entry,
    and readers take them as they are)."""
    return {
        "shape": (length,),
        "dtype": np.bool_,
        "chunk_frames": int(attrs["chunk_frames"]),
        "compression": Compression.from_json((attrs.get("compression") or {}).get("vectors")),
        "fill_value": False,
    }


def create_schema_arrays(
    zstore: LocalStore, schema: StoreSchema, attrs: dict[str, Any], *, length: int
) -> dict[str, zarr.Array]:
    """The arrays every frame fills: one per camera, state, action, timestamp."""
    specs = schema_array_specs(schema, attrs, length=length)
    return {key: create_frame_array(zstore, key, **spec) for key, spec in specs.items()}


def frame_array_dirs(root: Path) -> list[Path]:
    """Directories of frame arrays (not the bare groups a new store starts with)."""
    dirs = [root / k for k in (STATE, ACTION, TIMESTAMP) if (root / k).exists()]
    for group in (CAMERA_DIR, REWARD_DIR, REAL_DIR):
        dirs += [p for p in (root / group).glob("*") if p.is_dir()]
    return dirs


def check_create_target(root: Path) -> None:
    """A store may be created where nothing is, or in an empty directory."""
    if not root.exists():
        return
    if root.is_dir() and not any(root.iterdir()):
        return
    if root.is_dir() and read_root_attrs(root) is not None:
        raise StoreExistsError(f"{root} already holds an episode store; open it with EpisodeStore.open(path, 'a')")
    raise NotAStoreError(f"{root} is not an lrm-robot episode store (no zarr.json with format tag)")


def build_store(root: Path, attrs: dict[str, Any], schema: StoreSchema | None, *, durable: bool) -> None:
    """Build the empty store beside `root`, then rename it into place (atomic: no half-made store)."""
    root.parent.mkdir(parents=True, exist_ok=True)
    tmp = root.parent / f".{root.name}.creating-{uuid.uuid4().hex[:12]}"
    try:
        zstore = LocalStore(tmp)
        zarr.open_group(zstore, mode="w", zarr_format=3, attributes=attrs)
        for group in (DATA, CAMERA_DIR, REWARD_DIR, REAL_DIR, META):
            zarr.open_group(zstore, path=group, mode="w", zarr_format=3)
        create_ends_array(zstore)
        (tmp / EPISODES_DIR).mkdir(parents=True)
        if schema is not None:
            create_schema_arrays(zstore, schema, attrs, length=0)
        if durable:
            for dirpath, _dirs, files in os.walk(tmp):
                fsync_paths(Path(dirpath) / f for f in files)
                fsync_dir(Path(dirpath))
        try:
            os.rename(tmp, root)  # replaces an empty directory, fails on a non-empty one
        except OSError:
            check_create_target(root)
            raise
        if durable:
            fsync_dir(root.parent)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
