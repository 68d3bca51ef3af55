"""The episode store: append-only, crash-safe recordings in Zarr v3 on local disk.

Layout (see `recordings.layout`): flat per-frame arrays over all episodes plus
`meta/episode_ends`, as in Diffusion Policy's replay buffer, and one small JSON
file of attributes per episode.

Commit protocol (`recordings.arrays`): an episode becomes visible only when its
end index is written, and that is written last. A writer killed at any point
leaves every earlier episode intact; readers count only episodes whose end is
written (`recordings.recovery`), and the next writer truncates the torn tail
when it opens the store, and nothing else.

Damage (`recordings.integrity`): every episode is committed with checksums of
its rows. A committed episode found damaged, in its metadata or its bytes, is
quarantined, never removed: it keeps its index, `episodes()` leaves it out,
`record` / `load_episode` / `iter_frames` refuse it with one line, and
`verify()` reads everything and says which episodes are intact and where the
others are damaged.

Which episodes to use (filters, the per-round selection, train/validation
splits) is `recordings.selection`: storage apart from sampling.

Concurrency: one writer (an flock on `writer.lock`; a second gets
StoreLockedError), any number of readers in other processes. A reader's view
is fixed until `refresh()`. A store object is not thread-safe.
"""

from __future__ import annotations

import copy
import dataclasses
import logging
import math
import os
from collections.abc import Callable, Collection, Iterable, Iterator, Mapping
from pathlib import Path
from types import TracebackType
from typing import Any, Literal

import numpy as np
import zarr

from recordings import integrity, layout
from recordings.arrays import StoreArrays
from recordings.episode import Episode, EpisodeMeta, EpisodeRecord, Frame, utc_now_iso
from recordings.errors import (
    EpisodeIndexError,
    InvalidEpisodeError,
    NotAStoreError,
    ReadOnlyStoreError,
    StoreError,
    StoreExistsError,
    StoreLockedError,
    StoreNotFoundError,
    WriterStateError,
)
from recordings.integrity import Damage, VerifyReport
from recordings.verify import verify_episodes
from recordings.layout import DEFAULT_CHUNK_FRAMES, IMAGE_COMPRESSION, VECTOR_COMPRESSION, Compression
from recordings.lock import WriterLock
from recordings.schema import (
    StoreSchema,
    check_meta,
    schema_from_episode,
    validate_episode,
    validate_reward_trace,
)
from recordings.selection import EpisodeFilter
from recordings.writer import EpisodeWriter

log = logging.getLogger(__name__)

__all__ = ["EpisodeStore"]


