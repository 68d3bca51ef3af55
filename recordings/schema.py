"""The store's schema (cameras, state and action sizes) and input validation.

Validation runs completely before anything is written, so invalid input never
leaves a trace on disk: a whole `Episode` is checked before its first byte is
stored, and a streamed `Frame` is checked before it is buffered. The checks
also convert to the stored dtypes (float32 state/action/rewards, float64
timestamps) so that the write path never has to fail on a cast.
"""

from __future__ import annotations

import json
import math
import numbers
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np

from recordings.episode import SOURCES, Episode, EpisodeMeta, Frame
from recordings.errors import InvalidEpisodeError

# Names become zarr array paths; keep them to characters every filesystem takes.
_NAME_RE = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_-]{0,63}$")

_F32_MAX = float(np.finfo(np.float32).max)


@dataclass(frozen=True)
class StoreSchema:
    """What every frame in a store has: the cameras (name -> (H, W)) and vector sizes."""

    cameras: dict[str, tuple[int, int]]
    state_dim: int
    action_dim: int

    def camera_list(self) -> str:
        return ", ".join(self.cameras) or "none"

    def to_attrs(self) -> dict[str, Any]:
        return {
            "cameras": {name: [h, w] for name, (h, w) in self.cameras.items()},
            "state_dim": self.state_dim,
            "action_dim": self.action_dim,
        }

    @classmethod
    def from_attrs(cls, attrs: Mapping[str, Any]) -> StoreSchema | None:
        if attrs.get("cameras") is None:
            return None
        cams = {str(n): (int(hw[0]), int(hw[1])) for n, hw in attrs["cameras"].items()}
        return cls(cameras=cams, state_dim=int(attrs["state_dim"]), action_dim=int(attrs["action_dim"]))

    @classmethod
    def build(cls, cameras: Mapping[str, tuple[int, int]], state_dim: int, action_dim: int) -> StoreSchema:
        """Check a schema given by a caller (at create time) and build it."""
        cams: dict[str, tuple[int, int]] = {}
        for name, hw in cameras.items():
            check_name("camera", name)
            h, w = (int(v) for v in hw)
            if h < 1 or w < 1:
                raise InvalidEpisodeError(f"camera {name!r}: image size {h}x{w} must be positive")
            cams[name] = (h, w)
        for field_name, dim in (("state_dim", state_dim), ("action_dim", action_dim)):
            if int(dim) < 1:
                raise InvalidEpisodeError(f"{field_name} must be at least 1, got {dim}")
        return cls(cameras=cams, state_dim=int(state_dim), action_dim=int(action_dim))


def check_name(kind: str, name: object) -> None:
    """Camera and reward-modality names become directory names."""
    if not isinstance(name, str) or not _NAME_RE.match(name):
        raise InvalidEpisodeError(
            f"{kind} name {name!r} is not allowed (use 1-64 letters, digits, '_' or '-', not starting with '-')"
        )


_NONE = type(None)
# Stored metadata is queried later (e.g. operator_verdict=True), so a verdict
# recorded as "yes" or 1 would silently never match: check the types here.
_META_TYPES: dict[str, tuple[type, ...]] = {
    "task": (str,),
    "source": (str,),
    "env_id": (str,),
    "policy_id": (str,),
    "round": (int,),
    "seed": (int, _NONE),
    "lrm_verdict": (bool, _NONE),
    "lrm_score": (float, int, _NONE),
    "operator_verdict": (bool, _NONE),
    "oracle_success": (bool, _NONE),
    "aborted": (bool,),
    "duration_s": (float, int, _NONE),
    "start_time": (str,),
    "config_hash": (str,),
    "extra": (dict,),
}


def _type_names(types: tuple[type, ...]) -> str:
    return " or ".join("None" if t is _NONE else t.__name__ for t in types)


def check_meta(meta: object) -> dict[str, Any]:
    """The metadata must be a well-typed EpisodeMeta that survives a JSON round trip."""
    if not isinstance(meta, EpisodeMeta):
        raise InvalidEpisodeError(f"episode meta must be an EpisodeMeta, got {type(meta).__name__}")
    for name, types in _META_TYPES.items():
        value = getattr(meta, name)
        bad_bool = isinstance(value, bool) and bool not in types
        if bad_bool or not isinstance(value, types):
            raise InvalidEpisodeError(
                f"episode meta field {name!r} is {value!r} ({type(value).__name__}), expected {_type_names(types)}"
            )
    if meta.source not in SOURCES:
        raise InvalidEpisodeError(f"episode source {meta.source!r} is not one of {', '.join(SOURCES)}")
    data = meta.to_json()
    try:
        json.dumps(data)
    except (TypeError, ValueError) as exc:
        raise InvalidEpisodeError(f"episode meta is not JSON-serializable: {exc}") from None
    return data


def _shape_str(arr: np.ndarray) -> str:
    return f"{tuple(arr.shape)} {arr.dtype}"


