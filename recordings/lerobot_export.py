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
- `next.reward` (1,) float32, `next.done` (1,) bool, `next.success` (1,) bool:
  LeRobot's standard keys (what `lerobot-dataset-viz` plots), never NaN.
  Frame t holds the observation before action t, so `next.*` at t is what
  followed action t. `next.reward[t]` is the chosen reward trace (`reward=`)
  at frame t+1, held between queries (interval-hold: the value of the last
  frame that had one; 0 before the first) and, at the last frame, that frame's
  own value. `reward="auto"` takes the simulator's `dense_reward` when every
  selected episode recorded it (every frame), else the first of `progress`,
  `completion`, `success` that every one recorded; when none is, no
  `next.reward` is written (a warning says so). `next.done` is True at each
  episode's last frame only. `next.success` is False except at the last frame,
  where it is the episode's outcome (`success=`): "auto" the simulator's
  success where recorded, else the accepted verdict (operator's, else the
  LRM's); an episode with neither counts as not successful (a warning counts them).
- `reward.<modality>` (1,) float32 and `reward_queried.<modality>` (1,) bool,
  only when asked for (`rewards=`): each trace held between queries as above
  (not shifted) and the frames where the model was queried. The `reward.`
  prefix keeps them out of the features LeRobot policies consume (only
  `observation.*` and `action*` are).
- `is_real.<camera>` (1,) bool: whether that frame's image of the camera was
  rendered (False: a black placeholder, see recordings.episode). Every frame is
  kept, so time, state and actions stay as recorded (LeRobot derives timestamps
  from frame_index / fps, so dropping frames would shift time); the mark rides
  along as a plain per-frame feature that `LeRobotDataset` returns with every
  item, for a training script to mask by. It is outside `observation.*` on
  purpose: LeRobot maps every non-image `observation.*` feature to a policy's
  state input. Episodes recorded before the mark was kept export as all real.
- LeRobot's own `task` (the episode's task sentence), `timestamp`
  (= frame_index / fps: LeRobot recomputes it, our recorded timestamps are not
  kept per frame), `frame_index`, `episode_index`, `index`.

fps: by default inferred from the recorded timestamps (the median interval,
which must give a whole number of frames per second within 5%, and every frame within
half an interval of frame_index / fps, since that is the time LeRobot will
say it was taken); irregular or absent timestamps are refused in one line
unless `fps=` is given (then a warning names episodes whose timing drifts).

Episodes marked aborted are left out unless `include_aborted=True`.

Per episode, LeRobot's episode table (`meta/episodes/`, `dataset.meta.episodes`)
gets `lrm_robot/*` columns: the store index, source, round, aborted, the
verdicts `accepted`, `lrm_verdict`, `operator_verdict`, `oracle_success` as
"yes" / "no" / "unknown" (strings, because a column of only unknowns would
have no type for the next file's yes/no), `success` (what `next.success`
says) and the whole `EpisodeMeta` as JSON in `lrm_robot/meta`. The same, with
the source store path, goes to a sidecar, `meta/lrm_robot_export.json` (see
`load_export_sidecar`).

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
from dataclasses import dataclass
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
QUERIED_KEY_PREFIX = "reward_queried."
REAL_KEY_PREFIX = "is_real."
NEXT_REWARD, NEXT_DONE, NEXT_SUCCESS = "next.reward", "next.done", "next.success"  # LeRobot's names
EPISODE_COLUMN_PREFIX = "lrm_robot/"
# reward="auto": the simulator's dense reward first (a value at every frame), then the LRM's levels;
# contrastive is left out, being a signed change rather than a level.
AUTO_REWARDS = ("dense_reward", "progress", "completion", "success")
SUCCESS_SOURCES = ("auto", "oracle", "accepted")


class ExportError(StoreError, ValueError):
    """An export was refused: bad selection, existing output, or an episode that does not fit."""


class _Record(Protocol):
    """What the exporter uses of the store's EpisodeRecord."""

    index: int
    meta: EpisodeMeta
    length: int
    rewards: tuple[str, ...]  # reward modalities recorded in the episode


@dataclass
class _Plan:
    """What one episode contributes besides its frames, computed before any frame is written."""

    record: _Record
    next_reward: np.ndarray | None  # (T,) float32
    held: dict[str, np.ndarray]  # modality -> (T,) float32, held between queries
    queried: dict[str, np.ndarray]  # modality -> (T,) bool
    success: bool
    outcome_known: bool


