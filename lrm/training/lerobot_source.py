"""LeRobotDatasets on disk as a source of reward-model examples, next to the episode store.

`lrm.training.dataset.build_dataset` reads a source through a small part of
`EpisodeStore`'s reading API: `path`, `cameras` (name -> (H, W)),
`episodes(task=, source=)` (records with `index`, `length`, `meta`),
`record(i)` and `load_episode(i).images[camera][t]`. `LeRobotSource` offers
exactly that over a dataset read with LeRobot's own `LeRobotDataset` from a
local root (never the Hub), so whatever LeRobot can read (PNG frames in
parquet, or video) is a source. Frames are decoded on demand, one at a time,
so sampling eleven keyframes of an episode reads eleven frames, not all.

Camera names drop LeRobot's `observation.images.` prefix, so a store and its
export (`recordings.lerobot_export`) name their cameras alike.

Each episode's `EpisodeMeta` (the success verdict the builder needs) comes from:
1. the sidecar our exporter writes (`meta/lrm_robot_export.json`): the
   store's own meta, verdicts included;
2. else a `next.success` feature (as in LeRobot's sim datasets): its value on
   the episode's last frame becomes `oracle_success`;
3. else `assume_success`: a user's statement that every episode is a
   success (teleoperated demos) or a failure, recorded as `operator_verdict`
   with `extra["verdict_from"] = "assume_success"`; left None, such episodes
   have no verdict and the builder skips them.

`ConcatSource` joins several sources (stores and datasets) under one episode
numbering, and `open_source(path)` opens either kind by what is on disk.
"""

from __future__ import annotations

import dataclasses
import logging
import os
from collections.abc import Collection, Iterable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np

from recordings.episode import EpisodeMeta
from recordings.store import EpisodeStore

log = logging.getLogger(__name__)

__all__ = [
    "ConcatSource",
    "LeRobotSource",
    "SourceError",
    "SourceRecord",
    "open_source",
    "open_sources",
    "training_source",
]

IMAGE_PREFIX = "observation.images."


class SourceError(ValueError):
    """A source could not be opened or read; the message names the path."""


@dataclasses.dataclass(frozen=True)
class SourceRecord:
    """An episode of a source, shaped like the store's EpisodeRecord where the builder looks."""

    index: int
    meta: EpisodeMeta
    length: int


@dataclasses.dataclass
class _EpisodeView:
    """What `load_episode` returns: `images[camera][t]` is one uint8 (H, W, 3) frame."""

    images: dict[str, Any]


class _LazyFrames:
    """Frames of one camera of one episode, decoded through LeRobotDataset.__getitem__ when indexed."""

    def __init__(self, dataset: Any, key: str, start: int, length: int) -> None:
        self._dataset, self._key, self._start, self._length = dataset, key, start, length

    def __len__(self) -> int:
        return self._length

    def __getitem__(self, t: int) -> np.ndarray:
        t = int(t)
        if not 0 <= t < self._length:
            raise IndexError(f"frame {t} is outside an episode of {self._length} frames")
        return _to_uint8_hwc(self._dataset[self._start + t][self._key])


def _to_uint8_hwc(image: Any) -> np.ndarray:
    """LeRobot returns float CHW in [0, 1] (or uint8 when asked); the builder wants uint8 HWC."""
    array = image.numpy() if hasattr(image, "numpy") else np.asarray(image)
    if array.ndim == 3 and array.shape[0] in (1, 3) and array.shape[-1] not in (1, 3):
        array = np.moveaxis(array, 0, -1)
    if array.dtype != np.uint8:
        array = np.clip(np.round(array.astype(np.float64) * 255.0), 0, 255).astype(np.uint8)
    if array.shape[-1] == 1:
        array = np.repeat(array, 3, axis=-1)
    return np.ascontiguousarray(array)


def _hw(feature: dict[str, Any]) -> tuple[int, int]:
    shape = list(feature["shape"])
    names = list(feature.get("names") or [])
    if "height" in names and "width" in names:
        return int(shape[names.index("height")]), int(shape[names.index("width")])
    if len(shape) == 3 and shape[0] in (1, 3) and shape[-1] not in (1, 3):
        return int(shape[1]), int(shape[2])
    return int(shape[0]), int(shape[1])


def _matches(value: Any, wanted: str | Collection[str] | None) -> bool:
    if wanted is None:
        return True
    if isinstance(wanted, str):
        return value == wanted
    return value in wanted


