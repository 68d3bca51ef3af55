"""The `robometer` and `topreward` baselines, through LeRobot's own `lerobot.rewards` classes.

Both judge a video, not a frame pair, so requests must carry `RewardRequest.video`
(the episode's query frames so far; interval-hold and `score` pass it because
`needs_video` is True). The video is sampled evenly to `max_frames` frames
ending at the current one and resized to `image_size`; that bounded window is
what keeps a growing-prefix model's cost per query from growing without limit.

- Robometer (`lerobot.rewards.robometer`): a Qwen3-VL with progress and success
  heads read at a `<|prog_token|>` after every frame. One forward pass gives
  both: progress = the last frame's expected progress (clamped to [0, 1], as
  LeRobot's `compute_reward`), completion = 1 when the last frame's success
  probability exceeds `success_threshold` (as LeRobot's `compute_reward`),
  with that probability in `probs`. Frames are encoded by LeRobot's
  `RobometerEncoderProcessorStep.encode_samples`; the heads are read through
  `_compute_rbm_logits` + `decode_progress_outputs` (the one non-public call:
  `compute_reward` returns one of the two outputs per pass, and thresholds success).
- TOPReward (`lerobot.rewards.topreward`): zero-shot, log P("True" | video, "the
  robot completes <task> ... True"), through LeRobot's encoder step and
  `compute_reward`. The value is P("True") = exp(log-prob) in [0, 1], for progress
  and completion alike (the paper min-max normalises log-probs per episode,
  which needs the whole episode; the probability needs nothing). `probs`
  holds P(True) and the rest.

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
from lrm.backends.prompts import sample_video
from lrm.types import RequestError, Reward, RewardRequest, resize_image, validate_request, validate_video

logger = logging.getLogger(__name__)

VIDEO_MODALITIES = ("progress", "completion")


@dataclasses.dataclass
class RobometerBackendConfig:
    """`pretrained_path`: a saved LeRobot Robometer (local dir or hub id); `base_model_id`: its
    Qwen3-VL processor (local dir or hub id). `device` "auto" picks cuda when available.
    `dtype` None keeps the checkpoint's (bfloat16 for Robometer-4B) on a GPU, float32 on a CPU."""

    pretrained_path: str = "lerobot/Robometer-4B"
    base_model_id: str = "Qwen/Qwen3-VL-4B-Instruct"
    max_frames: int = 8
    image_size: tuple[Pixels, Pixels] | None = (224, 224)
    success_threshold: float = 0.5
    max_batch_size: int = 4
    device: str = "auto"
    dtype: str | None = None


@dataclasses.dataclass
class TOPRewardBackendConfig:
    """`vlm_name`: the Qwen3-VL (local dir or hub id) whose log-probabilities are the reward."""

    vlm_name: str = "Qwen/Qwen3-VL-8B-Instruct"
    max_frames: int = 16
    fps: float = 2.0
    image_size: tuple[Pixels, Pixels] | None = (224, 224)
    add_chat_template: bool = False
    max_batch_size: int = 4
    device: str = "auto"
    dtype: str = "auto"


def _device(name: str) -> str:
    import torch

    return ("cuda" if torch.cuda.is_available() else "cpu") if name == "auto" else name


def _videos(requests: Sequence[RewardRequest], backend: str, max_frames: int, size) -> list[np.ndarray]:
    """Validate every request before any compute; return each sampled, resized video (T, H, W, 3)."""
    out = []
    for i, request in enumerate(requests):
        if request.modality not in VIDEO_MODALITIES:
            raise RequestError(f"request {i}: {backend} answers {VIDEO_MODALITIES}, not {request.modality!r}")
        validate_request(request, i)
        if request.video is None:
            raise RequestError(f"request {i}: {backend} judges a video; pass request.video (the episode so far)")
        validate_video(request.video, index=i)
        out.append(np.stack([resize_image(f, size) for f in sample_video(request.video, max_frames)]))
    return out


def _batches(videos: list[np.ndarray], size: int) -> list[list[int]]:
    """Request indices grouped by video shape (a batch is one tensor), at most `size` each."""
    groups: dict[tuple[int, ...], list[int]] = {}
    for i, video in enumerate(videos):
        groups.setdefault(video.shape, []).append(i)
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

        videos = _videos(requests, "robometer", self.config.max_frames, self.config.image_size)
        results: list[Reward | None] = [None] * len(requests)
        for batch in _batches(videos, self.config.max_batch_size):
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

        videos = _videos(requests, "topreward", self.config.max_frames, self.config.image_size)
        results: list[Reward | None] = [None] * len(requests)
        key = self.lerobot_config.image_key
        for batch in _batches(videos, self.config.max_batch_size):
            frames = torch.from_numpy(np.stack([videos[i] for i in batch]))  # (B, T, H, W, 3) uint8
            transition: dict[Any, Any] = {
                TransitionKey.OBSERVATION: {key: frames},
                TransitionKey.COMPLEMENTARY_DATA: {self.lerobot_config.task_key: [requests[i].task for i in batch]},
            }
            encoded = self.encoder(transition)[TransitionKey.OBSERVATION]
            log_probs = self.model.compute_reward(encoded).float().cpu().tolist()
            for row, i in enumerate(batch):
                p_true = math.exp(min(0.0, log_probs[row]))
                results[i] = Reward(
                    value=p_true,
                    raw_text=f"topreward log P(True)={log_probs[row]:.4f}",
                    probs={"True": p_true, "other": 1.0 - p_true},
                )
        return results  # type: ignore[return-value]


__all__ = [
    "RobometerBackendConfig",
    "RobometerRewardModel",
    "TOPRewardBackendConfig",
    "TOPRewardRewardModel",
]