class EpisodeStore:
    """Append-only episode store; build one with `EpisodeStore.create` or `EpisodeStore.open`."""

    def __init__(self, root: Path, mode: Literal["r", "a"], durable: bool) -> None:
        # Private: use create() or open(), which check the path and take the lock.
        self._root = root
        self._mode = mode
        self._arrays = StoreArrays(root, read_only=(mode == "r"), durable=durable)
        self._lock: WriterLock | None = None
        self._writer: EpisodeWriter | None = None
        self._warned_unmarked: set[int] = set()  # old episodes already warned about (one line each)

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
                store._arrays.repair(sweep_partials=True)
            except BaseException:
                store.close()
                raise
        else:
            store.refresh()
        return store

    def close(self) -> None:
        """Release the writer lock; an episode still being recorded is discarded."""
        writer = self._recording()
        if writer is not None:
            log.warning("closing %s with episode %d still open: discarding it", self._root, writer.index)
            writer.discard()
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
        return f"EpisodeStore({str(self._root)!r}, mode={self._mode!r}, episodes={self._arrays.num_episodes})"

    # -- properties ---------------------------------------------------------------------

    @property
    def path(self) -> Path:
        return self._root

    @property
    def mode(self) -> str:
        return self._mode

    @property
    def durable(self) -> bool:
        """Whether every commit is fsync'd (power-loss safe)."""
        return self._arrays.durable

    @property
    def schema(self) -> StoreSchema | None:
        return self._arrays.schema

    @property
    def cameras(self) -> dict[str, tuple[int, int]]:
        """Camera name -> (H, W); empty until the schema is fixed."""
        schema = self._arrays.schema
        return dict(schema.cameras) if schema else {}

    @property
    def state_dim(self) -> int | None:
        return self._arrays.schema.state_dim if self._arrays.schema else None

    @property
    def action_dim(self) -> int | None:
        return self._arrays.schema.action_dim if self._arrays.schema else None

    @property
    def fps(self) -> float | None:
        return self._arrays.attrs.get("fps")

    @property
    def chunk_frames(self) -> int:
        return self._arrays.chunk_frames

    @property
    def num_episodes(self) -> int:
        """Committed episodes, damaged ones included: indices run from 0 to num_episodes - 1."""
        return self._arrays.num_episodes

    @property
    def damaged(self) -> dict[int, Damage]:
        """The quarantined episodes (index -> what is damaged and where); readers skip them."""
        return dict(self._arrays.damaged)

    @property
    def index_problems(self) -> list[str]:
        """Damaged copies of the commit record (episode_ends) that the episode JSONs outvote; a writer restores them."""
        return list(self._arrays.scan.ends_problems)

    @property
    def num_frames(self) -> int:
        return self._arrays.num_frames

    def __len__(self) -> int:
        return self._arrays.num_episodes

    def size_bytes(self) -> int:
        """Bytes on disk under the store directory (everything, including any uncommitted tail)."""
        return layout.tree_size(self._root)

    def export_lerobot(self, out_dir, **options):
        """Export episodes to a LeRobotDataset; see recordings.lerobot_export.export_lerobot."""
        from recordings.lerobot_export import export_lerobot  # LeRobot takes seconds to import

        return export_lerobot(self, out_dir, **options)

    # -- reading ------------------------------------------------------------------------

    def refresh(self) -> int:
        """Re-read the committed episodes from disk (a reader sees new ones only then); returns the count."""
        return self._arrays.refresh()

    def record(self, index: int) -> EpisodeRecord:
        """The committed episode `index` (negative counts from the end); a damaged one raises DamagedEpisodeError."""
        i = self._committed_index(index)
        damage = self._arrays.damaged.get(i)
        if damage is not None:
            raise self._arrays.quarantine.refusal(damage)
        rec = self._arrays.records[i]
        return dataclasses.replace(rec, meta=copy.deepcopy(rec.meta))

    def episodes(
        self,
        *any_of: EpisodeFilter,
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
        """Committed episodes matching every keyword filter and, if filters are given, at least one of them.

        Keywords: None = any; UNSET = field is None; `source`, `task` and
        `round` also take a collection of allowed values; `accepted` is
        EpisodeMeta.accepted (the operator's verdict, else the LRM's).
        `any_of`: EpisodeFilter clauses, OR-ed (a training selection such as
        "the demonstrations, or accepted rollouts"). Results are in episode order.
        Damaged (quarantined) episodes are left out, with one warning line
        naming them (again only when they change); asked for in `indices`, one
        raises DamagedEpisodeError.
        """
        self._arrays.quarantine.warn_skipped()
        records = list(self._arrays.records.values())
        if indices is not None:
            wanted = sorted({self.record(i).index for i in indices})
            records = [self._arrays.records[i] for i in wanted]
        every = EpisodeFilter(
            source=source,  # type: ignore[arg-type]
            task=task,  # type: ignore[arg-type]
            round=round,  # type: ignore[arg-type]
            lrm_verdict=lrm_verdict,
            operator_verdict=operator_verdict,
            oracle_success=oracle_success,
            accepted=accepted,
            aborted=aborted,
        )
        out = [
            r for r in records if every.matches(r.meta) and (not any_of or any(f.matches(r.meta) for f in any_of))
        ]
        return [dataclasses.replace(r, meta=copy.deepcopy(r.meta)) for r in out]

    def load_episode(self, index: int) -> Episode:
        """A whole committed episode, byte-exact as appended; rewards: the modalities it recorded.

        Its bytes are checked against the checksums written at commit: damage
        quarantines the episode and raises DamagedEpisodeError.
        """
        rec = self.record(index)
        data = self._arrays.read_episode(rec, self._episode_keys(rec))
        images = {name: data[layout.camera_key(name)] for name in self.cameras}
        if rec.real_frames is None:
            self._warn_if_black(rec, images)
        return Episode(
            meta=rec.meta,
            images=images,
            state=data[layout.STATE],
            action=data[layout.ACTION],
            timestamp=data[layout.TIMESTAMP],
            rewards={m: data[layout.reward_key(m)] for m in rec.rewards},
            real={c: data[layout.real_key(c)] for c in rec.real_frames or {}},
        )

    def real_marks(self, index: int) -> dict[str, np.ndarray] | None:
        """Camera -> (T,) bool, which frames of episode `index` hold a rendered image; read alone (cheap)
        and checked against the episode's checksums. None: recorded before the mark was kept."""
        rec = self.record(index)
        if rec.real_frames is None:
            return None
        data = self._arrays.read_episode(rec, [layout.real_key(c) for c in rec.real_frames])
        return {c: data[layout.real_key(c)] for c in rec.real_frames}

    def traces(self, index: int) -> tuple[np.ndarray, dict[str, np.ndarray]]:
        """Timestamps (T,) and reward traces (modality -> (T,), NaN = not queried) of episode `index`,
        read without the images (cheap) and checked against the episode's checksums."""
        rec = self.record(index)
        data = self._arrays.read_episode(rec, [layout.TIMESTAMP] + [layout.reward_key(m) for m in rec.rewards])
        return data[layout.TIMESTAMP], {m: data[layout.reward_key(m)] for m in rec.rewards}

    def _warn_if_black(self, rec: EpisodeRecord, images: Mapping[str, np.ndarray]) -> None:
        """An episode committed before the real-image mark was kept is read as it is; all-black frames
        in it are most likely unrendered placeholders, so say so once (one line) per episode."""
        if rec.index in self._warned_unmarked:
            return
        black = {c: int((~arr.reshape(arr.shape[0], -1).any(axis=1)).sum()) for c, arr in images.items()}
        black = {c: n for c, n in black.items() if n}
        if black:
            self._warned_unmarked.add(rec.index)
            counts = ", ".join(f"{c} {n}/{rec.length}" for c, n in black.items())
            log.warning(
                "%s: episode %d was recorded without real-image marks and has all-black frames (%s): "
                "probably not rendered, but read as real",
                self._root, rec.index, counts,
            )

    def iter_frames(self, index: int) -> Iterator[Frame]:
        """Frames of a committed episode, read lazily one time-chunk at a time.

        Each Frame's arrays are views into the chunk just read; copy them to
        keep them past the next chunk. `rewards` holds every modality of the
        episode, NaN where a frame had none (as Episode.frame does). The bytes
        are checked as they are read: a chunk that cannot be decoded raises
        DamagedEpisodeError at once, a checksum mismatch after the last frame
        (to refuse damage before using any frame, call `verify([index])` first).
        """
        rec = self.record(index)
        keys = self._episode_keys(rec)
        arrays = self._arrays.episode_arrays(rec, keys)  # a snapshot: refresh() may swap the arrays
        expected = self._arrays.expected_digests(rec.index) or {}
        return self._frames(rec, arrays, list(self.cameras), self.chunk_frames, expected)

    def _frames(
        self,
        rec: EpisodeRecord,
        arrays: dict[str, zarr.Array],
        cams: list[str],
        chunk: int,
        expected: dict[str, str],
    ) -> Iterator[Frame]:
        digests = integrity.RunningDigests()
        a = rec.start
        while a < rec.end:
            b = min(rec.end, (a // chunk + 1) * chunk)
            data = self._arrays.read_chunk(rec, arrays, a, b)
            for key in expected.keys() & data.keys():
                digests.update(key, data[key])
            if rec.real_frames is None:
                self._warn_if_black(rec, {c: data[layout.camera_key(c)] for c in cams})
            for t in range(b - a):
                yield Frame(
                    images={c: data[layout.camera_key(c)][t] for c in cams},
                    state=data[layout.STATE][t],
                    action=data[layout.ACTION][t],
                    timestamp=float(data[layout.TIMESTAMP][t]),
                    rewards={m: float(data[layout.reward_key(m)][t]) for m in rec.rewards},
                    real={c: bool(data[layout.real_key(c)][t]) for c in rec.real_frames or {}},
                )
            a = b
        bad = [k for k in sorted(expected.keys() & arrays.keys()) if digests.hexdigest(k) != expected[k]]
        if bad:
            raise self._arrays.report_damage(Damage(rec.index, bad[0], integrity.mismatch(rec.start, rec.end)))

    def _episode_keys(self, rec: EpisodeRecord) -> list[str]:
        keys = [layout.camera_key(n) for n in self.cameras] + [layout.STATE, layout.ACTION, layout.TIMESTAMP]
        keys += [layout.real_key(c) for c in rec.real_frames or {}]
        return keys + [layout.reward_key(m) for m in rec.rewards]

    def verify(
        self,
        indices: Iterable[int] | None = None,
        *,
        record: bool = True,
        progress: Callable[[int], None] | None = None,
    ) -> VerifyReport:
        """Read every committed episode (or `indices`) and check its bytes against its checksums.

        Says which episodes are intact, unverified (committed before checksums
        were kept: only read errors can show) or damaged, and where. With
        `record`, what was found replaces the quarantine record's entries for
        the episodes checked (so an episode repaired by hand is released),
        which needs the writer lock: a store opened read-only takes it for that
        moment, and if another process holds it the report says so and the
        damage is skipped by this store only. `progress(frames)` is called per episode.
        """
        data = self._arrays
        checked = range(data.num_episodes) if indices is None else sorted({self._committed_index(i) for i in indices})
        report = verify_episodes(data, checked, self._episode_keys, progress)
        if record:
            report.recorded = self._record_quarantine(report.damaged, set(checked))
        else:
            data.settle_quarantine(report.damaged, set(checked), write=False)
        return report

    def _committed_index(self, index: int) -> int:
        """`index` as a committed episode's index (negative counts from the end), damaged or not."""
        n = self._arrays.num_episodes
        if isinstance(index, bool) or not isinstance(index, (int, np.integer)) or not -n <= index < n:
            raise EpisodeIndexError(f"episode index {index!r} is out of range ({n} committed episodes)")
        return int(index) % n

    def _record_quarantine(self, found: dict[int, Damage], checked: set[int]) -> str:
        """Write what verify found into the quarantine record; returns what happened, for the report."""
        lock = None
        try:
            if self._lock is None:
                lock = WriterLock(self._root / layout.LOCK_FILE, self._root)
            return self._arrays.settle_quarantine(found, checked, write=True)
        except (StoreLockedError, OSError) as exc:  # a writer at work, a read-only disk
            self._arrays.settle_quarantine(found, checked, write=False)
            return f"not recorded: {exc}"
        finally:
            if lock is not None:
                lock.release()

    # -- writing ------------------------------------------------------------------------

    def begin_episode(self, meta: EpisodeMeta) -> EpisodeWriter:
        """Start recording an episode frame by frame (see EpisodeWriter); one at a time."""
        self._require_writable("begin_episode")
        self._writer = EpisodeWriter(self._arrays, meta)
        return self._writer

    def append(self, episode: Episode) -> int:
        """Validate and store a whole episode; returns its index. Invalid input writes nothing."""
        self._require_writable("append")
        data = self._arrays
        schema = data.schema if data.schema is not None else schema_from_episode(episode)
        checked = validate_episode(episode, schema)
        meta = copy.deepcopy(checked.meta)
        if meta.duration_s is None:
            meta.duration_s = float(checked.timestamp[-1] - checked.timestamp[0])
        start = data.num_frames
        n = len(checked)
        checksums: dict[str, Any] = {}
        try:
            if data.schema is None:
                data.fix_schema(schema)
            data.ensure_real_arrays(length=start)
            for modality in checked.rewards:
                data.ensure_reward_array(modality, length=start)
            arrays = data.frame_arrays()
            block: dict[str, np.ndarray] = {layout.camera_key(k): v for k, v in checked.images.items()}
            block[layout.STATE] = checked.state
            block[layout.ACTION] = checked.action
            block[layout.TIMESTAMP] = checked.timestamp
            block.update({layout.real_key(c): v for c, v in checked.real.items()})
            for key in arrays:
                if key.startswith(layout.REWARD_DIR):
                    modality = key.rsplit("/", 1)[1]
                    block[key] = checked.rewards.get(modality, np.full(n, np.nan, np.float32))
            kept = [k for k in block if not k.startswith(layout.REWARD_DIR)]
            kept += [layout.reward_key(m) for m in checked.rewards]
            checksums = integrity.checksums_json({k: block[k] for k in kept})
            data.write_frames(arrays, start, block)
        except BaseException as exc:
            data.rollback_tail()
            if isinstance(exc, Exception) and not isinstance(exc, StoreError):
                raise StoreError(f"{self._root}: writing episode {data.num_episodes} failed: {exc}") from exc
            raise
        real = {c: int(v.sum()) for c, v in checked.real.items()}
        return data.commit_episode(
            data.num_episodes, start, start + n, meta, list(checked.rewards), checksums, real
        )

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
        self._arrays.rewrite_episode(rec.index, meta=meta)
        return copy.deepcopy(meta)

    def write_rewards(self, index: int, modality: str, values: Any) -> EpisodeRecord:
        """Set the per-frame reward trace `modality` of a committed episode (NaN = not queried).

        For scoring recorded episodes after the fact (`lrm-robot score`). The
        values are written into the flat reward array (created full of NaN if
        the modality is new), synced, and only then is the modality added to
        the episode JSON, with the trace's checksum, by an atomic rewrite: that
        rewrite is the commit of a new trace, so a crash before it leaves the
        episode as it was (the next writer keeps the array, NaN elsewhere, which
        is harmless). Replacing an existing trace is atomic per chunk, not per
        trace: a crash midway can leave old and new values mixed (never a torn
        chunk), which its old checksum then reports as damage; write it again.
        Other episodes sharing a chunk keep their values (read-modify-write
        under the writer lock). Not allowed while an episode is being recorded.
        """
        self._require_writable("write_rewards")
        rec = self.record(index)
        checked = validate_reward_trace(modality, values, rec.length)
        try:
            self._arrays.write_reward_trace(modality, rec.start, rec.end, checked)
        except BaseException as exc:
            if isinstance(exc, Exception) and not isinstance(exc, StoreError):
                raise StoreError(
                    f"{self._root}: writing reward {modality!r} of episode {rec.index} failed: {exc}"
                ) from exc
            raise
        key = layout.reward_key(modality)
        digest = integrity.checksums_json({key: checked})["arrays"]
        rewards = [*rec.rewards, modality] if modality not in rec.rewards else None
        self._arrays.rewrite_episode(rec.index, rewards=rewards, digests=digest)
        log.debug("episode %d: wrote reward trace %r (%d frames)", rec.index, modality, rec.length)
        return self.record(rec.index)

    def _require_writable(self, what: str, allow_open_episode: bool = False) -> None:
        if self._mode != "a" or self._lock is None:
            raise ReadOnlyStoreError(f"{self._root}: cannot {what}, the store is open read-only (mode='r') or closed")
        writer = self._recording()
        if writer is not None and not allow_open_episode:
            raise WriterStateError(
                f"{self._root}: cannot {what} while episode {writer.index} is being recorded; "
                "commit or discard it first"
            )

    def _recording(self) -> EpisodeWriter | None:
        """The episode being recorded, if any: a writer is done once committed or discarded."""
        if self._writer is not None and self._writer.state in ("committed", "discarded"):
            self._writer = None
        return self._writer


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
