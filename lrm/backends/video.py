"""How the video baselines (TOPReward, RoboReward, Robometer) see an episode.

They follow what the public LRM reference does (GitHub
physical-superintelligence-lab/Large-Reward-Models, `envs/vlm_maniskill_env.py`
and `vlm_reward/vlm_reward_server.py`): the env keeps the frame of every reward
query (K env steps apart) and sends them, oldest first, with the frame rate they
were taken at (control_freq / K, e.g. 5 Hz / 10 = 0.5 fps there); the server caps
their number by `np.linspace(0, n - 1, cap, dtype=int)` and, for Robometer only,
shrinks each frame so that its longer side is at most 320 pixels, keeping its
aspect ratio and never enlarging it.

Here a request's video may be denser than that (every recorded frame, at the
store's rate `RewardRequest.video_fps`): `sample_indices` first takes frames at
the backend's `fps`, counting back from the current frame, so the model sees
what it would see online, then applies the reference's cap. The rate the model
is told is the rate of the frames it is shown: Qwen3-VL turns it into the
"<t seconds>" timestamps of its video tokens.
"""

from __future__ import annotations

import math

import numpy as np


def sample_indices(
    length: int, *, video_fps: float | None, fps: float | None, max_frames: int
) -> tuple[list[int], float | None]:
    """Which frames of a `length`-frame video to show, oldest first, and the frame rate they are shown at.

    `video_fps` is the rate the video was taken at (None: already at `fps`);
    `fps` the rate to show it at (None: no resampling, as Robometer, which is
    told no rate). The last (current) frame is always kept. The shown rate is
    the rate over the kept frames' span (None when neither rate is known).
    """
    if length < 1:
        raise ValueError("a video needs at least one frame")
    if max_frames < 1:
        raise ValueError(f"max_frames must be >= 1, got {max_frames}")
    rate = video_fps if video_fps is not None else fps
    last = length - 1
    if rate is not None and fps is not None and rate > fps:
        stride = rate / fps
        count = math.floor(last / stride + 1e-9) + 1
        # half-up rounding, so that the pick does not depend on banker's rounding of .5
        index = [math.floor(last - k * stride + 0.5) for k in range(count)][::-1]
    else:
        index = list(range(length))
    if len(index) > max_frames:
        # the reference's cap (dtype=int truncates); one frame: the current one, not the first
        keep = np.linspace(0, len(index) - 1, max_frames, dtype=int) if max_frames > 1 else [len(index) - 1]
        index = [index[int(k)] for k in keep]
    if rate is None:
        return index, None
    if len(index) < 2:  # one frame has no spacing: it is shown at the requested rate
        return index, float(fps if fps is not None else rate)
    return index, float(rate * (len(index) - 1) / (index[-1] - index[0]))


def fit_longer_side(image: np.ndarray, max_side: int | None) -> np.ndarray:
    """Shrink an HxWx3 uint8 frame so that its longer side is at most `max_side`, keeping the aspect ratio.

    As the reference's Robometer preprocessing: scale = min(1, max_side / max(w, h)),
    new size (int(w * scale), int(h * scale)), bicubic, never enlarged. None keeps the frame.
    """
    height, width = image.shape[:2]
    if max_side is None or max(height, width) <= max_side:
        return image
    from PIL import Image  # local: only needed when resizing

    scale = max_side / max(height, width)
    size = (max(1, int(width * scale)), max(1, int(height * scale)))
    return np.array(Image.fromarray(image).resize(size, Image.Resampling.BICUBIC), dtype=np.uint8)


def prepare_video(
    video: np.ndarray, *, video_fps: float | None, fps: float | None, max_frames: int, max_side: int | None
) -> tuple[np.ndarray, float | None]:
    """A request's video as a model sees it: (T', H', W', 3) uint8 sampled and resized, and its shown frame rate."""
    index, shown = sample_indices(len(video), video_fps=video_fps, fps=fps, max_frames=max_frames)
    return np.stack([fit_longer_side(np.ascontiguousarray(video[i]), max_side) for i in index]), shown


def check_video_settings(backend: str, *, max_frames: int, fps: float | None, max_side: int | None) -> None:
    """The checks every video backend config makes (one-line ValueError naming the key)."""
    if max_frames < 1:
        raise ValueError(f"{backend}: max_frames must be >= 1, got {max_frames}")
    if fps is not None and not (math.isfinite(fps) and fps > 0):
        raise ValueError(f"{backend}: fps must be a positive number, got {fps}")
    if max_side is not None and max_side < 32:
        raise ValueError(f"{backend}: max_side must be at least 32 pixels (one Qwen3-VL token), got {max_side}")


__all__ = ["check_video_settings", "fit_longer_side", "prepare_video", "sample_indices"]
