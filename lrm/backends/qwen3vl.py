"""The `qwen3vl` backend: a Qwen3-VL base with one LoRA adapter per reward modality.

One copy of the base model lives in memory; the three adapters (contrastive,
progress, completion) are loaded through peft onto it and switched by name per
batch (lrm.backends.qwen3vl_loading: the reference's loading order, and a check
that refuses adapters whose weights did not arrive). A modality without an
adapter is scored by the bare base model (zero-shot). Frames reach the processor
at their native size unless `image_size` (exact, distorting) or `max_pixels`
(a budget, aspect ratio kept) says otherwise.

Two scoring modes:

- `generate` (the paper's way): greedy decoding, then the tolerant JSON parser.
- `logits`: the probability of every answer option at the answer position. The
  prompt is continued with the canonical answer text `{"key": OPTION}` of every
  option, scored by the sum of its token log-probabilities and normalised over
  the options. Tokens shared by all options (`{"key": `) are part of the single
  prompt pass; the rest is scored as a token trie (lrm.backends.answer_trie) in one
  extra pass of a few tokens per row over the prompt's KV cache, which is never
  copied, so memory does not grow with the number of options. With
  reasoning on, the reasoning is generated first and the options are scored
  after it (today in a second prefill over prompt + reasoning; reusing the
  generation's KV cache would save that pass). Values are expectations: expected progress over the eleven values,
  P(completed), P(current more complete) - P(previous more complete).
"""

from __future__ import annotations

import dataclasses
import importlib.util
import logging
import re
from collections.abc import Sequence
from typing import Any, Literal

import numpy as np

from common.numbers import Pixels
from lrm.backends.answer_trie import AnswerTrie, option_probs
from lrm.backends.parsing import FallbackPolicy, ParseStats, parse_answer, unusable_answer_value
from lrm.backends.prompts import PROMPTS_DIR, PromptTemplate, load_prompt, render_prompt, sample_video
from lrm.backends.qwen3vl_loading import ModelSource, as_source, load_model, load_processor
from lrm.types import MODALITIES, RequestError, Reward, RewardRequest, prepare_frames, scale_image

logger = logging.getLogger(__name__)

ScoringMode = Literal["generate", "logits"]


@dataclasses.dataclass
class Qwen3VLBackendConfig:
    """Settings of the `qwen3vl` backend.

    `model` is a local path or hub id. Each adapter is a path or hub id, or
    `{path, subfolder}` for one folder of a hub repository (the published
    adapters: `{path: USC-PSI-Lab/LRM-models, subfolder: progress}`); `processor`
    likewise names where the processor and chat template come from (None: `model`).
    `prompts` overrides the template file of a modality (default:
    configs/lrm/prompts/<modality>.yaml). `reasoning` overrides every template's
    reasoning flag (None keeps them). Answers get `max_new_tokens` tokens when the
    modality reasons, `max_new_tokens_direct` when not, unless
    `max_new_tokens_by_modality` names the modality. An answer that cannot be read
    is worth what `fallback` says: `hold_previous` (0, progress the env's previous
    value) or `reference` (the reference server's fallbacks, lrm.backends.reference_parsing).
    `image_size` is (height, width) every frame is resized to, distorting other
    aspect ratios; `max_pixels` instead shrinks larger frames to that many pixels
    keeping the aspect ratio; neither: frames as they come (the processor still
    rounds them to its patch grid). `device`/`dtype`/`attn_implementation` "auto"
    pick bf16 and the fastest attention on a GPU, float32 and SDPA on a CPU.
    """

    model: str = "Qwen/Qwen3-VL-8B-Instruct"
    adapters: dict[str, ModelSource | str] = dataclasses.field(default_factory=dict)
    processor: ModelSource | str | None = None
    prompts: dict[str, str] = dataclasses.field(default_factory=dict)
    mode: ScoringMode = "generate"
    reasoning: bool | None = None
    max_new_tokens: int = 256
    max_new_tokens_direct: int = 24
    max_new_tokens_by_modality: dict[str, int] = dataclasses.field(default_factory=dict)
    fallback: FallbackPolicy = "hold_previous"
    max_batch_size: int = 8
    image_size: tuple[Pixels, Pixels] | None = None
    max_pixels: int | None = None
    device: str = "auto"
    dtype: str = "auto"
    attn_implementation: str = "auto"

    def __post_init__(self) -> None:
        unknown = sorted(set(self.max_new_tokens_by_modality) - set(MODALITIES))
        if unknown:
            raise ValueError(f"max_new_tokens_by_modality: unknown modality {unknown[0]!r}, expected {MODALITIES}")
        budgets = [self.max_new_tokens, self.max_new_tokens_direct, *self.max_new_tokens_by_modality.values()]
        if min(budgets) < 1:
            raise ValueError("max_new_tokens, max_new_tokens_direct and max_new_tokens_by_modality must be >= 1")
        if self.image_size is not None and self.max_pixels is not None:
            raise ValueError("give image_size (exact, distorting) or max_pixels (aspect ratio kept), not both")
        if self.max_pixels is not None and self.max_pixels < 1:
            raise ValueError(f"max_pixels must be >= 1, got {self.max_pixels}")