class LeRobotSource:
    """A LeRobotDataset on disk behind the store-reading API the dataset builder uses (module doc)."""

    def __init__(
        self,
        root: str | os.PathLike[str],
        *,
        repo_id: str | None = None,
        assume_success: bool | None = None,
        video_backend: str = "pyav",
    ) -> None:
        root = Path(root)
        if not (root / "meta" / "info.json").is_file():
            raise SourceError(f"{root}: not a LeRobotDataset (no meta/info.json)")
        # LeRobot asks the Hub only when the local files are incomplete; refuse that rather than download.
        os.environ.setdefault("HF_HUB_OFFLINE", "1")
        from lerobot.datasets.lerobot_dataset import LeRobotDataset

        try:
            self._dataset = LeRobotDataset(repo_id or f"local/{root.name}", root=root, video_backend=video_backend)
        except Exception as exc:  # LeRobot raises many kinds; the user needs the path and the first line
            first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            raise SourceError(f"{root}: LeRobot cannot read this dataset: {first}") from None
        self._root = root
        meta = self._dataset.meta
        self._camera_keys = {key.removeprefix(IMAGE_PREFIX): key for key in meta.camera_keys}
        self._cameras = {name: _hw(meta.features[key]) for name, key in self._camera_keys.items()}
        self._records = self._read_records(assume_success)

    # --- the store-like API -------------------------------------------------------------

    @property
    def path(self) -> Path:
        return self._root

    @property
    def cameras(self) -> dict[str, tuple[int, int]]:
        return dict(self._cameras)

    @property
    def num_episodes(self) -> int:
        return len(self._records)

    @property
    def fps(self) -> float:
        return float(self._dataset.meta.fps)

    def record(self, index: int) -> SourceRecord:
        if not 0 <= int(index) < len(self._records):
            raise IndexError(f"{self._root}: episode {index} does not exist ({len(self._records)} episodes)")
        return self._records[int(index)][0]

    def episodes(
        self,
        source: str | Collection[str] | None = None,
        task: str | Collection[str] | None = None,
        indices: Iterable[int] | None = None,
        **filters: Any,
    ) -> list[SourceRecord]:
        """Episodes matching the filters; besides source/task/indices, any EpisodeMeta field by value."""
        wanted = None if indices is None else {int(i) for i in indices}
        out = []
        for rec, _ in self._records:
            if wanted is not None and rec.index not in wanted:
                continue
            if not (_matches(rec.meta.source, source) and _matches(rec.meta.task, task)):
                continue
            if any(value is not None and getattr(rec.meta, name) != value for name, value in filters.items()):
                continue
            out.append(dataclasses.replace(rec, meta=EpisodeMeta.from_json(rec.meta.to_json())))
        return out

    def load_episode(self, index: int) -> _EpisodeView:
        rec = self.record(index)
        start = self._records[rec.index][1]
        return _EpisodeView(
            images={name: _LazyFrames(self._dataset, key, start, rec.length) for name, key in self._camera_keys.items()}
        )

    def close(self) -> None:
        """Nothing to release (LeRobot holds no writer); here so callers can treat sources alike."""

    # --- metadata -----------------------------------------------------------------------

    def _read_records(self, assume_success: bool | None) -> list[tuple[SourceRecord, int]]:
        meta = self._dataset.meta
        sidecar = self._sidecar()
        has_success = "next.success" in meta.features
        records = []
        for row in meta.episodes:
            index = int(row["episode_index"])
            start, end = int(row["dataset_from_index"]), int(row["dataset_to_index"])
            tasks = list(row.get("tasks") or [])
            if index in sidecar:
                episode_meta = sidecar[index]
            else:
                episode_meta = EpisodeMeta(
                    task=str(tasks[0]) if tasks else "",
                    source="demo",
                    extra={"lerobot_root": str(self._root), "lerobot_episode": index},
                )
                if has_success:
                    last = self._dataset.hf_dataset[end - 1]["next.success"]
                    episode_meta.oracle_success = bool(np.asarray(last).reshape(-1)[0])
            if assume_success is not None and episode_meta.oracle_success is None and episode_meta.accepted is None:
                episode_meta.operator_verdict = bool(assume_success)
                episode_meta.extra = {**episode_meta.extra, "verdict_from": "assume_success"}
            records.append((SourceRecord(index=index, meta=episode_meta, length=end - start), start))
        records.sort(key=lambda r: r[0].index)
        if [r.index for r, _ in records] != list(range(len(records))):
            raise SourceError(f"{self._root}: episode indices are not 0..{len(records) - 1}")
        return records

    def _sidecar(self) -> dict[int, EpisodeMeta]:
        from recordings.lerobot_export import SIDECAR_NAME, load_export_sidecar

        if not (self._root / SIDECAR_NAME).is_file():
            return {}
        try:
            return {i: meta for i, (_, meta) in load_export_sidecar(self._root).items()}
        except (ValueError, KeyError, TypeError) as exc:
            raise SourceError(f"{self._root / SIDECAR_NAME}: unreadable export sidecar: {exc}") from None


