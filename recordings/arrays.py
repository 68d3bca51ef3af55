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
2. the episode JSON (temporary file + os.replace), with the checksums of the
   episode's rows that the writer took while writing them (`recordings.integrity`);
3. with `durable=True`: fsync of the chunk files, array metadata, the JSON and
   their directories, so that power loss cannot reorder steps 1-2 after 4;
4. `episode_ends` grows by one entry (it reads as the fill value 0 = torn),
   then the entry is written: this single chunk replace is the commit;
5. with `durable=True`: fsync of `episode_ends`.

A writer killed at any point leaves every earlier episode intact; readers
count an episode as committed only once its end is written
(`recordings.recovery`), and the next writer truncates the torn tail when it
opens the store. That tail is all a writer ever removes: a committed episode
found damaged (its JSON, its range or its bytes) is quarantined instead, and
readers skip it (`recordings.integrity`).
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

from recordings import integrity, layout
from recordings.episode import EpisodeMeta, EpisodeRecord
from recordings.errors import DamagedEpisodeError, NotAStoreError, StoreError
from recordings.integrity import Damage
from recordings.quarantine import Quarantine, set_aside
from recordings.recovery import Scan, committed_by_ends, info_problem, read_ends, scan, truncate_tail
from recordings.schema import StoreSchema, check_meta

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
        self.read_only = read_only
        self.zstore = LocalStore(root, read_only=read_only)
        self.attrs: dict[str, Any] = {}
        self.schema: StoreSchema | None = None
        self.ends: zarr.Array | None = None
        self.frames: dict[str, zarr.Array] = {}  # every per-frame array that opens; all kept at the same length
        self.committed = 0  # committed episodes, damaged ones included: the next episode's index
        self.whole: dict[int, EpisodeRecord] = {}  # committed episodes whose metadata and range hold up
        self.records: dict[int, EpisodeRecord] = {}  # those of them readers get: not damaged
        # Read-only stores never write it; with the writer lock held, found damage is recorded.
        self.quarantine = Quarantine(root, durable=durable, writable=not read_only)
        self.scan = Scan()
        self.num_frames = 0
        self._missing_arrays: dict[str, dict[str, Any]] = {}  # key -> spec, for arrays whose zarr.json is gone
        self._info_cache: dict[int, tuple[tuple[int, int, int], dict[str, Any], EpisodeMeta]] = {}

    @property
    def chunk_frames(self) -> int:
        return int(self.attrs["chunk_frames"])

    @property
    def num_episodes(self) -> int:
        return self.committed

    @property
    def damaged(self) -> dict[int, Damage]:
        """The quarantined episodes: what readers skip."""
        return self.quarantine.damaged

    # -- reading what is committed -------------------------------------------------------

    def refresh(self) -> int:
        """Re-read the committed episodes and array metadata from disk; returns the committed count.

        Zarr caches an array's shape in its Array object, so a reader sees new
        episodes only after this. It reads in the reverse of the writer's publish
        order (module doc): episode_ends first, the commit point, which fixes the
        episodes this view holds; then the root attributes (a first episode fixes
        the schema before its commit), the JSONs of those episodes, and the arrays
        last (a writer grows them, or adds a reward trace's array, before it writes
        the JSON that needs them). Everything a committed episode needs was on disk
        before its end entry, so this view adds up whatever a writer does meanwhile;
        what lies past it (frames, a JSON, a grown episode_ends) is a publication
        in progress, never damage.
        """
        ends_array = layout.open_array(self.zstore, layout.EPISODE_ENDS)
        ends = None if ends_array is None else read_ends(self.root, ends_array)
        attrs = layout.read_root_attrs(self.root)
        if attrs is None:
            raise NotAStoreError(f"{self.root} is not an lrm-robot episode store (no zarr.json with format tag)")
        if ends_array is None or ends is None:
            raise _unreadable_ends(self.root)
        self.attrs = attrs
        self.schema = StoreSchema.from_attrs(attrs)
        found = self._scan_committed(ends)
        self.ends = ends_array
        self.scan = found
        self.committed = found.committed
        self.num_frames = found.num_frames
        self.whole = {
            i: EpisodeRecord(
                index=i,
                meta=self._info_cache[i][2],
                start=start,
                end=end,
                rewards=tuple(found.infos[i].get("rewards", ())),
                real_frames=_real_frames(found.infos[i]),
            )
            for i, (start, end) in found.ranges.items()
        }
        damaged = self.quarantine.load(self.committed, found.damage)
        self.records = {i: r for i, r in self.whole.items() if i not in damaged}
        for i in [i for i in self._info_cache if i >= self.committed]:
            del self._info_cache[i]
        return self.committed

    def _scan_committed(self, ends: list[int | None]) -> Scan:
        """The episodes committed as of `ends`, read in refresh's order: the JSONs, then the arrays."""
        committed = committed_by_ends(ends)
        names = _listdir(self.root / layout.EPISODES_DIR)
        past = [i for i in map(layout.episode_json_index, names) if i is not None and i > committed]
        if past and self.read_only and read_ends(self.root, self._open_ends()) != ends:
            # The protocol leaves at most the one JSON of the episode being published past the
            # committed ones, so a JSON further on proves lost end entries (`recovery.scan`) only
            # if no writer committed since episode_ends was read: here one did, and these are
            # its newer publications, which this view leaves to the next refresh.
            past = []
        # Every JSON the scan may ask for, before the arrays are opened.
        infos = {i: self._episode_info(i) for i in range(max([committed, *(i + 1 for i in past)]))}
        data_lens, reward_lens, real_lens = self._open_frame_arrays()
        return scan(ends, data_lens, reward_lens, infos.__getitem__, past, real_lens)

    def _open_ends(self) -> zarr.Array:
        ends = layout.open_array(self.zstore, layout.EPISODE_ENDS)
        if ends is None:
            raise _unreadable_ends(self.root)
        return ends

    def _open_frame_arrays(self) -> tuple[dict[str, int | None], dict[str, int | None], dict[str, int | None]]:
        """Open every frame array; lengths by key (schema arrays), by modality and by camera (real-image
        marks), None for one that does not open."""
        self.frames = {}
        self._missing_arrays = {}
        specs: dict[str, dict[str, Any]] = {}
        if self.schema is not None:
            specs = layout.schema_array_specs(self.schema, self.attrs, length=0)
        for modality in sorted(_listdir(self.root / layout.REWARD_DIR, dirs_only=True)):
            specs[layout.reward_key(modality)] = layout.reward_array_spec(self.attrs, length=0)
        for camera in sorted(_listdir(self.root / layout.REAL_DIR, dirs_only=True)):
            specs[layout.real_key(camera)] = layout.real_array_spec(self.attrs, length=0)
        lens: dict[str, int | None] = {}
        for key, spec in specs.items():
            array = layout.open_array(self.zstore, key)
            lens[key] = None if array is None else array.shape[0]
            if array is None:
                self._missing_arrays[key] = spec
            else:
                self.frames[key] = array
        optional = (layout.REWARD_DIR + "/", layout.REAL_DIR + "/")
        data_lens = {k: n for k, n in lens.items() if not k.startswith(optional)}
        reward_lens = {k.rsplit("/", 1)[1]: n for k, n in lens.items() if k.startswith(layout.REWARD_DIR + "/")}
        real_lens = {k.rsplit("/", 1)[1]: n for k, n in lens.items() if k.startswith(layout.REAL_DIR + "/")}
        return data_lens, reward_lens, real_lens

    def _episode_info(self, index: int) -> tuple[dict[str, Any] | None, str]:
        """Episode `index`'s JSON if it is valid, else (None, why); cached by (inode, mtime, size)."""
        path = self.root / layout.EPISODES_DIR / layout.episode_json_name(index)
        try:
            st = os.stat(path)
        except FileNotFoundError:
            return None, "missing"
        key = (st.st_ino, st.st_mtime_ns, st.st_size)
        cached = self._info_cache.get(index)
        if cached is not None and cached[0] == key:
            return cached[1], ""
        self._info_cache.pop(index, None)
        info = layout.read_json(path)
        if info is None:
            return None, "not valid JSON"
        problem = info_problem(info, index)
        if problem is not None:
            return None, problem
        try:
            meta = EpisodeMeta.from_json(info["meta"])
            check_meta(meta)
        except (TypeError, ValueError) as exc:
            return None, f"meta: {exc}"
        self._info_cache[index] = (key, info, meta)
        return info, ""

    def _remember(self, index: int, info: dict[str, Any], meta: EpisodeMeta) -> None:
        st = os.stat(self.root / layout.EPISODES_DIR / layout.episode_json_name(index))
        self._info_cache[index] = ((st.st_ino, st.st_mtime_ns, st.st_size), info, meta)

    def expected_digests(self, index: int) -> dict[str, str] | None:
        """The checksums episode `index` was committed with (None: written before they were kept)."""
        return integrity.expected_digests(self._info_cache[index][1])

    # -- damage found while reading ------------------------------------------------------

    def report_damage(self, damage: Damage) -> DamagedEpisodeError:
        """Quarantine an episode found damaged now; returns the error that refuses it."""
        self.records.pop(damage.index, None)
        return self.quarantine.report(damage)

    def episode_arrays(self, rec: EpisodeRecord, keys: list[str]) -> dict[str, zarr.Array]:
        """The arrays holding `keys` of episode `rec`; one that does not open quarantines the episode."""
        for key in keys:
            if key not in self.frames:
                raise self.report_damage(Damage(rec.index, key, integrity.MISSING_ARRAY))
        return {k: self.frames[k] for k in keys}

    def read_chunk(
        self, rec: EpisodeRecord, arrays: dict[str, zarr.Array], start: int, stop: int
    ) -> dict[str, np.ndarray]:
        """Rows [start, stop) of episode `rec`; a chunk that cannot be decoded quarantines the episode."""
        data = integrity.read_rows(arrays, start, stop)
        for key, rows in data.items():
            if isinstance(rows, Exception):
                raise self.report_damage(Damage(rec.index, key, integrity.unreadable(start, stop, rows)))
        return data  # type: ignore[return-value]

    def read_episode(self, rec: EpisodeRecord, keys: list[str]) -> dict[str, np.ndarray]:
        """Frames [start, end) of `keys`, checked against the episode's checksums; damage raises DamagedEpisodeError."""
        data = self.read_chunk(rec, self.episode_arrays(rec, keys), rec.start, rec.end)
        bad = integrity.mismatches(data, self.expected_digests(rec.index) or {})
        if bad:
            raise self.report_damage(Damage(rec.index, bad[0], integrity.mismatch(rec.start, rec.end)))
        return data

    def settle_quarantine(self, found: dict[int, Damage], checked: set[int], *, write: bool) -> str:
        """Quarantine what a verification of the episodes `checked` found, release the rest; see Quarantine.settle."""
        done = self.quarantine.settle(found, checked, write=write)
        self.refresh()
        return done

    # -- writing past the committed end --------------------------------------------------

    def frame_arrays(self) -> dict[str, zarr.Array]:
        """A snapshot of the frame arrays: a block written with it has one value per array."""
        return dict(self.frames)

    def write_frames(self, arrays: dict[str, zarr.Array], start: int, block: dict[str, np.ndarray]) -> None:
        """Step 1 of the commit protocol for frames [start, start + len(block)); see `write_block`."""
        try:
            write_block(self.root, arrays, start, block, durable=self.durable)
        except Exception:
            if not self._set_aside_undecodable(arrays, start):
                raise
            write_block(self.root, arrays, start, block, durable=self.durable)

    def _set_aside_undecodable(self, arrays: dict[str, zarr.Array], start: int) -> bool:
        """Writing from mid-chunk rewrites the chunk the previous episode ends in, so zarr must decode
        it first. If it cannot be decoded, those frames are lost already: set the file aside
        (`meta/quarantine/`), quarantine the episodes that had frames in it, and let the write go on."""
        first = start - start % self.chunk_frames
        if first == start:
            return False
        moved = False
        for key, array in arrays.items():
            if not isinstance(integrity.read_rows({key: array}, first, start)[key], Exception):
                continue
            path = layout.chunk_paths(self.root, array, first, first + 1)[0]
            target = set_aside(self.root, path).relative_to(self.root)
            moved = True
            why = f"{integrity.frames(first, start)} could not be decoded; the chunk file was set aside as {target}"
            for rec in self.whole.values():
                if rec.start < start and rec.end > first and rec.index not in self.damaged:
                    self.report_damage(Damage(rec.index, key, why))
        return moved

    def fix_schema(self, schema: StoreSchema) -> None:
        """The first episode fixes the schema: create the frame arrays, then record it in the attributes."""
        self.frames.update(layout.create_schema_arrays(self.zstore, schema, self.attrs, length=self.num_frames))
        self.update_attrs({**schema.to_attrs(), "schema_from": "first_episode"})
        self.schema = schema

    def ensure_real_arrays(self, *, length: int) -> None:
        """Every camera's real-image mark array; one created now (a store older than the mark) is
        False for the earlier frames, whose episodes do not list it."""
        assert self.schema is not None
        for camera in self.schema.cameras:
            key = layout.real_key(camera)
            if key not in self.frames:
                self.frames[key] = layout.create_frame_array(
                    self.zstore, key, **layout.real_array_spec(self.attrs, length=length)
                )

    def ensure_reward_array(self, modality: str, *, length: int) -> None:
        """A modality first seen now gets an array of NaN (the fill value) for all earlier frames."""
        key = layout.reward_key(modality)
        if key in self.frames:
            return
        self.frames[key] = layout.create_frame_array(
            self.zstore, key, **layout.reward_array_spec(self.attrs, length=length)
        )

    def update_attrs(self, changes: dict[str, Any]) -> None:
        group = zarr.open_group(self.zstore, mode="r+", zarr_format=3)
        group.update_attributes(changes)
        self.attrs.update(changes)
        if self.durable:
            layout.fsync_paths([self.root / "zarr.json"])

    def commit_episode(
        self,
        index: int,
        start: int,
        end: int,
        meta: EpisodeMeta,
        rewards: list[str],
        checksums: dict[str, Any],
        real: dict[str, int],
    ) -> int:
        """Steps 2-5 of the commit protocol (module docstring); the frames are already written."""
        assert index == self.committed and start == self.num_frames and end > start
        assert self.ends is not None
        info = {
            "format": layout.EPISODE_JSON_TAG,
            "index": index,
            "start": start,
            "end": end,
            "length": end - start,
            "rewards": rewards,
            "real": real,
            "meta": meta.to_json(),
            "checksums": checksums,
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
        record = EpisodeRecord(index, meta, start, end, tuple(rewards), dict(real))
        self.whole[index] = self.records[index] = record
        self.committed = index + 1
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
        """Throw away everything past the committed episodes as found on disk (discard, failed write)."""
        try:
            self.repair(sweep_partials=False)
        except Exception:
            log.exception("%s: could not roll back the uncommitted tail; the next open will repair it", self.root)

    def repair(self, *, sweep_partials: bool) -> None:
        """Truncate the torn tail a killed (or failed) writer left; only with the writer lock held.

        Nothing committed is removed: damaged committed episodes are added to the
        quarantine record, episode_ends entries that disagree with the episode
        JSONs are restored from them, and a frame array whose zarr.json is gone
        gets a new one (its chunk files are kept).
        """
        self.refresh()
        assert self.ends is not None
        done: list[str] = []
        if self.schema is not None and (self.committed or self.attrs.get("schema_from") == "create"):
            done += self._rebuild_headers()
        done += truncate_tail(
            root=self.root,
            ends_array=self.ends,
            frame_arrays=self.frames,
            n_episodes=self.committed,
            n_frames=self.num_frames,
            durable=self.durable,
            sweep_partials=sweep_partials,
        )
        done += self._restore_ends()
        if not self.committed and self.attrs.get("schema_from") != "create":
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
        self.refresh()
        done += self.quarantine.after_repair()
        if done:
            log.warning("%s: repaired: %s", self.root, "; ".join(done))

    def _rebuild_headers(self) -> list[str]:
        """A new zarr.json, at the committed length, for every frame array whose own is missing or damaged."""
        done = []
        for key, spec in self._missing_arrays.items():
            spec = {**spec, "shape": (self.num_frames, *spec["shape"][1:])}
            self.frames[key] = layout.rebuild_array_header(self.root, key, **spec)
            if self.durable:
                layout.fsync_paths([self.root / key / "zarr.json"])
            done.append(f"wrote a new {key}/zarr.json ({self.num_frames} frames; its chunk files kept)")
        self._missing_arrays = {}
        return done

    def _restore_ends(self) -> list[str]:
        """Rewrite the episode_ends entries that disagree with the episode JSONs (one damaged copy of three)."""
        assert self.ends is not None
        fixes = {i: v for i, v in self.scan.ends_fixes.items() if i < self.ends.shape[0]}
        if not fixes:
            return []
        current = read_ends(self.root, self.ends)
        lo, hi = min(fixes), max(fixes) + 1
        # One write over the span (a chunk replace each, not one per entry). An entry in it that
        # neither reads nor was settled stays unknown: 0 says so as well as an unreadable chunk did.
        self.ends[lo:hi] = np.asarray([fixes.get(i, current[i] or 0) for i in range(lo, hi)], dtype=np.int64)
        if self.durable:
            layout.fsync_paths(layout.chunk_paths(self.root, self.ends, lo, hi))
        return [f"restored {layout.EPISODE_ENDS} entries {integrity.index_ranges(fixes)} from the episode JSONs"]

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
        self,
        index: int,
        *,
        meta: EpisodeMeta | None = None,
        rewards: list[str] | None = None,
        digests: dict[str, str] | None = None,
    ) -> None:
        """Replace a committed episode's attributes, reward modalities or their digests by an atomic JSON rewrite."""
        _, cached_info, cached_meta = self._info_cache[index]
        info = dict(cached_info)
        if meta is not None:
            info["meta"] = meta.to_json()
        if rewards is not None:
            info["rewards"] = rewards
        if digests and integrity.expected_digests(info) is not None:
            # An episode committed without checksums stays unverified rather than half checked.
            info["checksums"] = {**info["checksums"], "arrays": {**info["checksums"]["arrays"], **digests}}
        path = self.root / layout.EPISODES_DIR / layout.episode_json_name(index)
        layout.write_json_atomic(path, info, durable=self.durable)
        meta = cached_meta if meta is None else meta
        self._remember(index, info, meta)
        changes: dict[str, Any] = {"meta": meta}
        if rewards is not None:
            changes["rewards"] = tuple(rewards)
        self.whole[index] = self.records[index] = dataclasses.replace(self.records[index], **changes)


def _real_frames(info: dict[str, Any]) -> dict[str, int] | None:
    real = info.get("real")
    return None if real is None else dict(real)


def _listdir(path: Path, *, dirs_only: bool = False) -> list[str]:
    try:
        return [p.name for p in path.iterdir() if not p.name.startswith(".") and (p.is_dir() or not dirs_only)]
    except FileNotFoundError:
        return []


def _unreadable_ends(root: Path) -> NotAStoreError:
    why = "damaged" if (root / layout.EPISODE_ENDS / "zarr.json").exists() else "missing"
    return NotAStoreError(f"{root} is not a readable episode store ({layout.EPISODE_ENDS}/zarr.json is {why})")
