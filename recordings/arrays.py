"""The Zarr arrays of one open store, and the only code that writes them.

`StoreArrays` holds what a store has open (root attributes, schema, the flat
frame arrays, `episode_ends`, the committed episodes) and the operations that
change them: frames written past the committed end, the commit, the rollback
of an uncommitted tail, the schema fixed by a first episode. `EpisodeStore`
composes one and hands it to each `EpisodeWriter`, so a streamed episode and
an appended one go through the same commit, and the writer needs nothing of
the store.

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
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import os
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import zarr
from zarr.core.sync import sync
from zarr.storage import LocalStore

from recordings import layout
from recordings.episode import EpisodeMeta, EpisodeRecord
from recordings.errors import NotAStoreError, StoreError
from recordings.layout import Compression
from recordings.recovery import committed_prefix, truncate_tail
from recordings.schema import StoreSchema

log = logging.getLogger(__name__)

__all__ = ["StoreArrays", "write_block"]


def write_block(
    root: Path, arrays: dict[str, zarr.Array], start: int, block: dict[str, np.ndarray], *, durable: bool
) -> None:
    """Write frames [start, start + L) to every array at once, growing the arrays to fit.

    All arrays are resized and written concurrently on zarr's event loop, so the
    compression of several cameras' chunks spreads over the available cores.
    With `durable`, the chunk files are fsynced here, in the background, so that
    the commit only has to sync metadata.
    """
    length = next(iter(block.values())).shape[0]
    stop = start + length

    async def _write() -> None:
        await asyncio.gather(
            *(a.async_array.resize((stop, *a.shape[1:])) for a in arrays.values() if a.shape[0] != stop)
        )
        await asyncio.gather(*(arrays[k].async_array.setitem(slice(start, stop), v) for k, v in block.items()))

    sync(_write())
    if durable:
        layout.fsync_paths(p for a in arrays.values() for p in layout.chunk_paths(root, a, start, stop))


def _commit_point(ends: zarr.Array, index: int, end: int) -> None:
    """THE commit: one atomic chunk replace makes episode `index` visible."""
    ends[index] = end


class StoreArrays:
    """The open arrays and committed episodes of one store; not thread-safe (see the module doc)."""

    def __init__(self, root: Path, *, read_only: bool, durable: bool) -> None:
        self.root = root
        self.durable = durable
        self.zstore = LocalStore(root, read_only=read_only)
        self.attrs: dict[str, Any] = {}
        self.schema: StoreSchema | None = None
        self.ends: zarr.Array | None = None
        self.frames: dict[str, zarr.Array] = {}  # every per-frame array; all kept at the same length
        self.records: list[EpisodeRecord] = []
        self.num_frames = 0
        self._info_cache: dict[int, tuple[tuple[int, int, int], dict[str, Any], EpisodeMeta]] = {}

    @property
    def chunk_frames(self) -> int:
        return int(self.attrs["chunk_frames"])

    @property
    def num_episodes(self) -> int:
        return len(self.records)

    # -- reading what is committed -------------------------------------------------------

    def refresh(self) -> int:
        """Re-read the committed episodes and array metadata from disk; returns the episode count.

        Zarr caches an array's shape in its Array object, so a reader sees new
        episodes only after this. Order matters: episode_ends first, then the
        arrays (a writer grows them before committing), then the JSONs.
        """
        attrs = layout.read_root_attrs(self.root)
        if attrs is None:
            raise NotAStoreError(f"{self.root} is not an lrm-robot episode store (no zarr.json with format tag)")
        self.attrs = attrs
        self.schema = StoreSchema.from_attrs(attrs)
        ends_array = layout.open_array(self.zstore, layout.EPISODE_ENDS)
        if ends_array is None:
            raise NotAStoreError(f"{self.root} is not an lrm-robot episode store (no {layout.EPISODE_ENDS} array)")
        ends = ends_array[:] if ends_array.shape[0] else np.zeros(0, np.int64)
        arrays: dict[str, zarr.Array] = {}
        data_len = 0
        if self.schema is not None:
            core = [layout.camera_key(n) for n in self.schema.cameras] + [
                layout.STATE,
                layout.ACTION,
                layout.TIMESTAMP,
            ]
            opened = {key: layout.open_array(self.zstore, key) for key in core}
            if all(a is not None for a in opened.values()):
                arrays.update(opened)  # type: ignore[arg-type]
                data_len = min(a.shape[0] for a in arrays.values())
        for modality in sorted(_listdir(self.root / layout.REWARD_DIR)):
            arr = layout.open_array(self.zstore, layout.reward_key(modality))
            if arr is not None:
                arrays[layout.reward_key(modality)] = arr
        reward_lens = {k.rsplit("/", 1)[1]: a.shape[0] for k, a in arrays.items() if k.startswith(layout.REWARD_DIR)}
        infos, why = committed_prefix(ends, data_len, reward_lens, self._episode_info)
        if why is not None and len(infos) < ends.shape[0]:
            log.debug("%s: %d of %d end entries committed; stopped: %s", self.root, len(infos), ends.shape[0], why)
        self.ends = ends_array
        self.frames = arrays
        self.records = [
            EpisodeRecord(
                index=info["index"],
                meta=self._info_cache[info["index"]][2],
                start=info["start"],
                end=info["end"],
                rewards=tuple(info.get("rewards", ())),
            )
            for info in infos
        ]
        self.num_frames = infos[-1]["end"] if infos else 0
        for i in [i for i in self._info_cache if i >= len(infos)]:
            del self._info_cache[i]
        return len(self.records)

    def _episode_info(self, index: int) -> dict[str, Any] | None:
        """An episode's JSON, cached by (inode, mtime, size) so refresh() re-reads only changed files."""
        path = self.root / layout.EPISODES_DIR / layout.episode_json_name(index)
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

    def _remember(self, index: int, info: dict[str, Any], meta: EpisodeMeta) -> None:
        st = os.stat(self.root / layout.EPISODES_DIR / layout.episode_json_name(index))
        self._info_cache[index] = ((st.st_ino, st.st_mtime_ns, st.st_size), info, meta)

    # -- writing past the committed end --------------------------------------------------

    def frame_arrays(self) -> dict[str, zarr.Array]:
        """A snapshot of the frame arrays: a block written with it has one value per array."""
        return dict(self.frames)

    def write_frames(self, arrays: dict[str, zarr.Array], start: int, block: dict[str, np.ndarray]) -> None:
        """Step 1 of the commit protocol for frames [start, start + len(block)); see `write_block`."""
        write_block(self.root, arrays, start, block, durable=self.durable)

    def fix_schema(self, schema: StoreSchema) -> None:
        """The first episode fixes the schema: create the frame arrays, then record it in the attributes."""
        self.frames.update(layout.create_schema_arrays(self.zstore, schema, self.attrs, length=self.num_frames))
        self.update_attrs({**schema.to_attrs(), "schema_from": "first_episode"})
        self.schema = schema

    def ensure_reward_array(self, modality: str, *, length: int) -> None:
        """A modality first seen now gets an array of NaN (the fill value) for all earlier frames."""
        key = layout.reward_key(modality)
        if key in self.frames:
            return
        comp = Compression.from_json((self.attrs.get("compression") or {}).get("vectors"))
        self.frames[key] = layout.create_frame_array(
            self.zstore,
            key,
            shape=(length,),
            dtype=np.float32,
            chunk_frames=self.chunk_frames,
            compression=comp,
            fill_value=float("nan"),
        )

    def update_attrs(self, changes: dict[str, Any]) -> None:
        group = zarr.open_group(self.zstore, mode="r+", zarr_format=3)
        group.update_attributes(changes)
        self.attrs.update(changes)
        if self.durable:
            layout.fsync_paths([self.root / "zarr.json"])

    def commit_episode(self, index: int, start: int, end: int, meta: EpisodeMeta, rewards: list[str]) -> int:
        """Steps 2-5 of the commit protocol (module docstring); the frames are already written."""
        assert index == len(self.records) and start == self.num_frames and end > start
        assert self.ends is not None
        info = {
            "format": layout.EPISODE_JSON_TAG,
            "index": index,
            "start": start,
            "end": end,
            "length": end - start,
            "rewards": rewards,
            "meta": meta.to_json(),
        }
        path = self.root / layout.EPISODES_DIR / layout.episode_json_name(index)
        ends = self.ends
        try:
            layout.write_json_atomic(path, info, durable=self.durable)
            if self.durable:
                array_dirs = [self.root / a.path for a in self.frames.values()]
                layout.fsync_paths(d / "zarr.json" for d in array_dirs)
                for parent in {d.parent for d in array_dirs}:  # new arrays are new directory entries
                    layout.fsync_dir(parent)
            ends.resize((index + 1,))
            _commit_point(ends, index, end)
        except BaseException:
            self.rollback_tail()
            raise
        self._remember(index, info, meta)
        self.records.append(EpisodeRecord(index, meta, start, end, tuple(rewards)))
        self.num_frames = end
        if self.durable:
            try:
                layout.fsync_paths(
                    [*layout.chunk_paths(self.root, ends, index, index + 1), self.root / ends.path / "zarr.json"]
                )
            except OSError as exc:
                raise StoreError(f"episode {index} is committed but could not be synced to disk: {exc}") from exc
        log.debug("committed episode %d: frames [%d, %d)", index, start, end)
        return index

    def rollback_tail(self) -> None:
        """Throw away everything past the committed prefix as found on disk (discard, failed write)."""
        try:
            self.repair(sweep_partials=False)
        except Exception:
            log.exception("%s: could not roll back the uncommitted tail; the next open will repair it", self.root)

    def repair(self, *, sweep_partials: bool) -> None:
        """Truncate the torn tail a killed (or failed) writer left; only with the writer lock held."""
        self.refresh()
        assert self.ends is not None
        done = truncate_tail(
            root=self.root,
            ends_array=self.ends,
            frame_arrays=self.frames,
            n_episodes=len(self.records),
            n_frames=self.num_frames,
            durable=self.durable,
            sweep_partials=sweep_partials,
        )
        if not self.records and self.attrs.get("schema_from") != "create":
            # The episode that fixed (or was fixing) the schema never committed: forget
            # its schema and every array it created, whatever step it was killed at.
            if self.schema is not None:
                self.update_attrs({"cameras": None, "state_dim": None, "action_dim": None, "schema_from": None})
                done.append("reset the schema fixed by an uncommitted first episode")
            leftovers = layout.frame_array_dirs(self.root)
            for path in leftovers:
                shutil.rmtree(path, ignore_errors=True)
            if leftovers:
                done.append(f"removed {len(leftovers)} frame arrays of an uncommitted first episode")
        elif self.schema is not None and not self.records and not self.frames:
            # A schema given at create time whose arrays went missing: recreate them empty.
            self.fix_schema(self.schema)
            self.update_attrs({"schema_from": "create"})
            done.append("recreated the frame arrays")
        if done:
            log.warning("%s: repaired uncommitted tail: %s", self.root, "; ".join(done))
        self.refresh()

    # -- changing committed episodes -----------------------------------------------------

    def write_reward_trace(self, modality: str, start: int, end: int, values: np.ndarray) -> None:
        """Overwrite frames [start, end) of a reward array, created full of NaN if new; synced if durable."""
        key = layout.reward_key(modality)
        self.ensure_reward_array(modality, length=self.num_frames)
        array = self.frames[key]
        array[start:end] = values  # not write_block: that would resize the array to `end`
        if self.durable:
            chunks = layout.chunk_paths(self.root, array, start, end)
            layout.fsync_paths([*chunks, self.root / key / "zarr.json"])
            layout.fsync_dir(self.root / layout.REWARD_DIR)

    def rewrite_episode(
        self, index: int, *, meta: EpisodeMeta | None = None, rewards: list[str] | None = None
    ) -> None:
        """Replace a committed episode's attributes or reward modalities by an atomic JSON rewrite."""
        _, cached_info, cached_meta = self._info_cache[index]
        info = dict(cached_info)
        if meta is not None:
            info["meta"] = meta.to_json()
        if rewards is not None:
            info["rewards"] = rewards
        path = self.root / layout.EPISODES_DIR / layout.episode_json_name(index)
        layout.write_json_atomic(path, info, durable=self.durable)
        meta = cached_meta if meta is None else meta
        self._remember(index, info, meta)
        changes: dict[str, Any] = {"meta": meta}
        if rewards is not None:
            changes["rewards"] = tuple(rewards)
        self.records[index] = dataclasses.replace(self.records[index], **changes)


def _listdir(path: Path) -> list[str]:
    try:
        return [p.name for p in path.iterdir() if not p.name.startswith(".")]
    except FileNotFoundError:
        return []
