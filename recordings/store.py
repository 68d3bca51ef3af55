"""The episode store: append-only, crash-safe recordings in Zarr v3 on local disk.

Layout (see `recordings.layout`): flat per-frame arrays over all episodes plus
`meta/episode_ends`, as in Diffusion Policy's replay buffer, and one small JSON
file of attributes per episode.

Commit protocol. An episode becomes visible only when its end index is
written, and that is written last:

1. frames: the arrays are resized past the committed end and whole chunks are
   written (each chunk file is replaced atomically by zarr's LocalStore:
   temporary `.partial` file + rename);
2. the episode JSON (temporary file + os.replace);
3. with `durable=True`: fsync of the chunk files, array metadata, the JSON and
   their directories, so that power loss cannot reorder steps 1-2 after 4;
4. `episode_ends` grows by one entry (it reads as the fill value 0 = torn),
   then the entry is written: this single chunk replace is the commit;
5. with `durable=True`: fsync of `episode_ends`.

A writer killed at any point leaves every earlier episode intact; readers
trust only the valid prefix of `episode_ends` (`recordings.recovery`), and the
next writer truncates the torn tail when it opens the store.

Concurrency: one writer (an flock on `writer.lock`; a second gets
StoreLockedError), any number of readers in other processes. A reader's view
is fixed until `refresh()`. A store object is not thread-safe.
"""

from __future__ import annotations

import asyncio
import copy
import dataclasses
import logging
import math
import os
import shutil
from collections.abc import Collection, Iterable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Any, Literal

import numpy as np
import zarr
from zarr.core.sync import sync
from zarr.storage import LocalStore

from recordings import layout
from recordings.episode import Episode, EpisodeMeta, Frame, utc_now_iso
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
from recordings.layout import DEFAULT_CHUNK_FRAMES, IMAGE_COMPRESSION, VECTOR_COMPRESSION, Compression
from recordings.lock import WriterLock
from recordings.recovery import committed_prefix, truncate_tail
from recordings.schema import (
    StoreSchema,
    check_meta,
    schema_from_episode,
    validate_episode,
    validate_reward_trace,
)
from recordings.writer import EpisodeWriter, write_block

log = logging.getLogger(__name__)

__all__ = ["UNSET", "EpisodeRecord", "EpisodeStore"]


class _Unset:
    """Filter value matching episodes whose field is None (e.g. no operator verdict yet)."""

    def __repr__(self) -> str:
        return "UNSET"


UNSET: Any = _Unset()


@dataclass(frozen=True)
class EpisodeRecord:
    """A committed episode: its index, attributes and frame range [start, end) in the flat arrays."""

    index: int
    meta: EpisodeMeta
    start: int
    end: int
    rewards: tuple[str, ...] = ()  # reward modalities recorded in this episode

    @property
    def length(self) -> int:
        return self.end - self.start


def _matches(value: Any, wanted: Any) -> bool:
    if wanted is None:
        return True
    if wanted is UNSET:
        return value is None
    if isinstance(wanted, Collection) and not isinstance(wanted, str):
        return value in wanted
    return bool(value == wanted)