def resolve_runtime(config: Qwen3VLBackendConfig) -> tuple[str, Any, str]:
    """(device, torch dtype, attention implementation) for this machine, chosen at run time."""
    import torch

    device = config.device
    if device == "auto":
        device = "cuda" if torch.cuda.is_available() else "cpu"
    on_gpu = device.startswith("cuda")
    if config.dtype == "auto":
        dtype = torch.bfloat16 if on_gpu else torch.float32
    else:
        dtype = getattr(torch, config.dtype)
    attn = config.attn_implementation
    if attn == "auto":
        attn = "flash_attention_2" if on_gpu and importlib.util.find_spec("flash_attn") else "sdpa"
    return device, dtype, attn


class Qwen3VLRewardModel:
    """Scores RewardRequests with a Qwen3-VL and per-modality LoRA adapters (see module doc)."""

    def __init__(self, config: Qwen3VLBackendConfig) -> None:
        import torch

        self.config = config
        unknown = sorted(set(config.adapters) - set(MODALITIES)) + sorted(set(config.prompts) - set(MODALITIES))
        if unknown:
            raise ValueError(f"qwen3vl: unknown modality {unknown[0]!r} in adapters/prompts, expected {MODALITIES}")
        if config.mode not in ("generate", "logits"):
            raise ValueError(f"qwen3vl: mode must be 'generate' or 'logits', got {config.mode!r}")
        if config.max_batch_size < 1:
            raise ValueError(f"qwen3vl: max_batch_size must be >= 1, got {config.max_batch_size}")
        self.templates: dict[str, PromptTemplate] = {
            m: load_prompt(config.prompts.get(m, PROMPTS_DIR / f"{m}.yaml")) for m in MODALITIES
        }
        self.device, self.dtype, attn = resolve_runtime(config)
        logger.info("loading %s on %s (%s, %s)", config.model, self.device, self.dtype, attn)
        self.processor = load_processor(as_source(config.processor or config.model))
        self.tokenizer = self.processor.tokenizer
        self.tokenizer.padding_side = "left"
        adapters = {m: as_source(a) for m, a in config.adapters.items()}
        self.model = load_model(config.model, adapters, dtype=self.dtype, attn=attn, device=self.device)
        self._active: str | None = None
        self.stats = ParseStats()
        self._torch = torch

    # ------------------------------------------------------------------ public API

    def score(self, requests: Sequence[RewardRequest]) -> list[Reward]:
        """Score requests of any modalities; results come back in request order.

        All requests are validated before any compute, so one bad frame fails the
        call with a one-line error naming its index, not halfway through.
        """
        frames = [prepare_frames(r, i, self.config.image_size, self.config.max_pixels) for i, r in enumerate(requests)]
        for i, request in enumerate(requests):
            if self.templates[request.modality].uses_video and request.video is None:
                raise RequestError(
                    f"request {i}: the {request.modality} prompt shows the episode video; pass request.video"
                )
        results: list[Reward | None] = [None] * len(requests)
        for modality in MODALITIES:
            indices = [i for i, r in enumerate(requests) if r.modality == modality]
            for start in range(0, len(indices), self.config.max_batch_size):
                chunk = indices[start : start + self.config.max_batch_size]
                rewards = self._score_batch(modality, [requests[i] for i in chunk], [frames[i] for i in chunk])
                for i, reward in zip(chunk, rewards, strict=True):
                    results[i] = reward
        assert all(r is not None for r in results), "every request belongs to exactly one batch"
        return results  # type: ignore[return-value]

    @property
    def needs_video(self) -> bool:
        """True when a prompt shows the episode video (RoboReward): callers then pass `video`."""
        return any(t.uses_video for t in self.templates.values())

    @property
    def fallback_policy(self) -> FallbackPolicy:
        """What an unreadable answer is worth (`Qwen3VLBackendConfig.fallback`); offline scoring asks."""
        return self.config.fallback

    def reasoning(self, modality: str) -> bool:
        """Whether this modality reasons before answering (template flag unless overridden)."""
        if self.config.reasoning is not None:
            return self.config.reasoning
        return self.templates[modality].reasoning

    def token_budget(self, modality: str) -> int:
        """How many new tokens an answer of this modality may take."""
        if modality in self.config.max_new_tokens_by_modality:
            return self.config.max_new_tokens_by_modality[modality]
        return self.config.max_new_tokens if self.reasoning(modality) else self.config.max_new_tokens_direct

    # ------------------------------------------------------------------ batches

    def _score_batch(self, modality: str, requests: list[RewardRequest], frames: list[dict[str, np.ndarray]]) -> list[Reward]:
        template = self.templates[modality]
        with self._torch.inference_mode(), self._adapter(modality):
            inputs = self._encode(template, requests, frames)
            if self.config.mode == "generate":
                texts = self._generate(inputs, self.token_budget(modality))
                return [self._parsed_reward(template, r, t) for r, t in zip(requests, texts, strict=True)]
            contexts = [""] * len(requests)
            if self.reasoning(modality):
                generated = self._generate(inputs, self.token_budget(modality))
                contexts = [reasoning_context(t, template.answer_key) for t in generated]
            probs = self._option_probs(template, inputs, contexts)
        values = [float(o.value) for o in template.options]
        names = [o.name for o in template.options]
        rewards = []
        for context, row in zip(contexts, probs, strict=True):
            self.stats.record(modality, True)
            rewards.append(
                Reward(
                    value=float(np.dot(row, values)),
                    raw_text=context + template.answer_prefix,
                    probs={n: float(p) for n, p in zip(names, row, strict=True)},
                    parsed_ok=True,
                )
            )
        return rewards

    def _parsed_reward(self, template: PromptTemplate, request: RewardRequest, text: str) -> Reward:
        value = parse_answer(text, template)
        ok = value is not None
        self.stats.record(template.modality, ok)
        if not ok:
            logger.debug("unparseable %s answer (env %s): %r", template.modality, request.env_id, text)
            value = unusable_answer_value(text, template, request.previous_value, self.config.fallback)
        return Reward(value=float(value), raw_text=text, probs=None, parsed_ok=ok)

    def _adapter(self, modality: str):
        """Context that activates the modality's adapter, or disables adapters for the bare base."""
        import contextlib

        if modality in self.config.adapters:
            if self._active != modality:
                self.model.set_adapter(modality)
                self._active = modality
            return contextlib.nullcontext()
        if self.config.adapters:
            return self.model.disable_adapter()
        return contextlib.nullcontext()

    def _encode(self, template: PromptTemplate, requests: list[RewardRequest], frames: list[dict[str, np.ndarray]]):
        """Chat prompts and their images into one left-padded batch on the device."""
        texts, images = [], []
        for request, frame in zip(requests, frames, strict=True):
            video = None
            if template.uses_video and request.video is not None:
                sampled = sample_video(request.video, template.video_frames)
                video = [scale_image(f, self.config.image_size, self.config.max_pixels) for f in sampled]
            text, prompt_images = render_prompt(self.processor, template, request.task, frame, video)
            texts.append(text)
            images.extend(prompt_images)
        inputs = self.processor(text=texts, images=images, padding=True, padding_side="left", return_tensors="pt")
        return {k: (v.to(self.device) if hasattr(v, "to") else v) for k, v in inputs.items()}

    def _generate(self, inputs: dict, max_new_tokens: int) -> list[str]:
        """Greedy decoding; returns only the new text of each row, special tokens removed."""
        out = self.model.generate(
            **inputs,
            max_new_tokens=max_new_tokens,
            do_sample=False,
            temperature=None,
            top_p=None,
            top_k=None,
            pad_token_id=self.tokenizer.pad_token_id,
        )
        new = out[:, inputs["input_ids"].shape[1] :]
        return self.tokenizer.batch_decode(new, skip_special_tokens=True, clean_up_tokenization_spaces=False)

    def _option_probs(self, template: PromptTemplate, inputs: dict, contexts: list[str]) -> np.ndarray:
        """Probability of each answer option after each row's context; shape (batch, options).

        The options of a row are scored as one token trie over the full answer texts
        (tokenised with the context, so merges across the boundary are kept): see answer_trie.
        """
        by_context: dict[str, AnswerTrie] = {}  # without reasoning every row's context is "": tokenise once
        for context in contexts:
            if context in by_context:
                continue
            ids = [
                self.tokenizer(context + template.answer_text(o), add_special_tokens=False)["input_ids"]
                for o in template.options
            ]
            try:
                by_context[context] = AnswerTrie.build(ids)
            except ValueError as exc:
                raise ValueError(f"qwen3vl: {template.modality}: {exc}") from None
        tries = [by_context[c] for c in contexts]
        batch = _append_tokens(inputs, [list(t.prefix) for t in tries], self.tokenizer.pad_token_id)
        return option_probs(self.model, batch, tries).cpu().numpy()


