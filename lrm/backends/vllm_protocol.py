"""What the `vllm` backend sends to vLLM's OpenAI-compatible server and how it reads the answers; pure functions.

Logits mode is exact: every answer option is scored from the log-probabilities
of its own tokens, as the `qwen3vl` backend scores it (lrm.backends.qwen3vl,
lrm.backends.answer_trie): P(option) is proportional to the product of the
probabilities of the tokens of `context + answer_text(option)` after the tokens
all options share (the closing ` }` included, no end-of-turn token), normalised
over the options. One chat request per option carries the prompt with that
option's whole answer as the start of the assistant message and asks for
`prompt_logprobs`; the answer's tokens are the tail of the prompt, so their
log-probabilities are read from the prompt, never from a top-k list of
generated tokens (which missed every option outside the top k).

Facts of vLLM's server this relies on (vllm-project/vllm source, read at the
commits named; the chat_completion/ package layout is vLLM's since 0.15):

- `vllm/entrypoints/openai/chat_completion/protocol.py` (d5dba2d), `ChatCompletionRequest`:
  `prompt_logprobs` is an extra sampling parameter of chat requests, images or
  not; `continue_final_message` (with `add_generation_prompt: false`, the two
  together are refused) renders the last assistant message open-ended, with no
  end-of-turn token; `return_token_ids` adds `prompt_token_ids` to the answer;
  `ChatCompletionResponse.prompt_logprobs` is `list[dict[int, Logprob] | None]`.
  (`echo` only copies the last message into the answer text, and sets
  `prompt_logprobs` from `top_logprobs` when unset: not needed here.)
- `vllm/logprobs.py` (`create_prompt_logprobs`), `vllm/v1/engine/logprobs.py`
  (dfafe71): the first prompt position is None (no context);
  `append_logprobs_for_next_position` puts the prompt token itself first, with
  its true rank, then the top k (ranks 1..k), so a position holds the prompt
  token plus at most k others; `Logprob` is {logprob, rank, decoded_token}.
  `clamp_prompt_logprobs` (`vllm/entrypoints/openai/engine/serving.py`, used by
  chat_completion/serving.py at 5e91864) writes -inf as -9999.0. The early V1
  `vllm/v1/engine/logprobs.py` (016e747) took `prompt_logprobs: 0` for none.
- transformers' `render_jinja_template` (what vLLM's `apply_hf_chat_template`
  calls) cuts the rendered chat right after the final message's text for
  `continue_final_message`, so the prompt ends with the option's last character.

The server tokenises the whole rendered chat at once; the `qwen3vl` backend
tokenises the prompt and the answer apart. Both give the same tokens when
Qwen's pre-tokenizer splits after the newline that ends
`<|im_start|>assistant\n`, which it does unless the answer text itself starts
with a newline (a reasoning text that does would merge into "\n\n").
"""

from __future__ import annotations

import base64
import io
import math
from collections.abc import Sequence
from typing import Any

import numpy as np

from lrm.backends.prompts import PromptTemplate, sample_video
from lrm.types import RewardRequest, scale_image

__all__ = ["chat_request", "normalised", "option_logprob_sums", "option_request", "prompt_token_logprobs"]


def _data_url(image: np.ndarray) -> str:
    from PIL import Image

    buffer = io.BytesIO()
    Image.fromarray(image).save(buffer, format="PNG", compress_level=1)
    return "data:image/png;base64," + base64.b64encode(buffer.getvalue()).decode("ascii")