def _to_float32(what: str, value: Any, expected_shape: tuple[int, ...]) -> np.ndarray:
    """Cast numbers to float32, refusing non-numeric dtypes and overflow to inf."""
    arr = np.asarray(value)
    if arr.dtype.kind not in "fiu":
        raise InvalidEpisodeError(f"{what} has dtype {arr.dtype}, which cannot be safely cast to float32")
    if arr.shape != expected_shape:
        raise InvalidEpisodeError(f"{what} has shape {tuple(arr.shape)}, expected {expected_shape}")
    with np.errstate(over="ignore"):
        out = arr.astype(np.float32)
    if arr.dtype.kind == "f" and arr.dtype.itemsize > 4:
        overflow = np.isinf(out) & ~np.isinf(arr)
        if overflow.any():
            bad = float(arr[overflow].flat[0])
            raise InvalidEpisodeError(f"{what} holds {bad!r}, out of float32 range")
    return out


def _check_timestamps(ts: np.ndarray) -> None:
    finite = np.isfinite(ts)
    if not finite.all():
        t = int(np.argmin(finite))
        raise InvalidEpisodeError(f"timestamp: frame {t} is {ts[t]}, timestamps must be finite")
    if ts.shape[0] > 1:
        steps = np.diff(ts)
        if (steps <= 0).any():
            t = int(np.argmax(steps <= 0)) + 1
            raise InvalidEpisodeError(f"timestamp: frame {t} is {ts[t]!r} s, not after frame {t - 1} ({ts[t - 1]!r} s)")


def _camera_sizes(images: Mapping[str, Any], what: str, expected: str) -> dict[str, tuple[int, int]]:
    """(H, W) per camera of a first episode or frame: the last three axes are H, W, 3."""
    sizes = {}
    for name, value in images.items():
        check_name("camera", name)
        arr = np.asarray(value) if not isinstance(value, np.ndarray) else value
        if arr.ndim != expected.count(",") + 1:
            raise InvalidEpisodeError(f"camera {name!r}: {what} shape {tuple(arr.shape)}, expected {expected} uint8")
        sizes[name] = (int(arr.shape[-3]), int(arr.shape[-2]))
    return sizes


def schema_from_episode(episode: Episode) -> StoreSchema:
    """The schema a first episode fixes; inconsistencies are left to `validate_episode`."""
    cams = _camera_sizes(episode.images, "images have", "(T, H, W, 3)")
    state = np.asarray(episode.state)
    action = np.asarray(episode.action)
    for what, arr in (("state", state), ("action", action)):
        if arr.ndim != 2 or arr.shape[1] < 1:
            raise InvalidEpisodeError(f"{what} has shape {tuple(arr.shape)}, expected (T, D) with D >= 1")
    return StoreSchema(cameras=cams, state_dim=int(state.shape[1]), action_dim=int(action.shape[1]))


def schema_from_frame(frame: Frame) -> StoreSchema:
    """The schema the first frame of a first episode fixes."""
    cams = _camera_sizes(frame.images, "frame 0 has", "(H, W, 3)")
    dims = []
    for what, value in (("state", frame.state), ("action", frame.action)):
        arr = np.asarray(value)
        if arr.ndim != 1 or arr.shape[0] < 1:
            raise InvalidEpisodeError(f"{what}: frame 0 has shape {tuple(arr.shape)}, expected (D,) with D >= 1")
        dims.append(int(arr.shape[0]))
    return StoreSchema(cameras=cams, state_dim=dims[0], action_dim=dims[1])


def _check_camera_names(names: list[str], schema: StoreSchema, where: str) -> None:
    for name in schema.cameras:
        if name not in names:
            raise InvalidEpisodeError(
                f"camera {name!r} is missing from {where} (store cameras: {schema.camera_list()})"
            )
    for name in names:
        if name not in schema.cameras:
            raise InvalidEpisodeError(
                f"camera {name!r} in {where} is not a store camera (store cameras: {schema.camera_list()})"
            )


def _check_marked_cameras(names: list[str], schema: StoreSchema, where: str) -> None:
    """Real-image marks may name a subset of the cameras (the others are real), never another camera."""
    for name in names:
        if name not in schema.cameras:
            raise InvalidEpisodeError(
                f"camera {name!r} in {where} is not a store camera (store cameras: {schema.camera_list()})"
            )


@dataclass
class CheckedEpisode:
    """An episode after validation, in the stored dtypes."""

    meta: EpisodeMeta
    images: dict[str, np.ndarray]
    state: np.ndarray
    action: np.ndarray
    timestamp: np.ndarray
    rewards: dict[str, np.ndarray]
    real: dict[str, np.ndarray]  # every store camera -> (T,) bool

    def __len__(self) -> int:
        return int(self.timestamp.shape[0])


