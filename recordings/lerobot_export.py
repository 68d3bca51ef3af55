"""Export episodes of an episode store to a LeRobotDataset (v3.0), through LeRobot's own writer.

Why LeRobot's API and not hand-written parquet: the format (info.json, episode
and task tables, stats, chunked files) changes between LeRobot releases, and
whatever `LeRobotDataset.create / add_frame / save_episode / finalize` writes
is by definition what `LeRobotDataset(repo_id, root=...)` reads back.

Layout of an exported dataset, per frame:

- `observation.images.<camera>`: dtype "image" by default: each frame is a PNG
  embedded in the parquet file, so the loader returns exactly the stored uint8
  pixels (as float32 CHW in [0, 1]; `round(x * 255)` gives the bytes back).
  `video=True` stores AV1 MP4 instead (LeRobot's default encoder, works on a
  CPU offline through PyAV): far smaller, but LOSSY; pixels come back changed.
- `observation.state` (S,) and `action` (A,) float32, with per-dimension names.
- `reward.<modality>` (1,) float32, only when asked for; NaN where the reward
  model was not queried. The `reward.` prefix keeps them out of the features
  LeRobot policies consume (only `observation.*` and `action*` are).
- LeRobot's own `task` (the episode's task sentence), `timestamp`
  (= frame_index / fps: LeRobot recomputes it, our recorded timestamps are not
  kept per frame; a warning names episodes whose recorded timing drifts),
  `frame_index`, `episode_index`, `index`.

LeRobot's metadata has no free-form per-episode place, so our `EpisodeMeta`,
the source store path and the store episode index of every exported episode
go to a sidecar, `meta/lrm_robot_export.json` (see `load_export_sidecar`).

The dataset is written into a temporary folder next to `out_dir` and moved
into place only when complete, so a failed export leaves `out_dir` as it was.
"""

from __future__ import annotations

import contextlib
import json
import logging
import math
import os
import shutil
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

import numpy as np

from recordings.episode import EpisodeMeta, Frame, utc_now_iso
from common.outputs import MARKER, is_marked, mark_output_dir
from recordings.errors import StoreError
from recordings.integrity import index_ranges

if TYPE_CHECKING:
    from recordings.store import EpisodeStore
    from tqdm import tqdm

logger = logging.getLogger(__name__)

SIDECAR_NAME = "meta/lrm_robot_export.json"
SIDECAR_FORMAT = "lrm-robot/lerobot-export/1"
IMAGE_KEY_PREFIX = "observation.images."
REWARD_KEY_PREFIX = "reward."


class ExportError(StoreError, ValueError):
    """An export was refused: bad selection, existing output, or an episode that does not fit."""


class _Record(Protocol):
    """What the exporter uses of the store's EpisodeRecord."""

    index: int
    meta: EpisodeMeta
    length: int
    rewards: tuple[str, ...]  # reward modalities recorded in the episode


def export_lerobot(
    store: EpisodeStore,
    out_dir: str | os.PathLike[str],
    *,
    repo_id: str = "local/lrm-robot",
    episodes: Sequence[int | _Record] | None = None,
    fps: float | None = None,
    video: bool = False,
    overwrite: bool = False,
    rewards: bool | Sequence[str] = False,
    state_names: Sequence[str] | None = None,
    action_names: Sequence[str] | None = None,
    robot_type: str | None = None,
) -> Path:
    """Write the selected store episodes to a LeRobotDataset at `out_dir`; return its path.

    `episodes`: store indices or records from `store.episodes(...)`, exported in the
    given order as LeRobot episodes 0, 1, ...; default all. `fps` overrides the
    store's (LeRobot needs a whole number). `rewards`: True exports every reward
    modality found in the selection, or name the modalities. Load the result with
    `LeRobotDataset(repo_id, root=out_dir)`.
    """
    out = Path(out_dir)
    _refuse_the_store_itself(store, out)
    if out.exists() and not out.is_dir():
        raise ExportError(f"{out} exists and is not a folder")
    if out.is_dir() and any(out.iterdir()):
        if not overwrite:
            raise ExportError(f"{out} is not empty; pass overwrite=True to replace it")
        if not is_marked(out):  # overwrite replaces only an earlier export, never a folder of someone else's
            raise ExportError(f"{out} has no {MARKER}, so lrm-robot did not export it; refusing to replace it")

    records = _select(store, episodes)
    rate = _resolve_fps(store, fps)
    cameras = dict(store.cameras)
    modalities = _reward_modalities(records, rewards)
    if state_names is None:
        state_names = getattr(store, "state_names", None)
    if action_names is None:
        action_names = getattr(store, "action_names", None)
    features = _features(
        cameras,
        _names("state", store.state_dim, state_names),
        _names("action", store.action_dim, action_names),
        modalities,
        video,
    )

    # Imported here: lerobot pulls in torch, torchvision and datasets (~15 s cold); tqdm comes with it.
    from lerobot.datasets.lerobot_dataset import LeRobotDataset
    from tqdm import tqdm

    out.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{out.name}.", suffix=".partial", dir=out.parent))
    try:
        root = staging / "dataset"
        dataset = LeRobotDataset.create(
            repo_id=repo_id,
            fps=rate,
            features=features,
            root=root,
            robot_type=robot_type,
            use_videos=video,
            video_backend="pyav",  # only used for reading; avoids probing torchcodec's FFmpeg libraries
        )
        exported = []
        progress = tqdm(total=sum(r.length for r in records), unit="frame", desc="export", disable=None)
        try:
            for lerobot_index, record in enumerate(records):
                length = _write_episode(dataset, store, record, cameras, modalities, rate, progress)
                exported.append(
                    {
                        "episode_index": lerobot_index,
                        "store_index": record.index,
                        "length": length,
                        "meta": record.meta.to_json(),
                    }
                )
                logger.info(
                    "exported store episode %d as LeRobot episode %d (%d frames)", record.index, lerobot_index, length
                )
        except BaseException:
            with contextlib.suppress(Exception):  # release LeRobot's file handles; the staging folder goes anyway
                dataset.finalize()
            raise
        finally:
            progress.close()
        dataset.finalize()
        _prune_empty_dirs(root / "images")  # LeRobot leaves its empty PNG staging folders behind
        _write_sidecar(root, store, rate, video, modalities, exported)
        mark_output_dir(root, "lerobot-export")  # a later overwrite may replace it
        _move_into_place(root, out, staging)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    logger.info("exported %d episodes to %s", len(records), out)
    return out


