"""The `robometer` and `topreward` baselines, through LeRobot's own `lerobot.rewards` classes.

Both judge a video, not a frame pair, so requests must carry `RewardRequest.video`
(the episode's query frames so far; interval-hold and `score` pass it because
`needs_video` is True). What they are shown follows the public LRM reference
(lrm.backends.video): the frames of the video at the backend's `fps` (TOPReward;
Robometer is told no rate and is shown the video's frames as they are), at most
`max_frames` of them by the reference's even pick ending at the current frame,
each shrunk to `max_side` pixels on its longer side with the aspect ratio kept
(Robometer: 320, as the reference; TOPReward: None, the processor sizes the
native frames, as the reference leaves it). That bounded window is also what
keeps a growing-prefix model's cost per query from growing without limit.

- Robometer (`lerobot.rewards.robometer`): a Qwen3-VL with progress and success
  heads read at a `<|prog_token|>` after every frame. One forward pass gives
  both: progress = the last frame's expected progress (clamped to [0, 1], as
  LeRobot's `compute_reward` and the reference's reward), completion = 1 when
  the last frame's success probability exceeds `success_threshold` (as LeRobot's
  `compute_reward`), with that probability in `probs`. Frames are encoded by
  LeRobot's `RobometerEncoderProcessorStep.encode_samples`; the heads are read
  through `_compute_rbm_logits` + `decode_progress_outputs` (the one non-public
  call: `compute_reward` returns one of the two outputs per pass, and thresholds success).
- TOPReward (`lerobot.rewards.topreward`): zero-shot, log P("True" | video, "the
  robot completes <task> ... True") through LeRobot's encoder step and
  `compute_reward`, the video's rate passed as its fps. The value, for progress
  and completion alike, is that log-probability mapped affinely onto [0, 1] as the
  reference does: clip((log P - lo) / (hi - lo), 0, 1) with `logp_range` (lo, hi)
  = (-25, -5) by default, the reference's bounds around the log-probabilities it
  measured (-26 to -7). exp(log P) would be ~0 for every frame (e^-20 = 2e-9),
  and TOPReward's own per-episode min-max needs the whole episode, which an
  online reward does not have. `probs` holds P(True) = exp(log P) and the rest.

Contrastive is not answered by either (RequestError); use the LRM or the oracle.
"""

from __future__ import annotations

import dataclasses
import logging
import math
from collections.abc import Sequence
from typing import Any

import numpy as np

from common.numbers import Pixels
from lrm.backends.video import check_video_settings, prepare_video
from lrm.types import RequestError, Reward, RewardRequest, validate_request, validate_video

logger = logging.getLogger(__name__)

VIDEO_MODALITIES = ("progress", "completion")


@dataclasses.dataclass
class RobometerBackendConfig:
    """`pretrained_path`: a saved LeRobot Robometer (local dir or hub id); `base_model_id`: its
    Qwen3-VL processor (local dir or hub id). `max_frames` and `max_side` as the reference
    server (8 frames, longer side 320 pixels, aspect ratio kept; None: native frames).
    `device` "auto" picks cuda when available. `dtype` None keeps the checkpoint's
    (bfloat16 for Robometer-4B) on a GPU, float32 on a CPU."""

    pretrained_path: str = "lerobot/Robometer-4B"
    base_model_id: str = "Qwen/Qwen3-VL-4B-Instruct"
    max_frames: int = 8
    max_side: Pixels | None = 320
    success_threshold: float = 0.5
    max_batch_size: int = 4
    device: str = "auto"
    dtype: str | None = None

    def __post_init__(self) -> None:
        check_video_settings("robometer", max_frames=self.max_frames, fps=None, max_side=self.max_side)


