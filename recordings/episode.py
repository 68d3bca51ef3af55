"""The in-memory shape of an episode: what a rollout produces and the store keeps.

An episode is a sequence of frames. Every frame has one RGB image per camera
(uint8, H x W x 3), a state vector, the action taken at that frame, a
timestamp in seconds since the episode started, and optionally one scalar per
reward modality. Per-episode attributes live in `EpisodeMeta`.

Not every frame's image was seen: a rollout renders cameras only when a
policy or a reward query needs them, and stores a black placeholder for the
others (the frame arrays are dense). `real` marks, per frame and camera,
whether the image was rendered; a camera it does not name is all real, so
writers that render every frame need not say so.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
from dataclasses import dataclass, field
from typing import Any, Protocol, runtime_checkable

import numpy as np

SOURCES = ("sim", "robot", "demo")


def utc_now_iso() -> str:
    return dt.datetime.now(dt.timezone.utc).isoformat(timespec="milliseconds")


@dataclass
class EpisodeMeta:
    """Per-episode attributes, stored as JSON next to the frames."""

    task: str
    source: str  # one of SOURCES
    env_id: str = ""
    policy_id: str = ""
    round: int = 0
    seed: int | None = None
    lrm_verdict: bool | None = None  # the reward model's call on the final frame(s)
    lrm_score: float | None = None  # e.g. P(completed)
    operator_verdict: bool | None = None  # a person's call; overrides the LRM
    oracle_success: bool | None = None  # simulator ground truth, sim only
    aborted: bool = False  # ended by a fault or an operator abort
    duration_s: float | None = None
    start_time: str = field(default_factory=utc_now_iso)
    config_hash: str = ""
    extra: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.source not in SOURCES:
            raise ValueError(f"episode source {self.source!r} is not one of {', '.join(SOURCES)}")

    @property
    def accepted(self) -> bool | None:
        """The verdict that counts: the operator's if given, else the LRM's."""
        return self.operator_verdict if self.operator_verdict is not None else self.lrm_verdict

    def to_json(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> EpisodeMeta:
        known = {f.name for f in dataclasses.fields(cls)}
        extra = dict(data.get("extra") or {})
        # Attributes written by a newer version are kept, not dropped.
        extra.update({k: v for k, v in data.items() if k not in known})
        return cls(**{k: v for k, v in data.items() if k in known and k != "extra"}, extra=extra)


@dataclass(frozen=True)
class EpisodeRecord:
    """A committed episode: its index, attributes and frame range [start, end) in the flat arrays."""

    index: int
    meta: EpisodeMeta
    start: int
    end: int
    rewards: tuple[str, ...] = ()  # reward modalities recorded in this episode
    # camera -> frames with a real (rendered) image; None: recorded before the store kept the mark
    real_frames: dict[str, int] | None = None

    @property
    def length(self) -> int:
        return self.end - self.start


@dataclass
class Frame:
    """One control step as the rollout loop records it."""

    images: dict[str, np.ndarray]  # camera name -> (H, W, 3) uint8
    state: np.ndarray  # (S,) float32
    action: np.ndarray  # (A,) float32
    timestamp: float  # seconds since the episode started
    rewards: dict[str, float] = field(default_factory=dict)  # modality -> value
    real: dict[str, bool] = field(default_factory=dict)  # camera -> image rendered; a camera not named: True

    def is_real(self, camera: str) -> bool:
        return bool(self.real.get(camera, True))


@dataclass
class Episode:
    """A whole episode in memory, arrays stacked along time."""

    meta: EpisodeMeta
    images: dict[str, np.ndarray]  # camera name -> (T, H, W, 3) uint8
    state: np.ndarray  # (T, S) float32
    action: np.ndarray  # (T, A) float32
    timestamp: np.ndarray  # (T,) float64
    rewards: dict[str, np.ndarray] = field(default_factory=dict)  # modality -> (T,) float32, NaN = not queried
    real: dict[str, np.ndarray] = field(default_factory=dict)  # camera -> (T,) bool; a camera not named: all real

    def __len__(self) -> int:
        return int(self.timestamp.shape[0])

    def real_mask(self, camera: str) -> np.ndarray:
        """(T,) bool: which frames hold a rendered image of `camera`."""
        mask = self.real.get(camera)
        return np.ones(len(self), dtype=bool) if mask is None else np.asarray(mask, dtype=bool)

    def real_frames(self) -> np.ndarray:
        """(T,) bool: the frames whose every camera image is real."""
        mask = np.ones(len(self), dtype=bool)
        for camera in self.images:
            mask &= self.real_mask(camera)
        return mask

    def frame(self, t: int) -> Frame:
        return Frame(
            images={name: arr[t] for name, arr in self.images.items()},
            state=self.state[t],
            action=self.action[t],
            timestamp=float(self.timestamp[t]),
            rewards={name: float(arr[t]) for name, arr in self.rewards.items()},
            real={name: bool(arr[t]) for name, arr in self.real.items()},
        )

    @classmethod
    def from_frames(cls, meta: EpisodeMeta, frames: list[Frame]) -> Episode:
        if not frames:
            raise ValueError("an episode needs at least one frame")
        modalities = sorted({m for f in frames for m in f.rewards})
        marked = sorted({c for f in frames for c in f.real})
        return cls(
            meta=meta,
            images={c: np.stack([f.images[c] for f in frames]) for c in frames[0].images},
            state=np.stack([np.asarray(f.state, dtype=np.float32) for f in frames]),
            action=np.stack([np.asarray(f.action, dtype=np.float32) for f in frames]),
            timestamp=np.asarray([f.timestamp for f in frames], dtype=np.float64),
            rewards={
                m: np.asarray([f.rewards.get(m, np.nan) for f in frames], dtype=np.float32) for m in modalities
            },
            real={c: np.asarray([f.is_real(c) for f in frames], dtype=bool) for c in marked},
        )


@runtime_checkable
class EpisodeSource(Protocol):
    """What a reader of recorded episodes needs: the store, a LeRobotDataset folder read as one
    (`lrm.training.lerobot_source`), or several of them in a row. Writers take the store itself."""

    @property
    def cameras(self) -> dict[str, tuple[int, int]]: ...

    @property
    def num_episodes(self) -> int: ...

    def record(self, index: int) -> Any: ...

    def episodes(self, *args: Any, **filters: Any) -> list[Any]: ...

    def load_episode(self, index: int) -> Any: ...
