"""The `vllm` backend: the published LRM on vLLM's OpenAI-compatible server, one base with LoRAs.

vLLM batches requests of many clients continuously and keeps LoRA adapters on
one copy of Qwen3-VL-8B (multi-LoRA), so on a GPU it is the engine for the LRM
itself. vLLM cannot load the published progress adapter as a LoRA: that adapter
keeps its own copy of the vision tower and merger (`modules_to_save`), and
vLLM's worker calls `PEFTHelper.validate_legal` (vllm/lora/peft_helper.py,
vllm/lora/worker_manager.py) before loading, which refuses any adapter with
`modules_to_save` ("vLLM only supports modules_to_save being None"; recent
versions let only a classifier's "classifier"/"score" through), and a saved
tensor that is not lora_A/lora_B would fail `parse_fine_tuned_lora_name`
(vllm/lora/utils.py, "is unsupported LoRA weight") anyway. Static
`--lora-modules` that fail to load stop the server at start
(vllm/entrypoints/openai/models/serving.py, `init_static_loras`).
`--enable-tower-connector-lora` (vllm/config/lora.py, "experimental", Qwen VL
series) puts LoRA A/B matrices on the tower and connector; it does not load
saved module copies. So contrastive and
completion are LoRAs on the base, and progress is served by a second vLLM from
the base with the progress adapter merged into it (lrm.backends.merged; two
servers on one 80 GB GPU with `--gpu-memory-utilization 0.45` each; 64 is the
largest published adapter's LoRA rank):

    vllm serve Qwen/Qwen3-VL-8B-Instruct --host 127.0.0.1 --port 8001 \\
        --enable-lora --max-lora-rank 64 --max-loras 2 \\
        --lora-modules contrastive=/models/LRM-models/contrastive completion=/models/LRM-models/completion \\
        --limit-mm-per-prompt '{"image": 3}' --gpu-memory-utilization 0.45 \\
        --chat-template /models/LRM-models/progress/chat_template.jinja
    vllm serve /models/lrm-progress-merged --served-model-name progress --host 127.0.0.1 --port 8002 \\
        --limit-mm-per-prompt '{"image": 3}' --gpu-memory-utilization 0.45 \\
        --chat-template /models/LRM-models/progress/chat_template.jinja

and `urls: {progress: http://127.0.0.1:8002/v1}` in the backend config. At start
the backend asks every server it uses for its models (`GET /v1/models`) and
refuses, in one line, a model name that is not served, or a LoRA whose adapter
(read where `adapter_dirs` or the server's `root` path is a local folder) keeps
`modules_to_save`, which vLLM would not apply.

Each request becomes chat completions with the prompt the `qwen3vl` backend
builds (the same template files, `PromptTemplate.chat`), the frames as PNG data
URLs in the same order, the modality's served model as `model`. `generate` mode
reads the answer text with the template's parser (lrm.backends.parsing).
`logits` mode gives the exact per-option probabilities of the `qwen3vl`
backend: after the reasoning (a generate call, when the template reasons), one
call per option reads the log-probabilities of that option's answer tokens from
`prompt_logprobs` (lrm.backends.vllm_protocol). A call that carries
`prompt_logprobs` does not read vLLM's prefix cache (vllm/sampling_params.py sets
`skip_reading_prefix_cache` from it, and the chat API does not expose that
field), so each option costs the server a prefill of the language model; the
images are encoded once (vllm/v1/core/encoder_cache_manager.py shares encoder
outputs between requests by image hash). Calls are retried as
lrm.backends.http_client says.
"""

from __future__ import annotations

import dataclasses
import json
import pathlib
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from types import SimpleNamespace
from typing import Any, Literal

import numpy as np

from lrm.backends.http_client import RetryingClient, ServerError
from lrm.backends.parsing import parse_answer, unusable_answer_value
from lrm.backends.prompts import PROMPTS_DIR, load_prompt
from lrm.backends.qwen3vl import reasoning_context
from lrm.backends.vllm_protocol import (
    chat_request,
    normalised,
    option_logprob_sums,
    option_request,
    prompt_token_logprobs,
)
from lrm.types import MODALITIES, RequestError, Reward, RewardRequest, prepare_frames

__all__ = ["VLLMBackendConfig", "VLLMRewardModel", "saved_modules"]

_PUBLISHED = PROMPTS_DIR / "published"