@dataclasses.dataclass
class TOPRewardBackendConfig:
    """`vlm_name`: the Qwen3-VL (local dir or hub id) whose log-probabilities are the reward.

    `fps`: the rate the video is shown at (and the rate of a request's video that
    does not say; the reference shows its query frames at control_freq / K).
    `max_frames` 15 and no resizing (`max_side` None) as the reference;
    `logp_range`: the (lo, hi) log P("True") mapped to 0 and 1 (module doc).
    """

    vlm_name: str = "Qwen/Qwen3-VL-8B-Instruct"
    max_frames: int = 15
    fps: float = 2.0
    max_side: Pixels | None = None
    logp_range: tuple[float, float] = (-25.0, -5.0)
    add_chat_template: bool = False
    max_batch_size: int = 4
    device: str = "auto"
    dtype: str = "auto"

    def __post_init__(self) -> None:
        check_video_settings("topreward", max_frames=self.max_frames, fps=self.fps, max_side=self.max_side)
        low, high = self.logp_range
        if not (math.isfinite(low) and math.isfinite(high) and low < high):
            raise ValueError(f"topreward: logp_range must be two finite numbers, lo < hi, got {list(self.logp_range)}")


def topreward_value(log_prob: float, logp_range: tuple[float, float]) -> float:
    """log P("True") mapped onto [0, 1]: clip((log_prob - lo) / (hi - lo), 0, 1), as the reference (module doc)."""
    low, high = logp_range
    return float(min(1.0, max(0.0, (log_prob - low) / (high - low))))


def _device(name: str) -> str:
    import torch

    return ("cuda" if torch.cuda.is_available() else "cpu") if name == "auto" else name


def _videos(
    requests: Sequence[RewardRequest], backend: str, *, fps: float | None, max_frames: int, max_side: int | None
) -> list[tuple[np.ndarray, float | None]]:
    """Validate every request before any compute; each video as shown (lrm.backends.video) and its shown rate."""
    out = []
    for i, request in enumerate(requests):
        if request.modality not in VIDEO_MODALITIES:
            raise RequestError(f"request {i}: {backend} answers {VIDEO_MODALITIES}, not {request.modality!r}")
        validate_request(request, i)
        if request.video is None:
            raise RequestError(f"request {i}: {backend} judges a video; pass request.video (the episode so far)")
        validate_video(request.video, index=i)
        out.append(
            prepare_video(request.video, video_fps=request.video_fps, fps=fps, max_frames=max_frames, max_side=max_side)
        )
    return out


def _batches(keys: list[Any], size: int) -> list[list[int]]:
    """Request indices grouped by key (video shape, shown rate: a batch is one tensor, one rate), at most `size` each."""
    groups: dict[Any, list[int]] = {}
    for i, key in enumerate(keys):
        groups.setdefault(key, []).append(i)
    return [idx[s : s + size] for idx in groups.values() for s in range(0, len(idx), size)]


class RobometerRewardModel:
    """Robometer behind the RewardModel interface (module doc)."""

    needs_video = True

    def __init__(self, config: RobometerBackendConfig) -> None:
        import torch
        from lerobot.rewards.robometer.modeling_robometer import RobometerRewardModel as LeRobotRobometer
        from lerobot.rewards.robometer.processor_robometer import RobometerEncoderProcessorStep

        self.config = config
        self.device = _device(config.device)
        logger.info("loading Robometer %s on %s", config.pretrained_path, self.device)
        self.model = LeRobotRobometer.from_pretrained(config.pretrained_path)
        dtype = config.dtype or ("float32" if self.device == "cpu" else None)
        if dtype is not None:
            self.model.to(getattr(torch, dtype))
        self.model.to(self.device).eval()
        self.encoder = RobometerEncoderProcessorStep(
            base_model_id=config.base_model_id, max_frames=config.max_frames, use_multi_image=True
        )
        self._torch = torch

    def score(self, requests: Sequence[RewardRequest]) -> list[Reward]:
        from lerobot.rewards.robometer.modeling_robometer import decode_progress_outputs

        config = self.config
        shown = _videos(requests, "robometer", fps=None, max_frames=config.max_frames, max_side=config.max_side)
        videos = [video for video, _ in shown]
        results: list[Reward | None] = [None] * len(requests)
        for batch in _batches([v.shape for v in videos], config.max_batch_size):
            encoded = self.encoder.encode_samples([(videos[i], requests[i].task) for i in batch])
            inputs = {k: (v.to(self.device) if hasattr(v, "to") else v) for k, v in encoded.items()}
            if "pixel_values" in inputs:
                inputs["pixel_values"] = inputs["pixel_values"].to(next(self.model.parameters()).dtype)
            with self._torch.inference_mode():
                progress_logits, success_logits = self.model._compute_rbm_logits(inputs)
            decoded = decode_progress_outputs(
                progress_logits, success_logits, is_discrete_mode=self.model.config.use_discrete_progress
            )
            for row, i in enumerate(batch):
                progress = min(1.0, max(0.0, float(decoded["progress_pred"][row][-1])))
                success = float(decoded["success_probs"][row][-1])
                if requests[i].modality == "progress":
                    value = progress
                else:
                    value = 1.0 if success > self.config.success_threshold else 0.0
                results[i] = Reward(
                    value=value,
                    raw_text=f"robometer progress={progress:.4f} success={success:.4f}",
                    probs={"success": success, "failure": 1.0 - success},
                )
        return results  # type: ignore[return-value]