def reasoning_context(generated: str, answer_key: str) -> str:
    """The reasoning part of a generated answer: the text before its last JSON answer object.

    The options are then scored right after it. When the model wrote no answer
    object (e.g. cut off by max_new_tokens), the whole text is the reasoning and
    the answer is forced after a newline.
    """
    matches = list(re.finditer(r"\{\s*[\"']?" + re.escape(answer_key), generated))
    if matches:
        return generated[: matches[-1].start()]
    text = generated.rstrip()
    return text + "\n" if text else ""


def _append_tokens(inputs: dict, extra: list[list[int]], pad_id: int) -> dict:
    """Append per-row text tokens to a left-padded multimodal batch and left-pad it again."""
    import torch

    if not any(extra):
        return dict(inputs)
    ids, mask = inputs["input_ids"], inputs["attention_mask"]
    types = inputs.get("mm_token_type_ids")
    rows = []
    for b, tail in enumerate(extra):
        keep = mask[b].bool()
        tail_t = torch.tensor(tail, dtype=ids.dtype, device=ids.device)
        row_ids = torch.cat([ids[b][keep], tail_t])
        row_types = torch.cat([types[b][keep], torch.zeros_like(tail_t)]) if types is not None else None
        rows.append((row_ids, row_types))
    width = max(len(r[0]) for r in rows)
    new_ids = torch.full((len(rows), width), pad_id, dtype=ids.dtype, device=ids.device)
    new_mask = torch.zeros((len(rows), width), dtype=mask.dtype, device=mask.device)
    new_types = torch.zeros((len(rows), width), dtype=types.dtype, device=types.device) if types is not None else None
    for b, (row_ids, row_types) in enumerate(rows):
        n = len(row_ids)
        new_ids[b, width - n :] = row_ids
        new_mask[b, width - n :] = 1
        if new_types is not None:
            new_types[b, width - n :] = row_types
    out = dict(inputs)
    out.update(input_ids=new_ids, attention_mask=new_mask)
    if new_types is not None:
        out["mm_token_type_ids"] = new_types
    return out


def make_reward_model(config: Qwen3VLBackendConfig) -> Qwen3VLRewardModel:
    """Factory, LeRobot style: the CLI builds backends from configs through this."""
    return Qwen3VLRewardModel(config)


__all__ = [
    "Qwen3VLBackendConfig",
    "Qwen3VLRewardModel",
    "make_reward_model",
    "reasoning_context",
    "resolve_runtime",
]
