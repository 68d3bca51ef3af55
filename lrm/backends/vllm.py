"""The `vllm` backend: the published LRM on vLLM's OpenAI-compatible server, one base with three LoRAs.

vLLM batches requests of many clients continuously and keeps the three
adapters on one copy of Qwen3-VL-8B (multi-LoRA), so on a GPU it is the engine
for the LRM itself. Start it with the adapters as LoRA modules named after the
modalities (a downloaded USC-PSI-Lab/LRM-models; rank 64 is the largest adapter's;
the chat template is the processor's that ships with the progress adapter, as
the reference server uses):

    vllm serve Qwen/Qwen3-VL-8B-Instruct --host 127.0.0.1 --port 8001 \\
        --enable-lora --max-lora-rank 64 --max-loras 3 \\
        --lora-modules contrastive=/models/LRM-models/contrastive progress=/models/LRM-models/progress \\
                       completion=/models/LRM-models/completion \\
        --max-logprobs 20 --limit-mm-per-prompt '{"image": 3}' \\
        --chat-template /models/LRM-models/progress/chat_template.jinja

(The progress adapter also trains the vision tower (`modules_to_save`); vLLM's
LoRA covers the language model only, so check its progress answers against
the `qwen3vl` backend on the same frames before trusting them.)

Each request becomes one chat completion with the prompt the `qwen3vl` backend
builds (the same template files, `PromptTemplate.chat`), the frames as PNG data
URLs in the same order, the modality's LoRA as `model`. `generate` mode reads
the answer text with the template's parser (lrm.backends.parsing). `logits`
mode continues the answer after its prefix (`{ "completion_progress":`) and reads
the log-probabilities of the answer tokens (`logprobs`, `top_logprobs`):
see `option_probs_from_logprobs`. Calls are retried as lrm.backends.http_client says.
"""

from __future__ import annotations

import base64
import dataclasses
import io
import math
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any, Literal

import numpy as np

from lrm.backends.http_client import RetryingClient
from lrm.backends.parsing import parse_answer, unusable_answer_value
from lrm.backends.prompts import PROMPTS_DIR, PromptTemplate, load_prompt, sample_video
from lrm.backends.qwen3vl import reasoning_context
from lrm.types import MODALITIES, RequestError, Reward, RewardRequest, prepare_frames, scale_image

__all__ = ["VLLMBackendConfig", "VLLMRewardModel", "chat_request", "option_probs_from_logprobs"]

_PUBLISHED = PROMPTS_DIR / "published"


@dataclasses.dataclass
class VLLMBackendConfig:
    """Settings of the `vllm` backend (module doc).

    `url` is the server's OpenAI base (…/v1); `model` the served base model's name;
    `loras` the LoRA module name of each modality (a modality not named is
    answered by the bare base). `prompts`, `mode`, `max_new_tokens_by_modality`,
    `fallback` and `max_pixels` mean what they mean for `qwen3vl`; the defaults are
    the published adapters'. `top_logprobs` is how many alternatives per answer
    token the server returns (vLLM's `--max-logprobs` bounds it, default 20).
    `concurrency` requests of a batch are in flight at once (vLLM batches them).
    """

    url: str = "http://127.0.0.1:8001/v1"
    model: str = "Qwen/Qwen3-VL-8B-Instruct"
    loras: dict[str, str] = dataclasses.field(default_factory=lambda: {m: m for m in MODALITIES})
    prompts: dict[str, str] = dataclasses.field(
        default_factory=lambda: {m: str(_PUBLISHED / f"{m}.yaml") for m in MODALITIES})
    mode: Literal["generate", "logits"] = "generate"
    max_new_tokens_by_modality: dict[str, int] = dataclasses.field(
        default_factory=lambda: {"contrastive": 512, "progress": 128, "completion": 128})
    fallback: Literal["hold_previous", "reference"] = "reference"
    max_pixels: int | None = None
    top_logprobs: int = 20
    answer_tokens: int = 8
    concurrency: int = 16
    timeout_s: float = 120.0
    connect_timeout_s: float = 5.0
    retries: int = 3
    backoff_s: float = 0.5
    backoff_max_s: float = 8.0

    def __post_init__(self) -> None:
        unknown = sorted((set(self.loras) | set(self.prompts) | set(self.max_new_tokens_by_modality)) - set(MODALITIES))
        if unknown:
            raise ValueError(f"vllm: unknown modality {unknown[0]!r}, expected {MODALITIES}")
        if self.top_logprobs < 1 or self.answer_tokens < 1 or self.concurrency < 1:
            raise ValueError("vllm: top_logprobs, answer_tokens and concurrency must be >= 1")


def _data_url(image: np.ndarray) -> str:
    from PIL import Image

    buffer = io.BytesIO()
    Image.fromarray(image).save(buffer, format="PNG", compress_level=1)
    return "data:image/png;base64," + base64.b64encode(buffer.getvalue()).decode("ascii")