class EpisodeStore:
    """Append-only episode store; build one with `EpisodeStore.create` or `EpisodeStore.open`."""

    def __init__(self, root: Path, mode: Literal["r", "a"], durable: bool) -> None:
        # Private: use create() or open(), which check the path and take the lock.
        self._root = root
        self._mode = mode
        self.durable = durable
        self._zstore = LocalStore(root, read_only=(mode == "r"))
        self._lock: WriterLock | None = None
        self._writer: EpisodeWriter | None = None
        self._attrs: dict[str, Any] = {}
        self._schema: StoreSchema | None = None
        self._ends_array: zarr.Array | None = None
        self._arrays: dict[str, zarr.Array] = {}
        self._records: list[EpisodeRecord] = []
        self._num_frames = 0
        self._info_cache: dict[int, tuple[tuple[int, int, int], dict[str, Any], EpisodeMeta]] = {}

    # -- creating and opening ----------------------------------------------------------

    @classmethod
    def create(
        cls,
        path: str | os.PathLike[str],
        *,
        fps: float | None = None,
        cameras: Mapping[str, tuple[int, int]] | None = None,
        state_dim: int | None = None,
        action_dim: int | None = None,
        chunk_frames: int = DEFAULT_CHUNK_FRAMES,
        image_compression: Compression = IMAGE_COMPRESSION,
        vector_compression: Compression = VECTOR_COMPRESSION,
        durable: bool = True,
    ) -> EpisodeStore:
        """Create a new store and open it for appending.

        The schema (cameras name -> (H, W), state_dim, action_dim) is given
        here, all three together, or taken from the first committed episode.
        `chunk_frames` frames make one chunk of every frame array. The store is
        built in a temporary sibling directory and renamed into place, so a
        crash never leaves a half-created store at `path`.
        """
        root = Path(path)
        layout.check_create_target(root)
        schema = _create_schema(cameras, state_dim, action_dim)
        if isinstance(chunk_frames, bool) or not isinstance(chunk_frames, int) or chunk_frames < 1:
            raise StoreError(f"chunk_frames must be a positive integer, got {chunk_frames!r}")
        if fps is not None and not (isinstance(fps, (int, float)) and math.isfinite(fps) and fps > 0):
            raise StoreError(f"fps must be a positive number or None, got {fps!r}")
        attrs: dict[str, Any] = {
            "format": layout.FORMAT_TAG,
            "format_version": layout.FORMAT_VERSION,
            "fps": None if fps is None else float(fps),
            "chunk_frames": chunk_frames,
            "cameras": None,
            "state_dim": None,
            "action_dim": None,
            "schema_from": None,
            "compression": {"images": image_compression.to_json(), "vectors": vector_compression.to_json()},
            "created": utc_now_iso(),
        }
        if schema is not None:
            attrs.update(schema.to_attrs(), schema_from="create")
        layout.build_store(root, attrs, schema, durable=durable)
        log.info("created episode store %s", root)
        return cls._open_existing(root, "a", durable)

    @classmethod
    def open(
        cls,
        path: str | os.PathLike[str],
        mode: Literal["r", "a"] = "r",
        *,
        durable: bool = True,
        **create_options: Any,
    ) -> EpisodeStore:
        """Open a store: mode 'r' reads (never writes or repairs); 'a' appends, creating it if missing.

        In mode 'a' the writer lock is taken and a torn tail left by a killed
        writer is repaired. `create_options` (see `create`) apply only when
        the store is created here.
        """
        if mode not in ("r", "a"):
            raise StoreError(f"mode must be 'r' or 'a', got {mode!r}")
        root = Path(path)
        if not root.exists() or (mode == "a" and root.is_dir() and not any(root.iterdir())):
            if mode == "r":
                raise StoreNotFoundError(f"{root} does not exist (no episode store to open read-only)")
            try:
                return cls.create(root, durable=durable, **create_options)
            except StoreExistsError:
                pass  # created by someone else meanwhile
        return cls._open_existing(root, mode, durable)

    @classmethod
    def _open_existing(cls, root: Path, mode: Literal["r", "a"], durable: bool) -> EpisodeStore:
        attrs = layout.read_root_attrs(root) if root.is_dir() else None
        if attrs is None:
            raise NotAStoreError(f"{root} is not an lrm-robot episode store (no zarr.json with format tag)")
        version = attrs.get("format_version")
        if not isinstance(version, int) or version > layout.FORMAT_VERSION:
            raise StoreError(
                f"{root}: store format version {version!r} is not supported "
                f"(this code reads versions up to {layout.FORMAT_VERSION})"
            )
        store = cls(root, mode, durable)
        if mode == "a":
            store._lock = WriterLock(root / layout.LOCK_FILE, root)
            try:
                store._repair(sweep_partials=True)
            except BaseException:
                store.close()
                raise
        else:
            store.refresh()
        return store

    def close(self) -> None:
        """Release the writer lock; an episode still being recorded is discarded."""
        if self._writer is not None:
            log.warning("closing %s with episode %d still open: discarding it", self._root, self._writer.index)
            self._writer.discard()
        if self._lock is not None:
            self._lock.release()
            self._lock = None

    def __enter__(self) -> EpisodeStore:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"EpisodeStore({str(self._root)!r}, mode={self._mode!r}, episodes={len(self._records)})"

    # -- properties ---------------------------------------------------------------------

    @property
    def path(self) -> Path:
        return self._root

    @property
    def mode(self) -> str:
        return self._mode

    @property
    def schema(self) -> StoreSchema | None:
        return self._schema

    @property
    def cameras(self) -> dict[str, tuple[int, int]]:
        """Camera name -> (H, W); empty until the schema is fixed."""
        return dict(self._schema.cameras) if self._schema else {}

    @property
    def state_dim(self) -> int | None:
        return self._schema.state_dim if self._schema else None

    @property
    def action_dim(self) -> int | None:
        return self._schema.action_dim if self._schema else None

    @property
    def fps(self) -> float | None:
        return self._attrs.get("fps")

    @property
    def chunk_frames(self) -> int:
        return int(self._attrs["chunk_frames"])

    @property
    def num_episodes(self) -> int:
        return len(self._records)

    @property
    def num_frames(self) -> int:
        return self._num_frames

    def __len__(self) -> int:
        return len(self._records)

    def size_bytes(self) -> int:
        """Bytes on disk under the store directory (everything, including any uncommitted tail)."""
        return layout.tree_size(self._root)

    def export_lerobot(self, out_dir, **options):
        """Export episodes to a LeRobotDataset; see recordings.lerobot_export.export_lerobot."""
        from recordings.lerobot_export import export_lerobot  # LeRobot takes seconds to import

        return export_lerobot(self, out_dir, **options)

    # -- reading ------------------------------------------------------------------------

    def refresh(self) -> int:
        """Re-read the committed episodes and array metadata from disk; returns the episode count.

        Zarr caches an array's shape in its Array object, so a reader sees new
        episodes only after this. Order matters: episode_ends first, then the
        arrays (a writer grows them before committing), then the JSONs.
        """
        attrs = layout.read_root_attrs(self._root)
        if attrs is None:
            raise NotAStoreError(f"{self._root} is not an lrm-robot episode store (no zarr.json with format tag)")
        self._attrs = attrs
        self._schema = StoreSchema.from_attrs(attrs)
        ends_array = layout.open_array(self._zstore, layout.EPISODE_ENDS)
        if ends_array is None:
            raise NotAStoreError(f"{self._root} is not an lrm-robot episode store (no {layout.EPISODE_ENDS} array)")
        ends = ends_array[:] if ends_array.shape[0] else np.zeros(0, np.int64)
        arrays: dict[str, zarr.Array] = {}
        data_len = 0
        if self._schema is not None:
            core = [layout.camera_key(n) for n in self._schema.cameras] + [
                layout.STATE,
                layout.ACTION,
                layout.TIMESTAMP,
            ]
            opened = {key: layout.open_array(self._zstore, key) for key in core}
            if all(a is not None for a in opened.values()):
                arrays.update(opened)  # type: ignore[arg-type]
                data_len = min(a.shape[0] for a in arrays.values())
        for modality in sorted(_listdir(self._root / layout.REWARD_DIR)):
            arr = layout.open_array(self._zstore, layout.reward_key(modality))
            if arr is not None:
                arrays[layout.reward_key(modality)] = arr
        reward_lens = {k.rsplit("/", 1)[1]: a.shape[0] for k, a in arrays.items() if k.startswith(layout.REWARD_DIR)}
        infos, why = committed_prefix(ends, data_len, reward_lens, self._episode_info)
        if why is not None and len(infos) < ends.shape[0]:
            log.debug("%s: %d of %d end entries committed; stopped: %s", self._root, len(infos), ends.shape[0], why)
        self._ends_array = ends_array
        self._arrays = arrays
        self._records = [
            EpisodeRecord(
                index=info["index"],
                meta=self._info_cache[info["index"]][2],
                start=info["start"],
                end=info["end"],
                rewards=tuple(info.get("rewards", ())),
            )
            for info in infos
        ]
        self._num_frames = infos[-1]["end"] if infos else 0
        for i in [i for i in self._info_cache if i >= len(infos)]:
            del self._info_cache[i]
        return len(self._records)

    def _episode_info(self, index: int) -> dict[str, Any] | None:
        """An episode's JSON, cached by (inode, mtime, size) so refresh() re-reads only changed files."""
        path = self._root / layout.EPISODES_DIR / layout.episode_json_name(index)
        try:
            st = os.stat(path)
        except FileNotFoundError:
            return None
        key = (st.st_ino, st.st_mtime_ns, st.st_size)
        cached = self._info_cache.get(index)
        if cached is not None and cached[0] == key:
            return cached[1]
        info = layout.read_json(path)
        if info is None or info.get("format") != layout.EPISODE_JSON_TAG or not isinstance(info.get("meta"), dict):
            return None
        try:
            meta = EpisodeMeta.from_json(info["meta"])
        except (TypeError, ValueError):
            return None
        self._info_cache[index] = (key, info, meta)
        return info

    def record(self, index: int) -> EpisodeRecord:
        """The committed episode `index` (negative counts from the end)."""
        n = len(self._records)
        if isinstance(index, bool) or not isinstance(index, (int, np.integer)) or not -n <= index < n:
            raise EpisodeIndexError(f"episode index {index!r} is out of range ({n} committed episodes)")
        rec = self._records[int(index)]
        return dataclasses.replace(rec, meta=copy.deepcopy(rec.meta))

    def episodes(
        self,
        source: str | Collection[str] | None = None,
        task: str | Collection[str] | None = None,
        round: int | Collection[int] | None = None,  # noqa: A002 - the EpisodeMeta field name
        lrm_verdict: bool | None = None,
        operator_verdict: bool | None = None,
        oracle_success: bool | None = None,
        accepted: bool | None = None,
        aborted: bool | None = None,
        indices: Iterable[int] | None = None,
    ) -> list[EpisodeRecord]:
        """Committed episodes matching every given filter (None = any; UNSET = field is None).

        `source`, `task` and `round` also take a collection of allowed values;
        `accepted` is EpisodeMeta.accepted (the operator's verdict, else the
        LRM's). Results are in episode order.
        """
        records = self._records
        if indices is not None:
            wanted = sorted({self.record(i).index for i in indices})
            records = [self._records[i] for i in wanted]
        filters = (
            ("source", source),
            ("task", task),
            ("round", round),
            ("lrm_verdict", lrm_verdict),
            ("operator_verdict", operator_verdict),
            ("oracle_success", oracle_success),
            ("accepted", accepted),
            ("aborted", aborted),
        )
        active = [(name, want) for name, want in filters if want is not None]
        out = [r for r in records if all(_matches(getattr(r.meta, name), want) for name, want in active)]
        return [dataclasses.replace(r, meta=copy.deepcopy(r.meta)) for r in out]

    def load_episode(self, index: int) -> Episode:
        """A whole committed episode, byte-exact as appended; rewards: the modalities it recorded."""
        rec = self.record(index)
        keys = self._episode_keys(rec)
        data = self._read(keys, rec.start, rec.end)
        return Episode(
            meta=rec.meta,
            images={name: data[layout.camera_key(name)] for name in self.cameras},
            state=data[layout.STATE],
            action=data[layout.ACTION],
            timestamp=data[layout.TIMESTAMP],
            rewards={m: data[layout.reward_key(m)] for m in rec.rewards},
        )

    def iter_frames(self, index: int) -> Iterator[Frame]:
        """Frames of a committed episode, read lazily one time-chunk at a time.

        Each Frame's arrays are views into the chunk just read; copy them to
        keep them past the next chunk. `rewards` holds every modality of the
        episode, NaN where a frame had none (as Episode.frame does).
        """
        rec = self.record(index)
        keys = self._episode_keys(rec)
        arrays = {k: self._arrays[k] for k in keys}  # a snapshot: refresh() may swap self._arrays
        cams = list(self.cameras)
        chunk = self.chunk_frames
        return self._frames(rec, arrays, cams, chunk)

    def _frames(
        self, rec: EpisodeRecord, arrays: dict[str, zarr.Array], cams: list[str], chunk: int
    ) -> Iterator[Frame]:
        a = rec.start
        while a < rec.end:
            b = min(rec.end, (a // chunk + 1) * chunk)
            data = _read_arrays(arrays, a, b)
            for t in range(b - a):
                yield Frame(
                    images={c: data[layout.camera_key(c)][t] for c in cams},
                    state=data[layout.STATE][t],
                    action=data[layout.ACTION][t],
                    timestamp=float(data[layout.TIMESTAMP][t]),
                    rewards={m: float(data[layout.reward_key(m)][t]) for m in rec.rewards},
                )
            a = b

    def _episode_keys(self, rec: EpisodeRecord) -> list[str]:
        keys = [layout.camera_key(n) for n in self.cameras] + [layout.STATE, layout.ACTION, layout.TIMESTAMP]
        return keys + [layout.reward_key(m) for m in rec.rewards]

    def _read(self, keys: list[str], start: int, stop: int) -> dict[str, np.ndarray]:
        return _read_arrays({k: self._arrays[k] for k in keys}, start, stop)

    # -- writing ------------------------------------------------------------------------

    def begin_episode(self, meta: EpisodeMeta) -> EpisodeWriter:
        """Start recording an episode frame by frame (see EpisodeWriter); one at a time."""
        self._require_writable("begin_episode")
        self._writer = EpisodeWriter(self, meta)
        return self._writer

    def append(self, episode: Episode) -> int:
        """Validate and store a whole episode; returns its index. Invalid input writes nothing."""
        self._require_writable("append")
        schema = self._schema if self._schema is not None else schema_from_episode(episode)
        checked = validate_episode(episode, schema)
        meta = copy.deepcopy(checked.meta)
        if meta.duration_s is None:
            meta.duration_s = float(checked.timestamp[-1] - checked.timestamp[0])
        start = self._num_frames
        n = len(checked)
        try:
            if self._schema is None:
                self._fix_schema(schema)
            for modality in checked.rewards:
                self._ensure_reward_array(modality, length=start)
            arrays = self._frame_arrays()
            block: dict[str, np.ndarray] = {layout.camera_key(k): v for k, v in checked.images.items()}
            block[layout.STATE] = checked.state
            block[layout.ACTION] = checked.action
            block[layout.TIMESTAMP] = checked.timestamp
            for key in arrays:
                if key.startswith(layout.REWARD_DIR):
                    modality = key.rsplit("/", 1)[1]
                    block[key] = checked.rewards.get(modality, np.full(n, np.nan, np.float32))
            write_block(self._root, arrays, start, block, durable=self.durable)
        except BaseException as exc:
            self._rollback_tail()
            if isinstance(exc, Exception) and not isinstance(exc, StoreError):
                raise StoreError(f"{self._root}: writing episode {len(self._records)} failed: {exc}") from exc
            raise
        return self._commit_episode(len(self._records), start, start + n, meta, list(checked.rewards))

    def update_meta(self, index: int, **fields: Any) -> EpisodeMeta:
        """Change attributes of a committed episode (e.g. a verdict given later); atomic JSON rewrite."""
        self._require_writable("update_meta", allow_open_episode=True)
        rec = self.record(index)
        known = [f.name for f in dataclasses.fields(EpisodeMeta)]
        for name in fields:
            if name not in known:
                raise InvalidEpisodeError(f"unknown episode field {name!r} (known: {', '.join(known)})")
        try:
            meta = dataclasses.replace(rec.meta, **copy.deepcopy(fields))
        except (TypeError, ValueError) as exc:
            raise InvalidEpisodeError(f"episode {rec.index}: {exc}") from None
        check_meta(meta)
        path = self._root / layout.EPISODES_DIR / layout.episode_json_name(rec.index)
        info = dict(self._info_cache[rec.index][1])
        info["meta"] = meta.to_json()
        layout.write_json_atomic(path, info, durable=self.durable)
        self._remember(rec.index, info, meta)
        self._records[rec.index] = dataclasses.replace(self._records[rec.index], meta=meta)
        return copy.deepcopy(meta)

    def write_rewards(self, index: int, modality: str, values: Any) -> EpisodeRecord:
        """Set the per-frame reward trace `modality` of a committed episode (NaN = not queried).

        For scoring recorded episodes after the fact (`lrm-robot score`). The
        values are written into the flat reward array (created full of NaN if
        the modality is new), synced, and only then is the modality added to
        the episode JSON by an atomic rewrite: that rewrite is the commit of a
        new trace, so a crash before it leaves the episode as it was (the next
        writer keeps the array, NaN elsewhere, which is harmless). Replacing an
        existing trace is atomic per chunk, not per trace: a crash midway can
        leave old and new values mixed (never a torn chunk); write it again.
        Other episodes sharing a chunk keep their values (read-modify-write
        under the writer lock). Not allowed while an episode is being recorded.
        """
        self._require_writable("write_rewards")
        rec = self.record(index)
        checked = validate_reward_trace(modality, values, rec.length)
        key = layout.reward_key(modality)
        try:
            self._ensure_reward_array(modality, length=self._num_frames)
            array = self._arrays[key]
            array[rec.start : rec.end] = checked  # not write_block: that would resize the array to rec.end
            if self.durable:
                chunks = layout.chunk_paths(self._root, array, rec.start, rec.end)
                layout.fsync_paths([*chunks, self._root / key / "zarr.json"])
                layout.fsync_dir(self._root / layout.REWARD_DIR)
        except BaseException as exc:
            if isinstance(exc, Exception) and not isinstance(exc, StoreError):
                raise StoreError(
                    f"{self._root}: writing reward {modality!r} of episode {rec.index} failed: {exc}"
                ) from exc
            raise
        rewards = list(rec.rewards)
        if modality not in rewards:
            path = self._root / layout.EPISODES_DIR / layout.episode_json_name(rec.index)
            info = dict(self._info_cache[rec.index][1])
            rewards.append(modality)
            info["rewards"] = rewards
            layout.write_json_atomic(path, info, durable=self.durable)
            self._remember(rec.index, info, self._info_cache[rec.index][2])
        self._records[rec.index] = dataclasses.replace(self._records[rec.index], rewards=tuple(rewards))
        log.debug("episode %d: wrote reward trace %r (%d frames)", rec.index, modality, rec.length)
        return self.record(rec.index)

    def _require_writable(self, what: str, allow_open_episode: bool = False) -> None:
        if self._mode != "a" or self._lock is None:
            raise ReadOnlyStoreError(f"{self._root}: cannot {what}, the store is open read-only (mode='r') or closed")
        if self._writer is not None and not allow_open_episode:
            raise WriterStateError(
                f"{self._root}: cannot {what} while episode {self._writer.index} is being recorded; "
                "commit or discard it first"
            )

    def _remember(self, index: int, info: dict[str, Any], meta: EpisodeMeta) -> None:
        st = os.stat(self._root / layout.EPISODES_DIR / layout.episode_json_name(index))
        self._info_cache[index] = ((st.st_ino, st.st_mtime_ns, st.st_size), info, meta)

    # Internal interface used by EpisodeWriter ---------------------------------------------

    def _frame_arrays(self) -> dict[str, zarr.Array]:
        """Every per-frame array; all are kept at the same length, written together."""
        return dict(self._arrays)

    def _fix_schema(self, schema: StoreSchema) -> None:
        """The first episode fixes the schema: create the frame arrays, then record it in the attributes."""
        self._arrays.update(layout.create_schema_arrays(self._zstore, schema, self._attrs, length=self._num_frames))
        self._update_attrs({**schema.to_attrs(), "schema_from": "first_episode"})
        self._schema = schema

    def _ensure_reward_array(self, modality: str, *, length: int) -> None:
        """A modality first seen now gets an array of NaN (the fill value) for all earlier frames."""
        key = layout.reward_key(modality)
        if key in self._arrays:
            return
        comp = Compression.from_json((self._attrs.get("compression") or {}).get("vectors"))
        self._arrays[key] = layout.create_frame_array(
            self._zstore,
            key,
            shape=(length,),
            dtype=np.float32,
            chunk_frames=self.chunk_frames,
            compression=comp,
            fill_value=float("nan"),
        )

    def _update_attrs(self, changes: dict[str, Any]) -> None:
        group = zarr.open_group(self._zstore, mode="r+", zarr_format=3)
        group.update_attributes(changes)
        self._attrs.update(changes)
        if self.durable:
            layout.fsync_paths([self._root / "zarr.json"])

    def _commit_episode(self, index: int, start: int, end: int, meta: EpisodeMeta, rewards: list[str]) -> int:
        """Steps 2-5 of the commit protocol (module docstring); the frames are already written."""
        assert index == len(self._records) and start == self._num_frames and end > start
        assert self._ends_array is not None
        info = {
            "format": layout.EPISODE_JSON_TAG,
            "index": index,
            "start": start,
            "end": end,
            "length": end - start,
            "rewards": rewards,
            "meta": meta.to_json(),
        }
        path = self._root / layout.EPISODES_DIR / layout.episode_json_name(index)
        ends = self._ends_array
        try:
            layout.write_json_atomic(path, info, durable=self.durable)
            if self.durable:
                array_dirs = [self._root / a.path for a in self._arrays.values()]
                layout.fsync_paths(d / "zarr.json" for d in array_dirs)
                for parent in {d.parent for d in array_dirs}:  # new arrays are new directory entries
                    layout.fsync_dir(parent)
            ends.resize((index + 1,))
            _commit_point(ends, index, end)
        except BaseException:
            self._rollback_tail()
            raise
        self._remember(index, info, meta)
        self._records.append(EpisodeRecord(index, meta, start, end, tuple(rewards)))
        self._num_frames = end
        if self.durable:
            try:
                layout.fsync_paths(
                    [*layout.chunk_paths(self._root, ends, index, index + 1), self._root / ends.path / "zarr.json"]
                )
            except OSError as exc:
                raise StoreError(f"episode {index} is committed but could not be synced to disk: {exc}") from exc
        log.debug("committed episode %d: frames [%d, %d)", index, start, end)
        return index

    def _writer_finished(self, writer: EpisodeWriter) -> None:
        if self._writer is writer:
            self._writer = None

    def _rollback_tail(self) -> None:
        """Throw away everything past the committed prefix as found on disk (discard, failed write)."""
        try:
            self._repair(sweep_partials=False)
        except Exception:
            log.exception("%s: could not roll back the uncommitted tail; the next open will repair it", self._root)

    def _repair(self, *, sweep_partials: bool) -> None:
        """Truncate the torn tail a killed (or failed) writer left; only with the writer lock held."""
        self.refresh()
        assert self._ends_array is not None
        done = truncate_tail(
            root=self._root,
            ends_array=self._ends_array,
            frame_arrays=self._arrays,
            n_episodes=len(self._records),
            n_frames=self._num_frames,
            durable=self.durable,
            sweep_partials=sweep_partials,
        )
        if not self._records and self._attrs.get("schema_from") != "create":
            # The episode that fixed (or was fixing) the schema never committed: forget
            # its schema and every array it created, whatever step it was killed at.
            if self._schema is not None:
                self._update_attrs({"cameras": None, "state_dim": None, "action_dim": None, "schema_from": None})
                done.append("reset the schema fixed by an uncommitted first episode")
            leftovers = layout.frame_array_dirs(self._root)
            for path in leftovers:
                shutil.rmtree(path, ignore_errors=True)
            if leftovers:
                done.append(f"removed {len(leftovers)} frame arrays of an uncommitted first episode")
        elif self._schema is not None and not self._records and not self._arrays:
            # A schema given at create time whose arrays went missing: recreate them empty.
            self._fix_schema(self._schema)
            self._update_attrs({"schema_from": "create"})
            done.append("recreated the frame arrays")
        if done:
            log.warning("%s: repaired uncommitted tail: %s", self._root, "; ".join(done))
        self.refresh()


def _commit_point(ends: zarr.Array, index: int, end: int) -> None:
    """THE commit: one atomic chunk replace makes episode `index` visible."""
    ends[index] = end


def _read_arrays(arrays: Mapping[str, zarr.Array], start: int, stop: int) -> dict[str, np.ndarray]:
    """Read [start, stop) of several arrays concurrently (decompression spreads over cores)."""

    async def _get() -> list[Any]:
        return await asyncio.gather(*(a.async_array.getitem(slice(start, stop)) for a in arrays.values()))

    return dict(zip(arrays, sync(_get()), strict=True))


def _listdir(path: Path) -> list[str]:
    try:
        return [p.name for p in path.iterdir() if not p.name.startswith(".")]
    except FileNotFoundError:
        return []


def _create_schema(
    cameras: Mapping[str, tuple[int, int]] | None, state_dim: int | None, action_dim: int | None
) -> StoreSchema | None:
    given = [cameras is not None, state_dim is not None, action_dim is not None]
    if not any(given):
        return None
    if not all(given):
        raise StoreError(
            "cameras, state_dim and action_dim must be given together (or none: the first episode fixes them)"
        )
    assert cameras is not None and state_dim is not None and action_dim is not None
    return StoreSchema.build(cameras, state_dim, action_dim)