def chat_request(template: PromptTemplate, request: RewardRequest, frames: dict[str, np.ndarray], *, model: str,
                 max_tokens: int, answer_start: str | None = None, max_pixels: int | None = None) -> dict[str, Any]:
    """One OpenAI chat-completion body: the template's prompt (the qwen3vl backend's), images as PNG data URLs.

    `answer_start` continues an assistant message that starts with that text
    (vLLM's `continue_final_message`) instead of opening a new one.
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
        body.update(add_generation_prompt=False, continue_final_message=True)
    return body


def option_request(template: PromptTemplate, request: RewardRequest, frames: dict[str, np.ndarray], *, model: str,
                   context: str, option_index: int, max_pixels: int | None = None) -> dict[str, Any]:
    """The body that scores one answer option: its whole answer after `context`, read back as prompt log-probabilities.

    `prompt_logprobs: 1` and not 0: every vLLM release honours 1 (the prompt
    token plus the top one), while early V1 releases took 0 for "none".
    `max_tokens: 1` because vLLM generates at least one token; it is not read.
    """
    answer = context + template.answer_text(template.options[option_index])
    body = chat_request(template, request, frames, model=model, max_tokens=1, answer_start=answer,
                        max_pixels=max_pixels)
    body.update(prompt_logprobs=1, return_token_ids=True)
    return body


def prompt_token_logprobs(answer: dict[str, Any]) -> list[tuple[int, float]]:
    """(token id, log-probability) of every prompt token after the first, from a chat answer; ValueError if absent.

    The token at a position is `prompt_token_ids[i]` when the server returns them
    (`return_token_ids`); otherwise the position's only entry, or, next to a
    top-1 entry, the one ranked below 1 (vllm/logprobs.py puts the prompt token
    with its own rank beside the top k).
    """
    positions = answer.get("prompt_logprobs")
    if not isinstance(positions, list) or len(positions) < 2:
        raise ValueError("the answer has no prompt_logprobs (a vLLM server older than its chat prompt_logprobs?)")
    ids = answer.get("prompt_token_ids")
    if ids is not None and len(ids) != len(positions):
        raise ValueError(f"prompt_token_ids has {len(ids)} tokens but prompt_logprobs {len(positions)} positions")
    out = []
    for i, entries in enumerate(positions[1:], start=1):
        if not isinstance(entries, dict) or not entries:
            raise ValueError(f"prompt_logprobs[{i}] is {entries!r}, expected token id -> {{logprob, rank}}")
        if ids is not None:
            key = str(ids[i])
            if key not in entries:
                raise ValueError(f"prompt_logprobs[{i}] lacks the prompt token {ids[i]}")
        elif len(entries) == 1:
            key = next(iter(entries))
        else:
            below_top = [k for k, v in entries.items() if v.get("rank") != 1]
            if len(below_top) != 1:
                raise ValueError(f"prompt_logprobs[{i}]: cannot tell the prompt token among {sorted(entries)}")
            key = below_top[0]
        logprob = entries[key].get("logprob")
        if not isinstance(logprob, (int, float)) or math.isnan(logprob):
            raise ValueError(f"prompt_logprobs[{i}] has no numeric logprob for token {key}")
        out.append((int(key), float(logprob)))
    return out


def option_logprob_sums(paths: Sequence[Sequence[tuple[int, float]]]) -> np.ndarray:
    """Each option's log-probability after the tokens all options share; shape (options,).

    `paths[k]` is option k's prompt as (token, log-probability) pairs (from
    `prompt_token_logprobs`). The options' prompts are the same up to where
    their answers part, so the shared tokens are those of the longest common
    prefix; they weigh every option alike and are left out, as the qwen3vl
    backend's answer trie leaves them out.
    """
    tokens = [tuple(t for t, _ in path) for path in paths]
    if len(set(tokens)) != len(tokens):
        raise ValueError("two answer options reached the server as the same tokens")
    shared = 0
    for column in zip(*tokens):
        if any(t != column[0] for t in column):
            break
        shared += 1
    return np.array([sum(lp for _, lp in path[shared:]) for path in paths])


def normalised(logprob_sums: np.ndarray) -> np.ndarray:
    """exp(logprob_sums), normalised to sum to 1 (a softmax, stable for very negative sums)."""
    shifted = np.exp(logprob_sums - logprob_sums.max())
    return shifted / shifted.sum()