def chat_request(template: PromptTemplate, request: RewardRequest, frames: dict[str, np.ndarray], *, model: str,
                 max_tokens: int, answer_start: str | None = None, top_logprobs: int = 0,
                 max_pixels: int | None = None) -> dict[str, Any]:
    """One OpenAI chat-completion body: the template's prompt (the qwen3vl backend's), images as PNG data URLs.

    `answer_start` continues an assistant message that starts with that text (the
    logits mode's forced answer prefix) instead of opening a new one.
    """
    video = None
    if template.uses_video and request.video is not None:
        video = [scale_image(f, None, max_pixels) for f in sample_video(request.video, template.video_frames)]
    messages, images = template.chat(request.task, frames, video)
    pending = iter(images)
    for message in messages:  # the processor's image placeholders, in prompt order, become the images themselves
        message["content"] = [{"type": "image_url", "image_url": {"url": _data_url(next(pending))}}
                              if part["type"] == "image" else part for part in message["content"]]
    body: dict[str, Any] = {"model": model, "messages": messages, "max_tokens": max_tokens, "temperature": 0.0}
    if answer_start is not None:
        messages.append({"role": "assistant", "content": answer_start})
        body.update(add_generation_prompt=False, continue_final_message=True)  # vLLM's extra chat parameters
    if top_logprobs:
        body.update(logprobs=True, top_logprobs=top_logprobs)
    return body


def option_probs_from_logprobs(template: PromptTemplate, rest: str, content: Sequence[dict[str, Any]]) -> np.ndarray:
    """Each answer option's probability from the answer tokens' log-probabilities; shape (options,).

    `rest` is the part of the answer prefix that was not sent (e.g. the space
    after the colon: a prefix ending in a space would be tokenised unlike the
    model's own answers); `content` is the choice's `logprobs.content`, one entry
    per generated token with its `top_logprobs`. Walking the greedy answer, an
    option gets the probability of the path up to the token that singles it out:
    the greedy token where the greedy answer is that option, an alternative in
    `top_logprobs` where it leaves the greedy path. An alternative still shared by
    several options, or an option outside the top-k, gets nothing; the result is
    normalised over the options (all zero: ValueError).
    """
    targets = [rest + template.answer_text(o)[len(template.answer_prefix):] for o in template.options]
    probs = np.zeros(len(targets))
    settled = [False] * len(targets)
    consumed, path = "", 0.0  # greedy text so far and its log-probability

    def alive(text: str) -> list[int]:
        """Options not settled yet that `text` could still be (or already holds)."""
        return [i for i, t in enumerate(targets) if not settled[i] and (t.startswith(text) or text.startswith(t))]

    for entry in content:
        token = entry["token"]
        for alt in entry.get("top_logprobs") or []:
            if alt["token"] != token and alt["token"]:
                matching = alive(consumed + alt["token"])
                if len(matching) == 1:  # this alternative leaves the greedy path for exactly one option
                    probs[matching[0]] += math.exp(path + alt["logprob"])
        path += entry["logprob"]
        consumed += token
        matching = alive(consumed)
        if len(matching) == 1:  # the greedy answer is this option from here on
            probs[matching[0]] += math.exp(path)
            settled[matching[0]] = True
        if len(matching) <= 1:
            break
    total = probs.sum()
    if total <= 0:
        raise ValueError(f"vllm: {template.modality}: no answer option among the answer tokens' top log-probabilities")
    return probs / total


class VLLMRewardModel:
    """Scores RewardRequests on a vLLM server (module doc)."""

    def __init__(self, config: VLLMBackendConfig) -> None:
        self.config = config
        self.templates = {m: load_prompt(config.prompts.get(m, PROMPTS_DIR / f"{m}.yaml")) for m in MODALITIES}
        self.client = RetryingClient.for_backend(config, "vllm")
        self._pool = ThreadPoolExecutor(config.concurrency, thread_name_prefix="vllm")

    @property
    def needs_video(self) -> bool:
        return any(t.uses_video for t in self.templates.values())

    def score(self, requests: Sequence[RewardRequest]) -> list[Reward]:
        frames = [prepare_frames(r, i, None, self.config.max_pixels) for i, r in enumerate(requests)]
        for i, request in enumerate(requests):
            if self.templates[request.modality].uses_video and request.video is None:
                raise RequestError(f"request {i}: the {request.modality} prompt shows the episode video")
        return list(self._pool.map(self._score_one, requests, frames))

    def _score_one(self, request: RewardRequest, frames: dict[str, np.ndarray]) -> Reward:
        template = self.templates[request.modality]
        model = self.config.loras.get(request.modality, self.config.model)
        budget = self.config.max_new_tokens_by_modality.get(request.modality, 128)
        context = ""
        if self.config.mode == "generate" or template.reasoning:
            body = chat_request(template, request, frames, model=model, max_tokens=budget,
                                max_pixels=self.config.max_pixels)
            text = self.client.call("POST", "chat/completions", body)["choices"][0]["message"]["content"] or ""
            if self.config.mode == "generate":
                value = parse_answer(text, template)
                if value is None:
                    value = unusable_answer_value(text, template, request.previous_value, self.config.fallback)
                    return Reward(float(value), raw_text=text, parsed_ok=False)
                return Reward(float(value), raw_text=text)
            context = reasoning_context(text, template.answer_key)
        sent = (context + template.answer_prefix).rstrip()
        rest = (context + template.answer_prefix)[len(sent):]
        body = chat_request(template, request, frames, model=model, max_tokens=self.config.answer_tokens,
                            answer_start=sent, top_logprobs=self.config.top_logprobs,
                            max_pixels=self.config.max_pixels)
        choice = self.client.call("POST", "chat/completions", body)["choices"][0]
        row = option_probs_from_logprobs(template, rest, (choice.get("logprobs") or {}).get("content") or [])
        values = [float(o.value) for o in template.options]
        return Reward(value=float(np.dot(row, values)), raw_text=context + template.answer_prefix,
                      probs={o.name: float(p) for o, p in zip(template.options, row, strict=True)})