class ConcatSource:
    """Several sources under one episode numbering: source k's episode i is `offset_k + i`.

    Cameras are those every source has (by name). Sources of different image
    sizes mix only when frames are resized (`load_frames(size=...)`, as the
    compact model's training does).
    """

    def __init__(self, sources: Sequence[Any]) -> None:
        if not sources:
            raise SourceError("no sources given")
        self._sources = list(sources)
        self._offsets = np.cumsum([0] + [s.num_episodes for s in self._sources])
        names = [set(s.cameras) for s in self._sources]
        common = set.intersection(*names)
        first = self._sources[0].cameras
        self._cameras = {name: first[name] for name in first if name in common}

    @property
    def path(self) -> str:
        return " + ".join(str(s.path) for s in self._sources)

    @property
    def cameras(self) -> dict[str, tuple[int, int]]:
        return dict(self._cameras)

    @property
    def num_episodes(self) -> int:
        return int(self._offsets[-1])

    @property
    def fps(self) -> float | None:
        """The sources' frame rate when they all record the same one, else None (unknown)."""
        rates = {getattr(s, "fps", None) for s in self._sources}
        return rates.pop() if len(rates) == 1 else None

    def _locate(self, index: int) -> tuple[Any, int]:
        index = int(index)
        if not 0 <= index < self.num_episodes:
            raise IndexError(f"episode {index} does not exist ({self.num_episodes} episodes)")
        k = int(np.searchsorted(self._offsets, index, side="right") - 1)
        return self._sources[k], index - int(self._offsets[k])

    def record(self, index: int) -> SourceRecord:
        source, local = self._locate(index)
        rec = source.record(local)
        return SourceRecord(index=int(index), meta=rec.meta, length=rec.length)

    def episodes(self, source: Any = None, task: Any = None, **filters: Any) -> list[SourceRecord]:
        out = []
        for k, s in enumerate(self._sources):
            for rec in s.episodes(source=source, task=task, **filters):
                out.append(SourceRecord(index=int(self._offsets[k]) + rec.index, meta=rec.meta, length=rec.length))
        return out

    def load_episode(self, index: int) -> Any:
        source, local = self._locate(index)
        return source.load_episode(local)

    def close(self) -> None:
        for s in self._sources:
            s.close()


def open_source(path: str | os.PathLike[str], *, assume_success: bool | None = None) -> Any:
    """A LeRobotDataset (a folder with meta/info.json) or an episode store, opened for reading."""
    path = Path(path)
    if (path / "meta" / "info.json").is_file():
        return LeRobotSource(path, assume_success=assume_success)

    if not path.exists():
        raise SourceError(f"{path}: no such episode store or LeRobotDataset")
    return EpisodeStore.open(path, "r")


def open_sources(paths: Sequence[str | os.PathLike[str]], *, assume_success: bool | None = None) -> Any:
    """One source for one path, a ConcatSource for several (episodes numbered in the given order)."""
    if not paths:
        raise SourceError("no source paths given")
    sources = [open_source(p, assume_success=assume_success) for p in paths]
    return sources[0] if len(sources) == 1 else ConcatSource(sources)


@contextmanager
def training_source(store: EpisodeStore | None, path: str | None, *, assume_success: bool | None = None) -> Iterator[Any]:
    """The source a training run reads: the caller's open `store` (left open), else `path` opened and closed here."""
    if store is not None:
        yield store
        return
    if not path:
        raise ValueError("store: the episode store to train on is not set")
    source = open_source(path, assume_success=assume_success)
    try:
        yield source
    finally:
        source.close()
