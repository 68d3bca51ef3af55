"""The `qwen3vl` backend: a Qwen3-VL base with one LoRA adapter per reward modality.

One copy of the base model lives in memory; the three adapters (contrastive,
progress, completion) are loaded through peft onto it and switched by name per
batch. A modality without an adapter is scored by the bare base model (zero-shot).

Two scoring modes:

- `generate` (the paper's way): greedy decoding, then the tolerant JSON parser.
- `logits`: the probability of every answer option at the answer position. The
  prompt is continued with the canonical answer text `{"key": OPTION}` of every
  option, scored by the sum of its token log-probabilities and normalised over
  the options. Tokens shared by all options (`{"key": ` and, e.g., `0.`) are part
  of the single prompt pass; the diverging rest is scored from the KV cache in one
  extra small pass (none when every option diverges in one token). With
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
from lrm.backends.parsing import ParseStats, fallback_value, parse_answer
from lrm.backends.prompts import PROMPTS_DIR, PromptTemplate, load_prompt, render_prompt, sample_video
from lrm.types import MODALITIES, RequestError, Reward, RewardRequest, prepare_frames, resize_image

logger = logging.getLogger(__name__)

ScoringMode = Literal["generate", "logits"]


@dataclasses.dataclass
class Qwen3VLBackendConfig:
    """Settings of the `qwen3vl` backend.

    `model` and `adapters` are local paths or hub ids. `prompts` overrides the
    template file of a modality (default: configs/lrm/prompts/<modality>.yaml).
    `reasoning` overrides every template's reasoning flag (None keeps them).
    `image_size` is (height, width) every frame is resized to; None keeps frames as
    they come. `device`/`dtype`/`attn_implementation` "auto" pick bf16 and the
    fastest attention on a GPU, float32 and SDPA on a CPU.
    """

    model: str = "Qwen/Qwen3-VL-8B-Instruct"
    adapters: dict[str, str] = dataclasses.field(default_factory=dict)
    prompts: dict[str, str] = dataclasses.field(default_factory=dict)
    mode: ScoringMode = "generate"
    reasoning: bool | None = None
    max_new_tokens: int = 256
    max_new_tokens_direct: int = 24
    max_batch_size: int = 8
    image_size: tuple[Pixels, Pixels] | None = (256, 256)
    device: str = "auto"
    dtype: str = "auto"
    attn_implementation: str = "auto"


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
        from transformers import AutoProcessor, Qwen3VLForConditionalGeneration

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
        self.processor = AutoProcessor.from_pretrained(config.model)
        self.tokenizer = self.processor.tokenizer
        self.tokenizer.padding_side = "left"
        # device_map loads the weights straight onto the GPU (no full copy in host memory first).
        base = Qwen3VLForConditionalGeneration.from_pretrained(
            config.model, dtype=self.dtype, attn_implementation=attn, device_map=self.device
        )
        self.model = self._attach_adapters(base).to(self.device).eval()
        self._active: str | None = None
        self.stats = ParseStats()
        self._torch = torch

    def _attach_adapters(self, base):
        """Load every adapter onto the one base: from_pretrained for the first, load_adapter after."""
        if not self.config.adapters:
            return base
        from peft import PeftModel

        items = list(self.config.adapters.items())
        first_name, first_path = items[0]
        model = PeftModel.from_pretrained(base, first_path, adapter_name=first_name)
        for name, path in items[1:]:
            model.load_adapter(path, adapter_name=name)
        logger.info("LoRA adapters loaded: %s", [name for name, _ in items])
        return model

    # ------------------------------------------------------------------ public API

    def score(self, requests: Sequence[RewardRequest]) -> list[Reward]:
        """Score requests of any modalities; results come back in request order.

        All requests are validated before any compute, so one bad frame fails the
        call with a one-line error naming its index, not halfway through.
        """
        frames = [prepare_frames(r, i, self.config.image_size) for i, r in enumerate(requests)]
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

    def reasoning(self, modality: str) -> bool:
        """Whether this modality reasons before answering (template flag unless overridden)."""
        if self.config.reasoning is not None:
            return self.config.reasoning
        return self.templates[modality].reasoning

    # ------------------------------------------------------------------ batches

    def _score_batch(self, modality: str, requests: list[RewardRequest], frames: list[dict[str, np.ndarray]]) -> list[Reward]:
        template = self.templates[modality]
        with self._torch.inference_mode(), self._adapter(modality):
            inputs = self._encode(template, requests, frames)
            if self.config.mode == "generate":
                budget = self.config.max_new_tokens if self.reasoning(modality) else self.config.max_new_tokens_direct
                texts = self._generate(inputs, budget)
                return [self._parsed_reward(template, r, t) for r, t in zip(requests, texts, strict=True)]
            contexts = [""] * len(requests)
            if self.reasoning(modality):
                generated = self._generate(inputs, self.config.max_new_tokens)
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
            value = fallback_value(template.modality, request.previous_value)
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
                video = [resize_image(f, self.config.image_size) for f in sampled]
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
        return self.tokenizer.batch_decode(new, skip_special_tokens=True)

    def _option_probs(self, template: PromptTemplate, inputs: dict, contexts: list[str]) -> np.ndarray:
        """Probability of each answer option after each row's context; shape (batch, options)."""
        torch = self._torch
        n_opt = len(template.options)
        shared, suffixes = [], []
        for context in contexts:
            ids = [
                self.tokenizer(context + template.answer_text(o), add_special_tokens=False)["input_ids"]
                for o in template.options
            ]
            common = _common_prefix_length(ids)
            if any(len(seq) == common for seq in ids):
                raise ValueError(f"qwen3vl: answer options of {template.modality} are not distinguishable by tokens")
            shared.append(ids[0][:common])
            suffixes.append([seq[common:] for seq in ids])

        batch = _append_tokens(inputs, shared, self.tokenizer.pad_token_id)
        one_step = all(len(s) == 1 for row in suffixes for s in row)
        out = self.model(**batch, use_cache=not one_step, logits_to_keep=1)
        first = torch.log_softmax(out.logits[:, -1, :].float(), dim=-1)  # (B, V)
        scores = torch.stack(
            [first[b, [s[0] for s in row]] for b, row in enumerate(suffixes)]
        )  # (B, K): log p(first diverging token)
        if not one_step:
            scores = scores + self._continuation_logprobs(out.past_key_values, batch, suffixes, n_opt)
        return torch.softmax(scores, dim=-1).cpu().numpy()

    def _continuation_logprobs(self, cache, batch: dict, suffixes: list[list[list[int]]], n_opt: int):
        """Sum of log-probs of every option's tokens after its first, from the prompt's KV cache."""
        torch = self._torch
        bsz = len(suffixes)
        rest = [s[1:] for row in suffixes for s in row]  # (B*K) token lists, may be empty
        length = max(len(s) for row in suffixes for s in row)
        pad = self.tokenizer.pad_token_id
        ids = torch.full((bsz * n_opt, length), pad, dtype=torch.long)
        mask = torch.zeros((bsz * n_opt, length), dtype=torch.long)
        for i, row in enumerate(suffixes):
            for k, seq in enumerate(row):
                ids[i * n_opt + k, : len(seq)] = torch.tensor(seq)
                mask[i * n_opt + k, : len(seq)] = 1
        ids, mask = ids.to(self.device), mask.to(self.device)
        prompt_mask = batch["attention_mask"]
        # Text after the vision tokens continues M-RoPE at (valid length + rope delta) on all three axes.
        inner = self.model.get_base_model().model if hasattr(self.model, "get_base_model") else self.model.model
        deltas = inner.rope_deltas.view(-1)  # (B,)
        start = prompt_mask.sum(dim=1) + deltas  # (B,)
        positions = start.repeat_interleave(n_opt)[:, None] + torch.arange(length, device=self.device)[None, :]
        position_ids = positions[None].expand(3, -1, -1)
        cache.batch_repeat_interleave(n_opt)
        out = self.model(
            input_ids=ids,
            attention_mask=torch.cat([prompt_mask.repeat_interleave(n_opt, dim=0), mask], dim=1),
            position_ids=position_ids,
            past_key_values=cache,
            use_cache=True,
        )
        logp = torch.log_softmax(out.logits.float(), dim=-1)  # (B*K, L, V): position j predicts token j+1
        totals = torch.zeros(bsz * n_opt, device=logp.device)
        for r, seq in enumerate(rest):
            if seq:
                target = torch.tensor(seq, device=logp.device)
                totals[r] = logp[r, torch.arange(len(seq), device=logp.device), target].sum()
        return totals.view(bsz, n_opt)


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


def _common_prefix_length(sequences: list[list[int]]) -> int:
    length = 0
    for column in zip(*sequences):
        if any(token != column[0] for token in column):
            break
        length += 1
    return length


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