def _refuse_the_store_itself(store: Any, out: Path) -> None:
    """An export never goes into, over or around the store it reads (an overwrite would delete the store)."""
    source = getattr(store, "path", None)
    if source is None:
        return
    source, target = Path(source).resolve(), out.resolve()
    where = ("is" if target == source else "lies inside" if source in target.parents
             else "holds" if target in source.parents else None)
    if where:
        raise ExportError(f"{out} {where} the store being exported ({source}); choose a folder outside it")


def load_export_sidecar(root: str | os.PathLike[str]) -> dict[int, tuple[int, EpisodeMeta]]:
    """LeRobot episode index -> (store episode index, EpisodeMeta), from an exported dataset."""
    data = json.loads((Path(root) / SIDECAR_NAME).read_text())
    return {e["episode_index"]: (e["store_index"], EpisodeMeta.from_json(e["meta"])) for e in data["episodes"]}


# --- selection and schema -------------------------------------------------------------------


def _select(store: EpisodeStore, episodes: Sequence[int | _Record] | None) -> list[_Record]:
    """Resolve indices or records to the store's own records, in the caller's order."""
    if episodes is None:
        records = list(store.episodes())
    else:
        records = [store.record(e if isinstance(e, int | np.integer) else e.index) for e in episodes]
    if not records:
        raise ExportError("no episodes selected for export")
    seen: set[int] = set()
    for record in records:
        if record.index in seen:
            raise ExportError(f"episode {record.index} is selected twice")
        seen.add(record.index)
    # Check the bytes before writing any: damage found only at an episode's last frame would
    # leave it half in LeRobot's episode buffer.
    report = store.verify([r.index for r in records], record=False)
    if report.damaged:
        records = [r for r in records if r.index not in report.damaged]
        first = next(iter(report.damaged.values()))
        more = f" (and {len(report.damaged) - 1} more)" if len(report.damaged) > 1 else ""
        logger.warning("exporting without damaged episodes %s: %s%s", index_ranges(report.damaged), first, more)
        if not records:
            raise ExportError(f"every selected episode is damaged ({index_ranges(report.damaged)})")
    return records


def _resolve_fps(store: EpisodeStore, fps: float | None) -> int:
    rate = fps if fps is not None else getattr(store, "fps", None)
    if rate is None:
        raise ExportError("the store records no fps; pass fps=")
    if not (isinstance(rate, int | float | np.number) and math.isfinite(rate) and rate > 0):
        raise ExportError(f"fps must be a positive number, got {rate!r}")
    if float(rate) != round(float(rate)):
        raise ExportError(f"LeRobot stores fps as a whole number; got {rate}, pass fps=")
    return int(round(float(rate)))


def _names(kind: str, dim: int, given: Sequence[str] | None) -> list[str]:
    if given is None:
        return [f"{kind}_{i}" for i in range(dim)]
    names = [str(n) for n in given]
    if len(names) != dim:
        raise ExportError(f"{len(names)} {kind} names given for {kind} dimension {dim}")
    return names


def _reward_modalities(records: list[_Record], rewards: bool | Sequence[str]) -> list[str]:
    """The modalities to export; True means every one recorded in a selected episode."""
    if rewards is False:
        return []
    if rewards is True:
        modalities = sorted({m for record in records for m in record.rewards})
    else:
        modalities = list(dict.fromkeys(str(m) for m in rewards))
    for m in modalities:
        if not m or "/" in m:
            raise ExportError(f"reward modality {m!r} cannot be a LeRobot feature name")
    return modalities