def validate_episode(episode: Episode, schema: StoreSchema) -> CheckedEpisode:
    """Check a whole episode against the schema; return it in stored dtypes."""
    if not isinstance(episode, Episode):
        raise InvalidEpisodeError(f"expected an Episode, got {type(episode).__name__}")
    check_meta(episode.meta)
    ts_in = np.asarray(episode.timestamp)
    if ts_in.dtype.kind not in "fiu" or ts_in.ndim != 1:
        raise InvalidEpisodeError(f"timestamp has shape/dtype {_shape_str(ts_in)}, expected (T,) float64")
    n = int(ts_in.shape[0])
    if n == 0:
        raise InvalidEpisodeError("episode has no frames")
    ts = ts_in.astype(np.float64)
    _check_timestamps(ts)
    _check_camera_names(list(episode.images), schema, "the episode")
    images: dict[str, np.ndarray] = {}
    for name, (h, w) in schema.cameras.items():
        arr = episode.images[name]
        if not isinstance(arr, np.ndarray) or arr.dtype != np.uint8 or arr.shape != (n, h, w, 3):
            arr = np.asarray(arr)
            raise InvalidEpisodeError(
                f"camera {name!r}: images have shape {_shape_str(arr)}, expected {(n, h, w, 3)} uint8"
            )
        images[name] = arr
    state = _to_float32("state", episode.state, (n, schema.state_dim))
    action = _to_float32("action", episode.action, (n, schema.action_dim))
    rewards: dict[str, np.ndarray] = {}
    for modality, values in episode.rewards.items():
        check_name("reward modality", modality)
        rewards[modality] = _to_float32(f"reward {modality!r}", values, (n,))
    _check_marked_cameras(list(episode.real), schema, "the episode's real-image marks")
    real: dict[str, np.ndarray] = {}
    for name in schema.cameras:
        mask = np.asarray(episode.real[name]) if name in episode.real else np.ones(n, dtype=bool)
        if mask.dtype != np.bool_ or mask.shape != (n,):
            raise InvalidEpisodeError(f"camera {name!r}: real-image marks have shape {_shape_str(mask)}, expected ({n},) bool")
        real[name] = mask
    return CheckedEpisode(episode.meta, images, state, action, ts, rewards, real)


def validate_reward_trace(modality: str, values: Any, length: int) -> np.ndarray:
    """A whole reward trace for an episode of `length` frames, as float32 (NaN = not queried)."""
    check_name("reward modality", modality)
    return _to_float32(f"reward {modality!r}", values, (length,))


@dataclass
class CheckedFrame:
    """A frame after validation, in stored dtypes."""

    images: dict[str, np.ndarray]
    state: np.ndarray
    action: np.ndarray
    timestamp: float
    rewards: dict[str, float]
    real: dict[str, bool]  # every store camera -> image rendered


def validate_frame(frame: Frame, t: int, schema: StoreSchema, last_timestamp: float | None) -> CheckedFrame:
    """Check frame `t` of an episode being streamed; return it in stored dtypes."""
    if not isinstance(frame, Frame):
        raise InvalidEpisodeError(f"frame {t}: expected a Frame, got {type(frame).__name__}")
    if not isinstance(frame.timestamp, numbers.Real):
        raise InvalidEpisodeError(f"timestamp: frame {t} is {frame.timestamp!r}, expected a number")
    ts = float(frame.timestamp)
    if not math.isfinite(ts):
        raise InvalidEpisodeError(f"timestamp: frame {t} is {ts}, timestamps must be finite")
    if last_timestamp is not None and not ts > last_timestamp:
        raise InvalidEpisodeError(f"timestamp: frame {t} is {ts!r} s, not after frame {t - 1} ({last_timestamp!r} s)")
    _check_camera_names(list(frame.images), schema, f"frame {t}")
    for name, (h, w) in schema.cameras.items():
        img = frame.images[name]
        if not isinstance(img, np.ndarray) or img.dtype != np.uint8 or img.shape != (h, w, 3):
            arr = np.asarray(img)
            raise InvalidEpisodeError(
                f"camera {name!r}: frame {t} has shape {_shape_str(arr)}, expected {(h, w, 3)} uint8"
            )
    state = _to_float32(f"state: frame {t}", frame.state, (schema.state_dim,))
    action = _to_float32(f"action: frame {t}", frame.action, (schema.action_dim,))
    rewards: dict[str, float] = {}
    for modality, value in frame.rewards.items():
        check_name("reward modality", modality)
        if not isinstance(value, numbers.Real):
            raise InvalidEpisodeError(f"reward {modality!r}: frame {t} is {value!r}, expected a number")
        v = float(value)
        if math.isfinite(v) and abs(v) > _F32_MAX:
            raise InvalidEpisodeError(f"reward {modality!r}: frame {t} holds {v!r}, out of float32 range")
        rewards[modality] = v
    _check_marked_cameras(list(frame.real), schema, f"frame {t}'s real-image marks")
    for name, value in frame.real.items():
        if not isinstance(value, (bool, np.bool_)):
            raise InvalidEpisodeError(f"camera {name!r}: frame {t}'s real-image mark is {value!r}, expected a bool")
    real = {name: frame.is_real(name) for name in schema.cameras}
    return CheckedFrame(dict(frame.images), state, action, ts, rewards, real)
