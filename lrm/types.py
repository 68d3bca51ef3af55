"""The reward-model seam: requests in, rewards out, in request order.

Every backend (the Qwen3-VL LRM, the baselines, the oracle) takes the same
`RewardRequest`s and returns the same `Reward`s, so the rollout loop, the
rounds and PPO never ask which model scored a frame.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping, Sequence
from typing import Literal, Protocol, get_args, runtime_checkable

import numpy as np

Modality = Literal["contrastive", "progress", "completion"]
MODALITIES: tuple[str, ...] = get_args(Modality)

FrameKey = Literal["current", "previous", "first"]
FRAME_KEYS: tuple[str, ...] = get_args(FrameKey)

# Which frames each modality reads. Contrastive compares the frame from dt steps
# ago with the current one (the first frame is an optional anchor); progress reads
# the current frame against the first; completion needs the current frame only.
REQUIRED_FRAMES: dict[str, frozenset[str]] = {
    "contrastive": frozenset({"current", "previous"}),
    "progress": frozenset({"current", "first"}),
    "completion": frozenset({"current"}),
}
OPTIONAL_FRAMES: dict[str, frozenset[str]] = {
    "contrastive": frozenset({"first"}),
    "progress": frozenset(),
    "completion": frozenset(),
}


class RequestError(ValueError):
    """A request is malformed (unknown modality, missing frame, wrong image shape); one line."""


@dataclasses.dataclass(frozen=True)
class RewardRequest:
    """One reward query: which modality, which frames, which task.

    `previous_value` is the env's last reward of this modality; progress falls back
    to it when the model's answer cannot be parsed (None means 0.0).
    `env_id` / `request_id` only travel along, so a caller can match results.

    Optional extras serve the baselines, and the LRM ignores them:
    `video` is the episode so far as (T, H, W, 3) uint8, oldest first, ending at
    the current frame (whole-trajectory models: Robometer, TOPReward,
    RoboReward; a backend with `needs_video = True` requires it); `video_fps` is
    the rate its frames were taken at, in frames per second of the episode's
    clock (None: unknown, the backend then takes its configured rate, see
    lrm.backends.video); `oracle` holds
    the simulator's values at the current frame (`dense_reward` in [0, 1],
    `success` 0/1, optionally `previous_dense_reward` at the previous query),
    filled by a sim rollout loop for the `oracle` backend (see `lrm.backends.oracle`).
    """

    modality: Modality
    frames: Mapping[str, np.ndarray]
    task: str
    env_id: int | str | None = None
    request_id: int | str | None = None
    previous_value: float | None = None
    video: np.ndarray | None = None
    oracle: Mapping[str, float] | None = None
    video_fps: float | None = None


@dataclasses.dataclass
class Reward:
    """A backend's answer to one request.

    `value` is what the RL loop consumes: +1/-1/0 (contrastive; in logits mode the
    expectation P(current) - P(previous)), 0.0..1.0 (progress; in logits mode the
    expected value over the eleven options), 1/0 (completion; in logits mode
    P(completed)). `raw_text` is the model's text, kept for inspection; `probs` maps
    each answer option to its probability when the backend can compute it;
    `parsed_ok` is False when the value is a fallback because the answer was unusable;
    `failed` is True when no answer came back at all (the backend failed, see
    `lrm.guarded`): the value is then a stand-in that a caller may replace.
    """

    value: float
    raw_text: str
    probs: dict[str, float] | None = None
    parsed_ok: bool = True
    failed: bool = False


@runtime_checkable
class RewardModel(Protocol):
    """Anything that scores a batch of requests; results come back in request order."""

    def score(self, requests: Sequence[RewardRequest]) -> list[Reward]: ...


def validate_image(image: object, *, index: int, key: str) -> np.ndarray:
    """Check one frame is a uint8 HxWx3 array; the error names the request and the shape."""
    if not isinstance(image, np.ndarray):
        raise RequestError(
            f"request {index}: frame {key!r} must be a numpy uint8 HxWx3 array, got {type(image).__name__}"
        )
    if image.dtype != np.uint8 or image.ndim != 3 or image.shape[2] != 3 or image.shape[0] < 1 or image.shape[1] < 1:
        raise RequestError(
            f"request {index}: frame {key!r} must be uint8 HxWx3, got {image.dtype} with shape {tuple(image.shape)}"
        )
    return image


def validate_request(request: RewardRequest, index: int) -> None:
    """Check modality, frame keys and every frame; raise RequestError with a one-line message."""
    if request.modality not in MODALITIES:
        raise RequestError(f"request {index}: unknown modality {request.modality!r}, expected one of {MODALITIES}")
    if not isinstance(request.frames, Mapping):
        raise RequestError(
            f"request {index}: frames must be a mapping of {FRAME_KEYS} to images, got {type(request.frames).__name__}"
        )
    required = REQUIRED_FRAMES[request.modality]
    allowed = required | OPTIONAL_FRAMES[request.modality]
    missing = sorted(required - set(request.frames))
    if missing:
        raise RequestError(f"request {index}: modality {request.modality!r} needs frame(s) {missing}")
    extra = sorted(set(request.frames) - allowed)
    if extra:
        raise RequestError(f"request {index}: modality {request.modality!r} does not use frame(s) {extra}")
    for key, image in request.frames.items():
        validate_image(image, index=index, key=key)
    if not isinstance(request.task, str) or not request.task.strip():
        raise RequestError(f"request {index}: task must be a non-empty string")
    if request.video is not None:
        validate_video(request.video, index=index)
    fps = request.video_fps
    if fps is not None and (isinstance(fps, bool) or not isinstance(fps, (int, float)) or not math.isfinite(fps) or fps <= 0):
        raise RequestError(f"request {index}: video_fps must be a positive number, got {fps!r}")


def validate_video(video: object, *, index: int) -> np.ndarray:
    """Check a request's video is uint8 (T, H, W, 3) with T >= 1."""
    if (
        not isinstance(video, np.ndarray)
        or video.dtype != np.uint8
        or video.ndim != 4
        or video.shape[3] != 3
        or min(video.shape[:3]) < 1
    ):
        shape = tuple(video.shape) if isinstance(video, np.ndarray) else type(video).__name__
        dtype = video.dtype if isinstance(video, np.ndarray) else ""
        raise RequestError(f"request {index}: video must be uint8 (T, H, W, 3), got {dtype} {shape}".replace("  ", " "))
    return video