@dataclasses.dataclass
class VLLMBackendConfig:
    """Settings of the `vllm` backend (module doc).

    `url` is the server's OpenAI base (…/v1); `urls` overrides it per modality
    (progress on the server of the merged model). `model` is the served base
    model's name; `loras` the served model name of each modality (a modality not
    named is answered by `model`). `adapter_dirs` are local folders of the
    modalities' adapters, read at start for `modules_to_save` when the server's
    own path for them is not a folder here. `prompts`, `mode`,
    `max_new_tokens_by_modality`, `fallback` and `max_pixels` mean what they mean
    for `qwen3vl`; the defaults are the published adapters'. `concurrency` calls
    are in flight at once (vLLM batches them).
    """

    url: str = "http://127.0.0.1:8001/v1"
    urls: dict[str, str] = dataclasses.field(default_factory=lambda: {"progress": "http://127.0.0.1:8002/v1"})
    model: str = "Qwen/Qwen3-VL-8B-Instruct"
    loras: dict[str, str] = dataclasses.field(default_factory=lambda: {m: m for m in MODALITIES})
    adapter_dirs: dict[str, str] = dataclasses.field(default_factory=dict)
    prompts: dict[str, str] = dataclasses.field(
        default_factory=lambda: {m: str(_PUBLISHED / f"{m}.yaml") for m in MODALITIES})
    mode: Literal["generate", "logits"] = "generate"
    max_new_tokens_by_modality: dict[str, int] = dataclasses.field(
        default_factory=lambda: {"contrastive": 512, "progress": 128, "completion": 128})
    fallback: Literal["hold_previous", "reference"] = "reference"
    max_pixels: int | None = None
    concurrency: int = 16
    timeout_s: float = 120.0
    connect_timeout_s: float = 5.0
    retries: int = 3
    backoff_s: float = 0.5
    backoff_max_s: float = 8.0

    def __post_init__(self) -> None:
        named = (set(self.urls) | set(self.loras) | set(self.adapter_dirs) | set(self.prompts)
                 | set(self.max_new_tokens_by_modality))
        unknown = sorted(named - set(MODALITIES))
        if unknown:
            raise ValueError(f"vllm: unknown modality {unknown[0]!r}, expected {MODALITIES}")
        if self.concurrency < 1 or min(self.max_new_tokens_by_modality.values(), default=1) < 1:
            raise ValueError("vllm: concurrency and max_new_tokens_by_modality must be >= 1")


def saved_modules(adapter_dir: str | pathlib.Path) -> list[str]:
    """The `modules_to_save` of a PEFT adapter folder ([] without them, or without a readable adapter_config.json)."""
    path = pathlib.Path(adapter_dir) / "adapter_config.json"
    try:
        config = json.loads(path.read_text())
    except (OSError, ValueError):
        return []
    modules = config.get("modules_to_save") if isinstance(config, dict) else None
    return [str(m) for m in modules] if isinstance(modules, list) else []