def export_lerobot(
    store: EpisodeStore,
    out_dir: str | os.PathLike[str],
    *,
    repo_id: str = "local/lrm-robot",
    episodes: Sequence[int | _Record] | None = None,
    fps: float | None = None,
    video: bool = False,
    overwrite: bool = False,
    reward: str | None = "auto",
    success: str = "auto",
    rewards: bool | Sequence[str] = False,
    include_aborted: bool = False,
    state_names: Sequence[str] | None = None,
    action_names: Sequence[str] | None = None,
    robot_type: str | None = None,
) -> Path:
    """Write the selected store episodes to a LeRobotDataset at `out_dir`; return its path.

    `episodes`: store indices or records from `store.episodes(...)`, exported in the
    given order as LeRobot episodes 0, 1, ...; default all; aborted ones are left out
    unless `include_aborted`. `fps` overrides the rate inferred from the timestamps
    (LeRobot needs a whole number). `reward`: the trace behind `next.reward` ("auto",
    a modality, or None for no `next.reward`); `success`: where `next.success` comes
    from ("auto", "oracle", "accepted"); see the module doc. `rewards`: True also
    exports every reward modality found in the selection as `reward.<modality>`, or
    name the modalities. Load the result with `LeRobotDataset(repo_id, root=out_dir)`.
    """
    out = Path(out_dir)
    _refuse_the_store_itself(store, out)
    if out.exists() and not out.is_dir():
        raise ExportError(f"{out} exists and is not a folder")
    if out.is_dir() and any(out.iterdir()):
        if not overwrite:
            raise ExportError(f"{out} is not empty; pass overwrite=True (`store export --fresh`) to replace an earlier export")
        if not is_marked(out):  # overwrite replaces only an earlier export, never a folder of someone else's
            raise ExportError(f"{out} has no {MARKER}, so lrm-robot did not export it; refusing to replace it")
    if success not in SUCCESS_SOURCES:
        raise ExportError(f"success must be one of {', '.join(SUCCESS_SOURCES)}, got {success!r}")

    records = _select(store, episodes, include_aborted)
    traces = {r.index: store.traces(r.index) for r in records}
    rate = _resolve_fps(store, fps, {i: ts for i, (ts, _) in traces.items()})
    cameras = dict(store.cameras)
    modalities = _reward_modalities(records, rewards)
    reward_source = _reward_source(records, reward)
    plans = [_plan(r, traces[r.index][1], reward_source, modalities, success) for r in records]
    unknown = [p.record.index for p in plans if not p.outcome_known]
    if unknown:
        logger.warning(
            "episodes %s have no %s; their next.success is False",
            index_ranges(unknown),
            "oracle success" if success == "oracle" else "verdict",
        )
    if state_names is None:
        state_names = getattr(store, "state_names", None)
    if action_names is None:
        action_names = getattr(store, "action_names", None)
    features = _features(
        cameras,
        _names("state", store.state_dim, state_names),
        _names("action", store.action_dim, action_names),
        modalities,
        reward_source is not None,
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
        columns: dict[str, Any] = {}
        _add_episode_columns(dataset, columns)
        exported = []
        progress = tqdm(total=sum(r.length for r in records), unit="frame", desc="export", disable=None)
        try:
            for lerobot_index, plan in enumerate(plans):
                record = plan.record
                columns.clear()
                columns.update(_episode_columns(plan))
                length = _write_episode(dataset, store, plan, cameras, modalities, progress)
                exported.append(
                    {
                        "episode_index": lerobot_index,
                        "store_index": record.index,
                        "length": length,
                        "success": plan.success,
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
        _write_sidecar(root, store, rate, video, reward_source, success, modalities, exported)
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


def _select(
    store: EpisodeStore, episodes: Sequence[int | _Record] | None, include_aborted: bool = False
) -> list[_Record]:
    """Resolve indices or records to the store's own records, in the caller's order."""
    if episodes is None:
        records = list(store.episodes())
    else:
        records = [store.record(e if isinstance(e, int | np.integer) else e.index) for e in episodes]
    if not records:
        raise ExportError("no episodes selected for export")
    if not include_aborted:
        aborted = [r.index for r in records if r.meta.aborted]
        if len(aborted) == len(records):
            raise ExportError(f"every selected episode is aborted ({index_ranges(aborted)}); include_aborted=True exports them")
        if aborted:
            logger.info("leaving out aborted episodes %s (include_aborted=True keeps them)", index_ranges(aborted))
            records = [r for r in records if not r.meta.aborted]
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


def _resolve_fps(store: EpisodeStore, fps: float | None, timestamps: dict[int, np.ndarray]) -> int:
    """The given fps, else the one the timestamps show; refuse what LeRobot cannot hold."""
    if fps is not None:
        if not (isinstance(fps, int | float | np.number) and math.isfinite(fps) and fps > 0):
            raise ExportError(f"fps must be a positive number, got {fps!r}")
        if float(fps) != round(float(fps)):
            raise ExportError(f"LeRobot stores fps as a whole number; got {fps}, pass fps=")
        rate = int(round(float(fps)))
        for index, ts in timestamps.items():
            drift = _drift(ts, rate)
            if drift > 0.5 / rate:
                logger.warning(
                    "episode %d: recorded timestamps drift up to %.3f s from frame_index/fps at %d fps; "
                    "LeRobot keeps only the latter", index, drift, rate,
                )
        return rate
    recorded = getattr(store, "fps", None)
    hint = f"pass --fps (the store says {recorded:g})" if recorded else "pass --fps"
    steps = [np.diff(np.asarray(ts, dtype=np.float64)) for ts in timestamps.values()]
    steps = [d for d in steps if d.size]
    if not steps:
        raise ExportError(f"no episode has two timestamps to infer fps from; {hint}")
    bad = [i for i, ts in timestamps.items() if ts.size > 1 and not np.all(np.isfinite(np.diff(ts)) & (np.diff(ts) > 0))]
    if bad:
        raise ExportError(f"timestamps of episodes {index_ranges(bad)} are absent or do not increase; {hint}")
    # The median interval resists late frames; it only proposes the rate (jitter moves it by a few
    # percent), the drift check below is what guarantees every frame sits where LeRobot will say it does.
    measured = 1.0 / float(np.median(np.concatenate(steps)))
    rate = round(measured)
    if rate < 1 or abs(measured - rate) > 0.05 * rate:
        raise ExportError(f"timestamps give {measured:.3g} fps and LeRobot stores a whole number; {hint}")
    drifting = {i: _drift(ts, rate) for i, ts in timestamps.items()}
    drifting = {i: d for i, d in drifting.items() if d > 0.5 / rate}
    if drifting:
        worst = max(drifting, key=drifting.__getitem__)
        raise ExportError(
            f"timestamps of episodes {index_ranges(drifting)} are irregular (episode {worst} drifts "
            f"{drifting[worst]:.3f} s from a steady {rate} fps); {hint} to export them anyway"
        )
    if recorded and abs(recorded - rate) > 0.01 * rate:
        logger.warning("the store says %g fps but its timestamps show %d; exporting at %d", recorded, rate, rate)
    return rate


def _drift(timestamps: np.ndarray, rate: int) -> float:
    """Largest gap between a frame's recorded time and frame_index / rate, the time LeRobot gives it."""
    ts = np.asarray(timestamps, dtype=np.float64)
    if ts.size == 0:
        return 0.0
    return float(np.max(np.abs((ts - ts[0]) - np.arange(ts.size) / rate)))


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
    next_reward: bool,
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
    for camera in cameras:
        features[REAL_KEY_PREFIX + camera] = {"dtype": "bool", "shape": (1,), "names": None}
    if next_reward:
        features[NEXT_REWARD] = {"dtype": "float32", "shape": (1,), "names": None}
    features[NEXT_DONE] = {"dtype": "bool", "shape": (1,), "names": None}
    features[NEXT_SUCCESS] = {"dtype": "bool", "shape": (1,), "names": None}
    for m in modalities:
        features[REWARD_KEY_PREFIX + m] = {"dtype": "float32", "shape": (1,), "names": None}
        features[QUERIED_KEY_PREFIX + m] = {"dtype": "bool", "shape": (1,), "names": None}
    return features


def _reward_source(records: list[_Record], reward: str | None) -> str | None:
    """The modality behind next.reward; every selected episode must have recorded it."""
    if reward is None or reward == "none":
        return None
    common = set.intersection(*(set(r.rewards) for r in records))
    if reward == "auto":
        chosen = next((m for m in AUTO_REWARDS if m in common), None)
        if chosen is None:
            logger.warning(
                "no reward trace (%s) is recorded in every selected episode; exporting without next.reward",
                ", ".join(AUTO_REWARDS),
            )
        return chosen
    missing = [r.index for r in records if reward not in r.rewards]
    if missing:
        raise ExportError(f"episodes {index_ranges(missing)} recorded no {reward!r} reward; choose another reward")
    return reward


def _hold(trace: np.ndarray) -> np.ndarray:
    """Interval-hold: each frame takes the last queried value (NaN = not queried); 0 before the first."""
    trace = np.asarray(trace, dtype=np.float32)
    known = np.isfinite(trace)
    last = np.maximum.accumulate(np.where(known, np.arange(trace.size), -1))
    return np.where(last >= 0, trace[np.maximum(last, 0)], np.float32(0)).astype(np.float32)


def _plan(record: _Record, rewards: dict[str, np.ndarray], reward_source: str | None, modalities: list[str],
          success: str) -> _Plan:
    held = {m: _hold(rewards[m]) if m in rewards else np.zeros(record.length, np.float32) for m in modalities}
    queried = {
        m: np.isfinite(rewards[m]) if m in rewards else np.zeros(record.length, bool) for m in modalities
    }
    next_reward = None
    if reward_source is not None:
        level = _hold(rewards[reward_source])
        # frame t holds the observation before action t: what followed it is frame t+1's value
        next_reward = np.concatenate([level[1:], level[-1:]]).astype(np.float32)
    meta = record.meta
    if success == "oracle":
        outcome = meta.oracle_success
    elif success == "accepted":
        outcome = meta.accepted
    else:
        outcome = meta.oracle_success if meta.oracle_success is not None else meta.accepted
    return _Plan(record, next_reward, held, queried, bool(outcome), outcome is not None)


def _yes_no(value: bool | None) -> str:
    return "unknown" if value is None else "yes" if value else "no"


def _episode_columns(plan: _Plan) -> dict[str, Any]:
    meta = plan.record.meta
    columns: dict[str, Any] = {
        "store_index": int(plan.record.index),
        "source": meta.source,
        "round": int(meta.round),
        "aborted": bool(meta.aborted),
        "accepted": _yes_no(meta.accepted),
        "lrm_verdict": _yes_no(meta.lrm_verdict),
        "operator_verdict": _yes_no(meta.operator_verdict),
        "oracle_success": _yes_no(meta.oracle_success),
        "success": plan.success,
        "meta": json.dumps(meta.to_json(), sort_keys=True),
    }
    return {EPISODE_COLUMN_PREFIX + k: v for k, v in columns.items()}


def _add_episode_columns(dataset: Any, columns: dict[str, Any]) -> None:
    """Have LeRobot's own metadata writer put `columns` (set before each episode) into its episode row.

    LeRobot's writer calls `meta.save_episode(..., episode_metadata)` once per episode and writes
    every key of that dict as a column of meta/episodes; there is no public argument for more.
    """
    save = dataset.meta.save_episode

    def save_with_columns(episode_index, episode_length, episode_tasks, episode_stats, episode_metadata):
        return save(episode_index, episode_length, episode_tasks, episode_stats, {**episode_metadata, **columns})

    dataset.meta.save_episode = save_with_columns


# --- writing --------------------------------------------------------------------------------


def _write_episode(
    dataset: Any,
    store: EpisodeStore,
    plan: _Plan,
    cameras: dict[str, tuple[int, int]],
    modalities: list[str],
    progress: tqdm,
) -> int:
    """Stream one store episode into LeRobot's episode buffer and save it; return its length."""
    import PIL.Image

    record = plan.record
    last = record.length - 1
    length = 0
    for t, frame in enumerate(store.iter_frames(record.index)):
        if t > last:
            raise ExportError(f"episode {record.index} has more frames than its record's {record.length}")
        _check_frame(frame, record.index, t, cameras, dataset.features)
        row: dict[str, Any] = {
            # PIL images, not arrays: LeRobot guesses CHW vs HWC from an array's shape.
            IMAGE_KEY_PREFIX + c: PIL.Image.fromarray(np.ascontiguousarray(frame.images[c]))
            for c in cameras
        }
        # Copies: the store's frames are views into a chunk, and LeRobot buffers the episode.
        row["observation.state"] = np.array(frame.state, dtype=np.float32)
        row["action"] = np.array(frame.action, dtype=np.float32)
        for c in cameras:
            row[REAL_KEY_PREFIX + c] = np.array([frame.is_real(c)], dtype=bool)
        if plan.next_reward is not None:
            row[NEXT_REWARD] = plan.next_reward[t : t + 1].copy()
        row[NEXT_DONE] = np.array([t == last], dtype=bool)
        row[NEXT_SUCCESS] = np.array([t == last and plan.success], dtype=bool)
        for m in modalities:
            row[REWARD_KEY_PREFIX + m] = plan.held[m][t : t + 1].copy()
            row[QUERIED_KEY_PREFIX + m] = plan.queried[m][t : t + 1].copy()
        row["task"] = record.meta.task
        dataset.add_frame(row)
        length += 1
        progress.update()
    if length != record.length:
        raise ExportError(f"episode {record.index} has {length} frames, its record says {record.length}")
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
    root: Path,
    store: EpisodeStore,
    fps: int,
    video: bool,
    reward_source: str | None,
    success: str,
    modalities: list[str],
    exported: list[dict[str, Any]],
) -> None:
    sidecar = {
        "format": SIDECAR_FORMAT,
        "source_store": str(Path(store.path).resolve()) if getattr(store, "path", None) else None,
        "exported_at": utc_now_iso(),
        "fps": fps,
        "video": video,
        "next_reward": reward_source,  # the trace behind next.reward (held, shifted by a frame); None: no column
        "next_success": success,
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