class TOPRewardRewardModel:
    """TOPReward behind the RewardModel interface (module doc)."""

    needs_video = True

    def __init__(self, config: TOPRewardBackendConfig) -> None:
        from lerobot.rewards.topreward.configuration_topreward import TOPRewardConfig
        from lerobot.rewards.topreward.modeling_topreward import TOPRewardModel
        from lerobot.rewards.topreward.processor_topreward import TOPRewardEncoderProcessorStep

        self.config = config
        self.device = _device(config.device)
        dtype = config.dtype
        if dtype == "auto" and self.device == "cpu":
            dtype = "float32"  # the checkpoint's bf16 is slow and inexact on a CPU
        self.lerobot_config = TOPRewardConfig(
            vlm_name=config.vlm_name,
            torch_dtype=dtype,
            device=self.device,
            max_frames=config.max_frames,
            fps=config.fps,
            add_chat_template=config.add_chat_template,
        )
        logger.info("loading TOPReward VLM %s on %s", config.vlm_name, self.device)
        self.model = TOPRewardModel(self.lerobot_config).to(self.device).eval()
        self.encoder = TOPRewardEncoderProcessorStep(
            vlm_name=config.vlm_name,
            image_key=self.lerobot_config.image_key,
            task_key=self.lerobot_config.task_key,
            max_frames=config.max_frames,
            fps=config.fps,
            add_chat_template=config.add_chat_template,
            max_length=self.lerobot_config.max_input_length,
        )

    def score(self, requests: Sequence[RewardRequest]) -> list[Reward]:
        import torch
        from lerobot.lerobot_types import TransitionKey

        config = self.config
        shown = _videos(requests, "topreward", fps=config.fps, max_frames=config.max_frames, max_side=config.max_side)
        results: list[Reward | None] = [None] * len(requests)
        key = self.lerobot_config.image_key
        for batch in _batches([(v.shape, rate) for v, rate in shown], config.max_batch_size):
            frames = torch.from_numpy(np.stack([shown[i][0] for i in batch]))  # (B, T, H, W, 3) uint8
            # the encoder writes its fps into the video metadata, whence Qwen3-VL's frame timestamps
            self.encoder.fps = float(shown[batch[0]][1])  # type: ignore[arg-type]
            transition: dict[Any, Any] = {
                TransitionKey.OBSERVATION: {key: frames},
                TransitionKey.COMPLEMENTARY_DATA: {self.lerobot_config.task_key: [requests[i].task for i in batch]},
            }
            encoded = self.encoder(transition)[TransitionKey.OBSERVATION]
            log_probs = self.model.compute_reward(encoded).float().cpu().tolist()
            for row, i in enumerate(batch):
                p_true = math.exp(min(0.0, log_probs[row]))
                results[i] = Reward(
                    value=topreward_value(log_probs[row], config.logp_range),
                    raw_text=(
                        f"topreward log P(True)={log_probs[row]:.4f} over {len(shown[i][0])} frames at {shown[i][1]:g} fps"
                    ),
                    probs={"True": p_true, "other": 1.0 - p_true},
                )
        return results  # type: ignore[return-value]


__all__ = [
    "RobometerBackendConfig",
    "RobometerRewardModel",
    "TOPRewardBackendConfig",
    "TOPRewardRewardModel",
    "topreward_value",
]