class VLLMRewardModel:
    """Scores RewardRequests on vLLM servers (module doc)."""

    def __init__(self, config: VLLMBackendConfig) -> None:
        self.config = config
        self.templates = {m: load_prompt(config.prompts.get(m, PROMPTS_DIR / f"{m}.yaml")) for m in MODALITIES}
        self.models = {m: config.loras.get(m, config.model) for m in MODALITIES}
        # one client per server, each with the config's timeouts and retries
        self.clients = {url: RetryingClient.for_backend(SimpleNamespace(**{**vars(config), "url": url}), "vllm")
                        for url in dict.fromkeys([config.url, *config.urls.values()])}
        self._cards: dict[str, dict[str, dict[str, Any]]] = {}  # url -> served model name -> its card
        self.served = {m: self._check_served(m) for m in MODALITIES}
        self._pool = ThreadPoolExecutor(config.concurrency, thread_name_prefix="vllm")

    @property
    def client(self) -> RetryingClient:
        """The base server's client (the one every modality uses unless `urls` names another)."""
        return self.clients[self.config.url]

    @property
    def needs_video(self) -> bool:
        return any(t.uses_video for t in self.templates.values())

    def _client_of(self, modality: str) -> RetryingClient:
        return self.clients[self.config.urls.get(modality, self.config.url)]

    def _check_served(self, modality: str) -> dict[str, Any]:
        """The model card that answers `modality`; ValueError, one line, when it is missing or would be wrong."""
        client, name = self._client_of(modality), self.models[modality]
        if client.url not in self._cards:
            try:
                listed = client.call("GET", "models").get("data", [])
            except (ServerError, RequestError) as exc:  # at start an unreachable server is a setting to fix
                raise ValueError(f"vllm: {exc}") from None
            self._cards[client.url] = {str(card.get("id")): card for card in listed if isinstance(card, dict)}
        cards = self._cards[client.url]
        local = self.config.adapter_dirs.get(modality)
        card = cards.get(name)
        if card is not None and local is None and card.get("parent") and pathlib.Path(str(card.get("root"))).is_dir():
            local = str(card["root"])  # a LoRA's card names the folder the server loaded it from
        saved = saved_modules(local) if local else []
        why = (f"its adapter ({local}) keeps its own {saved} (modules_to_save), which vLLM refuses to load as a "
               "LoRA; serve it from a model with the adapter merged (lrm.backends.merged) and set vllm.urls")
        if card is None:
            raise ValueError(f"vllm: {client.url} does not serve {name!r} for {modality} (it serves {sorted(cards)})"
                             + (f"; {why}" if saved else ""))
        if saved and card.get("parent"):
            raise ValueError(f"vllm: {modality} is served as the LoRA {name!r}, but {why}")
        return card

    def score(self, requests: Sequence[RewardRequest]) -> list[Reward]:
        frames = [prepare_frames(r, i, None, self.config.max_pixels) for i, r in enumerate(requests)]
        for i, request in enumerate(requests):
            if self.templates[request.modality].uses_video and request.video is None:
                raise RequestError(f"request {i}: the {request.modality} prompt shows the episode video")
        generated: list[str | None] = [None] * len(requests)
        asked = [i for i, r in enumerate(requests)
                 if self.config.mode == "generate" or self.templates[r.modality].reasoning]
        for i, text in zip(asked, self._pool.map(lambda i: self._generate(requests[i], frames[i]), asked)):
            generated[i] = text
        if self.config.mode == "generate":
            return [self._parsed(r, t or "") for r, t in zip(requests, generated, strict=True)]
        contexts = [reasoning_context(t, self.templates[r.modality].answer_key) if t is not None else ""
                    for r, t in zip(requests, generated, strict=True)]
        return self._option_rewards(requests, frames, contexts)

    def _generate(self, request: RewardRequest, frames: dict[str, np.ndarray]) -> str:
        modality = request.modality
        body = chat_request(self.templates[modality], request, frames, model=self.models[modality],
                            max_tokens=self.config.max_new_tokens_by_modality.get(modality, 128),
                            max_pixels=self.config.max_pixels)
        answer = self._client_of(modality).call("POST", "chat/completions", body)
        return answer["choices"][0]["message"]["content"] or ""

    def _parsed(self, request: RewardRequest, text: str) -> Reward:
        template = self.templates[request.modality]
        value = parse_answer(text, template)
        if value is None:
            value = unusable_answer_value(text, template, request.previous_value, self.config.fallback)
            return Reward(float(value), raw_text=text, parsed_ok=False)
        return Reward(float(value), raw_text=text)

    def _option_rewards(self, requests: Sequence[RewardRequest], frames: Sequence[dict[str, np.ndarray]],
                        contexts: Sequence[str]) -> list[Reward]:
        """Every option of every request scored in one pool of calls (module doc), then normalised per request."""
        calls = [(i, k) for i, r in enumerate(requests) for k in range(len(self.templates[r.modality].options))]

        def ask(call: tuple[int, int]) -> list[tuple[int, float]]:
            i, k = call
            modality = requests[i].modality
            body = option_request(self.templates[modality], requests[i], frames[i], model=self.models[modality],
                                  context=contexts[i], option_index=k, max_pixels=self.config.max_pixels)
            answer = self._client_of(modality).call("POST", "chat/completions", body)
            try:
                return prompt_token_logprobs(answer)
            except ValueError as exc:
                raise ValueError(f"vllm: {modality} option {k}: {exc}") from None

        paths = list(self._pool.map(ask, calls))
        rewards, start = [], 0
        for request, context in zip(requests, contexts, strict=True):
            template = self.templates[request.modality]
            mine = paths[start : start + len(template.options)]
            start += len(template.options)
            try:
                row = normalised(option_logprob_sums(mine))
            except ValueError as exc:
                raise ValueError(f"vllm: {request.modality}: {exc}") from None
            values = [float(o.value) for o in template.options]
            rewards.append(Reward(value=float(np.dot(row, values)), raw_text=context + template.answer_prefix,
                                  probs={o.name: float(p) for o, p in zip(template.options, row, strict=True)}))
        return rewards
