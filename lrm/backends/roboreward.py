"""The `roboreward` baseline: a Qwen3-VL video judge scoring the episode so far 1..5 against a rubric.

Queried as the public LRM reference queries RoboReward-8B for the paper's
baseline (vlm_reward/vlm_reward_server.py of
physical-superintelligence-lab/Large-Reward-Models): one user message, no system
message, the episode's video first (a Qwen3-VL video, not separate images, told
its frame rate) and the rubric after it (configs/lrm/prompts/roboreward.yaml,
verbatim); the model answers "ANSWER: <score>". The score s maps to progress
(s - 1) / 4. The answer is read as the reference reads it: the first
"ANSWER: <1-5>", else the first standalone digit 1..5; with neither, the
reference's 0.0 (`on_unparseable: zero`) or the env's previous value (`hold`).

The video is the request's, shown as lrm.backends.video describes: its frames
at `fps` ending at the current one, at most `max_frames` (16, the reference
env's cap), native size unless `max_side` is set (the reference does not resize;
the processor sizes the frames within its pixel budget, aspect ratio kept).

`mode: logits` (not in the reference, which generates) reads the probability of
each score right after "ANSWER: " in one forward pass: the value is then the
expected progress and `probs` the five probabilities.
"""

from __future__ import annotations

import dataclasses
import logging
import re
from collections.abc import Sequence
from typing import Any, Literal

import numpy as np

from common.config import ConfigFile, config_file
from lrm.backends.prompts import PROMPTS_DIR
from lrm.backends.qwen3vl import resolve_runtime
from lrm.backends.video import check_video_settings, prepare_video
from lrm.types import RequestError, Reward, RewardRequest, validate_request

logger = logging.getLogger(__name__)

# The answer form RoboReward-8B was trained to write (see the prompt file).
ANSWER_LEAD = "ANSWER: "
SCORES = (1, 2, 3, 4, 5)
_ANSWER = re.compile(r"ANSWER:\s*([1-5])")
_BARE_SCORE = re.compile(r"\b([1-5])\b")


@dataclasses.dataclass
class RoboRewardPrompt:
    """The text after the video; `{task}` is replaced by the request's task."""

    text: str

    def __post_init__(self) -> None:
        if "{task}" not in self.text:
            raise ValueError("text: the prompt must contain {task}")


@dataclasses.dataclass
class RoboRewardBackendConfig:
    """Settings of the `roboreward` backend (module doc).

    `model`: the full checkpoint (local dir or hub id). `fps`: the rate the video
    is shown at, and the rate of a request's video that does not say (the
    reference shows its query frames at control_freq / K).
    `device`/`dtype`/`attn_implementation` "auto" as the qwen3vl backend.
    """

    model: str = "teetone/RoboReward-8B"
    prompt: ConfigFile[RoboRewardPrompt] = config_file(RoboRewardPrompt, str(PROMPTS_DIR / "roboreward.yaml"))
    mode: Literal["generate", "logits"] = "generate"
    max_new_tokens: int = 64
    on_unparseable: Literal["zero", "hold"] = "zero"
    max_frames: int = 16
    fps: float = 2.0
    max_side: int | None = None
    max_batch_size: int = 4
    device: str = "auto"
    dtype: str = "auto"
    attn_implementation: str = "auto"

    def __post_init__(self) -> None:
        check_video_settings("roboreward", max_frames=self.max_frames, fps=self.fps, max_side=self.max_side)
        if self.max_new_tokens < 1 or self.max_batch_size < 1:
            raise ValueError("roboreward: max_new_tokens and max_batch_size must be >= 1")


def parse_score(text: str) -> int | None:
    """The 1..5 score in a RoboReward answer, as the reference reads it; None when there is none."""
    if not isinstance(text, str):
        return None
    match = _ANSWER.search(text) or _BARE_SCORE.search(text)
    return int(match.group(1)) if match else None


def score_value(score: int) -> float:
    """Progress of a 1..5 score: (score - 1) / 4."""
    return (score - 1) / 4.0


def messages(prompt: RoboRewardPrompt, task: str) -> list[dict[str, Any]]:
    """The chat of one query: one user turn, the video then the rubric (the reference's order)."""
    return [
        {
            "role": "user",
            "content": [{"type": "video"}, {"type": "text", "text": prompt.text.replace("{task}", task)}],
        }
    ]