def resize_image(image: np.ndarray, size: tuple[int, int] | None) -> np.ndarray:
    """Resize an HxWx3 uint8 frame to (height, width) with bilinear filtering; None keeps it.

    Frames come from cameras of any resolution; the LRM sees one configured size so
    that every query costs the same number of vision tokens.
    """
    if size is None or tuple(image.shape[:2]) == tuple(size):
        return image
    from PIL import Image  # local: only needed when resizing

    height, width = size
    resized = Image.fromarray(image).resize((width, height), Image.Resampling.BILINEAR)
    return np.array(resized, dtype=np.uint8)  # a writable copy: torch warns on read-only arrays


def fit_pixels(image: np.ndarray, max_pixels: int | None) -> np.ndarray:
    """Shrink an HxWx3 uint8 frame to at most `max_pixels` pixels, keeping its aspect ratio; None keeps it.

    A VLM's vision-token count grows with the pixel count, so a budget bounds the
    cost of a query without distorting the scene the way a fixed (H, W) would.
    """
    height, width = image.shape[:2]
    if max_pixels is None or height * width <= max_pixels:
        return image
    scale = math.sqrt(max_pixels / (height * width))
    size = (max(1, math.floor(height * scale)), max(1, math.floor(width * scale)))
    return resize_image(image, size)


def scale_image(image: np.ndarray, size: tuple[int, int] | None, max_pixels: int | None = None) -> np.ndarray:
    """`size` (H, W) resizes exactly; otherwise `max_pixels` bounds the pixels, aspect ratio kept."""
    return resize_image(image, size) if size is not None else fit_pixels(image, max_pixels)


def prepare_frames(
    request: RewardRequest, index: int, size: tuple[int, int] | None, max_pixels: int | None = None
) -> dict[str, np.ndarray]:
    """Validate a request and return its frames scaled as `scale_image` says."""
    validate_request(request, index)
    return {key: scale_image(image, size, max_pixels) for key, image in request.frames.items()}