def _features(
    cameras: dict[str, tuple[int, int]],
    state_names: list[str],
    action_names: list[str],
    modalities: list[str],
    video: bool,
) -> dict[str, dict]:
    features: dict[str, dict] = {}
    for camera, (height, width) in cameras.items():
        if "/" in camera:
            raise ExportError(f"camera name {camera!r} cannot be a LeRobot feature name")
        features[IMAGE_KEY_PREFIX + camera] = {
            "dtype": "video" if video else "image",
            "shape": (int(height), int(width), 3),
            "names": ["height", "width", "channels"],
        }
    features["observation.state"] = {"dtype": "float32", "shape": (len(state_names),), "names": state_names}
    features["action"] = {"dtype": "float32", "shape": (len(action_names),), "names": action_names}
    for m in modalities:
        features[REWARD_KEY_PREFIX + m] = {"dtype": "float32", "shape": (1,), "names": None}
    return features


# --- writing --------------------------------------------------------------------------------


def _write_episode(
    dataset: Any,
    store: EpisodeStore,
    record: _Record,
    cameras: dict[str, tuple[int, int]],
    modalities: list[str],
    fps: int,
    progress: tqdm,
) -> int:
    """Stream one store episode into LeRobot's episode buffer and save it; return its length."""
    import PIL.Image

    length = 0
    drift = 0.0
    t0: float | None = None
    for t, frame in enumerate(store.iter_frames(record.index)):
        _check_frame(frame, record.index, t, cameras, dataset.features)
        row: dict[str, Any] = {
            # PIL images, not arrays: LeRobot guesses CHW vs HWC from an array's shape.
            IMAGE_KEY_PREFIX + c: PIL.Image.fromarray(np.ascontiguousarray(frame.images[c]))
            for c in cameras
        }
        # Copies: the store's frames are views into a chunk, and LeRobot buffers the episode.
        row["observation.state"] = np.array(frame.state, dtype=np.float32)
        row["action"] = np.array(frame.action, dtype=np.float32)
        for m in modalities:
            row[REWARD_KEY_PREFIX + m] = np.array([frame.rewards.get(m, np.nan)], dtype=np.float32)
        row["task"] = record.meta.task
        dataset.add_frame(row)
        t0 = frame.timestamp if t0 is None else t0
        drift = max(drift, abs((frame.timestamp - t0) - t / fps))
        length += 1
        progress.update()
    if length == 0:
        raise ExportError(f"episode {record.index} has no frames")
    if drift > 0.5 / fps:
        logger.warning(
            "episode %d: recorded timestamps drift up to %.3f s from frame_index/fps at %d fps; "
            "LeRobot keeps only the latter",
            record.index,
            drift,
            fps,
        )
    # Cameras one after another: parallel encoding forks a process pool from this
    # (torch-threaded) process, which can deadlock; the AV1 encoder is multi-threaded anyway.
    dataset.save_episode(parallel_encoding=False)
    return length


def _check_frame(
    frame: Frame, episode: int, t: int, cameras: dict[str, tuple[int, int]], features: dict[str, dict]
) -> None:
    """Refuse, naming the episode, anything that does not match the dataset's declared features."""
    if set(frame.images) != set(cameras):
        raise ExportError(
            f"episode {episode} frame {t}: cameras {sorted(frame.images)} differ from the store's {sorted(cameras)}"
        )
    for camera, (height, width) in cameras.items():
        image = frame.images[camera]
        if image.shape != (height, width, 3) or image.dtype != np.uint8:
            raise ExportError(
                f"episode {episode} frame {t}: camera {camera} is {image.dtype} {image.shape}, "
                f"expected uint8 {(height, width, 3)}"
            )
    for key, value in (("observation.state", frame.state), ("action", frame.action)):
        expected = tuple(features[key]["shape"])
        if np.shape(value) != expected:
            raise ExportError(f"episode {episode} frame {t}: {key} has shape {np.shape(value)}, expected {expected}")


def _write_sidecar(
    root: Path, store: EpisodeStore, fps: int, video: bool, modalities: list[str], exported: list[dict[str, Any]]
) -> None:
    sidecar = {
        "format": SIDECAR_FORMAT,
        "source_store": str(Path(store.path).resolve()) if getattr(store, "path", None) else None,
        "exported_at": utc_now_iso(),
        "fps": fps,
        "video": video,
        "reward_modalities": modalities,
        "episodes": exported,
    }
    (root / SIDECAR_NAME).write_text(json.dumps(sidecar, indent=2) + "\n")


def _prune_empty_dirs(path: Path) -> None:
    if not path.is_dir():
        return
    for sub in sorted((p for p in path.rglob("*") if p.is_dir()), key=lambda p: len(p.parts), reverse=True):
        if not any(sub.iterdir()):
            sub.rmdir()
    if not any(path.iterdir()):
        path.rmdir()


def _move_into_place(root: Path, out: Path, staging: Path) -> None:
    """Swap the finished dataset in; an existing `out` is removed only after the new one is complete."""
    if out.exists():
        old = staging / "replaced"
        out.rename(old)  # same parent folder, so an atomic rename
    root.rename(out)