class RoboRewardModel:
    """RoboReward behind the RewardModel interface (module doc); answers progress."""

    needs_video = True

    def __init__(self, config: RoboRewardBackendConfig) -> None:
        import torch
        from transformers import AutoProcessor, Qwen3VLForConditionalGeneration

        self.config = config
        self.prompt = config.prompt.config
        self.device, dtype, attn = resolve_runtime(config)  # type: ignore[arg-type]
        logger.info("loading RoboReward %s on %s (%s, %s)", config.model, self.device, dtype, attn)
        self.processor = AutoProcessor.from_pretrained(config.model)
        self.tokenizer = self.processor.tokenizer
        self.tokenizer.padding_side = "left"
        # a full checkpoint, no adapters: device_map is safe here and skips a host copy
        self.model = Qwen3VLForConditionalGeneration.from_pretrained(
            config.model, dtype=dtype, attn_implementation=attn, device_map=self.device
        ).eval()
        self._option_ids = self._score_token_ids() if config.mode == "logits" else None
        self._torch = torch

    def _score_token_ids(self) -> list[int]:
        """The token of each score right after ANSWER_LEAD; the logits mode needs one token per score."""
        lead = self.tokenizer(ANSWER_LEAD, add_special_tokens=False)["input_ids"]
        ids = []
        for score in SCORES:
            full = self.tokenizer(ANSWER_LEAD + str(score), add_special_tokens=False)["input_ids"]
            if full[: len(lead)] != lead or len(full) != len(lead) + 1:
                raise ValueError(f"roboreward: logits mode needs each score to be one token after {ANSWER_LEAD!r}")
            ids.append(full[-1])
        return ids

    def score(self, requests: Sequence[RewardRequest]) -> list[Reward]:
        """Score progress requests that carry the episode video; all are checked before any compute."""
        config = self.config
        shown = []
        for i, request in enumerate(requests):
            if request.modality != "progress":
                raise RequestError(f"request {i}: roboreward answers progress only, not {request.modality!r}")
            validate_request(request, i)
            if request.video is None:
                raise RequestError(f"request {i}: roboreward judges a video; pass request.video (the episode so far)")
            shown.append(
                prepare_video(
                    request.video,
                    video_fps=request.video_fps,
                    fps=config.fps,
                    max_frames=config.max_frames,
                    max_side=config.max_side,
                )
            )
        results: list[Reward] = []
        for start in range(0, len(requests), config.max_batch_size):
            batch = list(range(start, min(start + config.max_batch_size, len(requests))))
            with self._torch.inference_mode():
                inputs = self._encode([requests[i].task for i in batch], [shown[i] for i in batch])
                if config.mode == "logits":
                    results.extend(self._expected(inputs))
                else:
                    results.extend(self._parsed(self._generate(inputs), [requests[i] for i in batch]))
        return results

    def _encode(self, tasks: list[str], shown: list[tuple[np.ndarray, float | None]]) -> dict[str, Any]:
        """The chats and videos of a batch, left-padded on the device; logits mode ends each with ANSWER_LEAD."""
        lead = ANSWER_LEAD if self.config.mode == "logits" else ""
        texts = [
            self.processor.apply_chat_template(messages(self.prompt, task), tokenize=False, add_generation_prompt=True)
            + lead
            for task in tasks
        ]
        # frames_indices / fps are what Qwen3-VL turns into each frame's "<t seconds>" timestamp
        metadata = [
            {"fps": rate, "frames_indices": list(range(len(video))), "total_num_frames": len(video)}
            for video, rate in shown
        ]
        inputs = self.processor(
            text=texts,
            videos=[video for video, _ in shown],
            video_metadata=metadata,
            do_sample_frames=False,
            padding=True,
            padding_side="left",
            return_tensors="pt",
        )
        return {k: (v.to(self.device) if hasattr(v, "to") else v) for k, v in inputs.items()}

    def _generate(self, inputs: dict[str, Any]) -> list[str]:
        out = self.model.generate(
            **inputs,
            max_new_tokens=self.config.max_new_tokens,
            do_sample=False,
            temperature=None,
            top_p=None,
            top_k=None,
            pad_token_id=self.tokenizer.pad_token_id,
        )
        return self.tokenizer.batch_decode(out[:, inputs["input_ids"].shape[1] :], skip_special_tokens=True)

    def _parsed(self, texts: list[str], requests: list[RewardRequest]) -> list[Reward]:
        out = []
        for text, request in zip(texts, requests, strict=True):
            score = parse_score(text)
            if score is not None:
                out.append(Reward(value=score_value(score), raw_text=text, probs=None, parsed_ok=True))
                continue
            logger.debug("unparseable roboreward answer: %r", text)
            held = request.previous_value if self.config.on_unparseable == "hold" else None
            out.append(Reward(value=float(held or 0.0), raw_text=text, probs=None, parsed_ok=False))
        return out

    def _expected(self, inputs: dict[str, Any]) -> list[Reward]:
        torch = self._torch
        logits = self.model(**inputs, logits_to_keep=1).logits[:, -1, :].float()
        probs = torch.softmax(torch.log_softmax(logits, dim=-1)[:, self._option_ids], dim=-1).cpu().numpy()
        values = np.array([score_value(s) for s in SCORES])
        return [
            Reward(
                value=float(row @ values),
                raw_text=ANSWER_LEAD,
                probs={str(s): float(p) for s, p in zip(SCORES, row, strict=True)},
                parsed_ok=True,
            )
            for row in probs
        ]


__all__ = [
    "ANSWER_LEAD",
    "RoboRewardBackendConfig",
    "RoboRewardModel",
    "RoboRewardPrompt",
    "messages",
    "parse_score",
    "score_value",
]
