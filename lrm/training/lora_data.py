"""Reward-dataset examples as TRL training records, in the exact format the `qwen3vl` backend uses.

A LoRA adapter only works with the prompt and answer format it was trained on,
so both come from the backend's own code: the prompt is `lrm.backends.prompts.render_prompt`
(the same template, chat template and image order as `Qwen3VLRewardModel`), the
answer is the template's canonical JSON answer (`PromptTemplate.answer_text`),
which `lrm.backends.parsing` reads back strictly and the logits mode scores token by token.

Targets:
- SFT (progress, completion): `{rationale}\\n{answer}` when the template reasons
  and the example has a rationale, else the answer alone;
- DPO (contrastive): chosen = the correct answer, rejected = the other option,
  both after the same rationale when there is one (its log-ratio cancels between
  the two, so the preference is on the answer).

Each completion ends with the chat template's end of turn (e.g. `<|im_end|>\\n`), so
a trained adapter also learns to stop. Records are TRL's non-conversational
"prompt-completion" / "preference" formats with an `images` column; the prompt
is already rendered, so TRL's collators tokenise it exactly as the backend does.

Images: every distinct frame is held once (`RewardDataset.image_bank`, resized to
the backend's `image_size`); the HF dataset holds only bank rows, and a transform
hands the frames to the collator as the uint8 arrays the backend passes.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any

import numpy as np

from lrm.backends.prompts import AnswerOption, PromptTemplate, render_prompt
from lrm.training.dataset import Example, RewardDataset

log = logging.getLogger(__name__)

__all__ = ["answer_option", "end_of_turn", "hf_dataset", "records", "target_text"]

_SENTINEL = "\x00ANSWER\x00"


def answer_option(template: PromptTemplate, example: Example, *, correct: bool = True) -> AnswerOption:
    """The template option naming the example's answer, or (correct=False) the wrong one of two."""
    names = {o.name: o for o in template.options}
    if example.answer not in names:
        raise ValueError(
            f"{template.modality} answer {example.answer!r} of episode {example.episode} is not an option "
            f"of the prompt template (options: {sorted(names)})"
        )
    if correct:
        return names[example.answer]
    others = [o for o in template.options if o.name != example.answer]
    if len(others) != 1:
        raise ValueError(f"{template.modality}: a preference pair needs exactly two answer options, got {len(names)}")
    return others[0]


def target_text(template: PromptTemplate, example: Example, option: AnswerOption) -> str:
    """What the assistant says: the rationale (if the template reasons and there is one), then the JSON answer.

    The newline before the answer is what `lrm.backends.qwen3vl.reasoning_context` cuts at.
    """
    answer = template.answer_text(option)
    if template.reasoning and example.rationale and example.rationale.strip():
        return f"{example.rationale.strip()}\n{answer}"
    return answer


def end_of_turn(processor: Any, template: PromptTemplate) -> str:
    """The text the chat template writes after an assistant message's content (e.g. "<|im_end|>\\n").

    TRL appends no end of turn to pre-rendered vision records, so it is taken from
    the model's own chat template: prompt + assistant turn minus the generation prompt.
    """
    frames = {key: np.zeros((1, 1, 3), np.uint8) for key in _frame_keys(template)}
    messages, _ = template.chat("task", frames)
    prompt = processor.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
    answer = {"role": "assistant", "content": [{"type": "text", "text": _SENTINEL}]}
    full = processor.apply_chat_template([*messages, answer], tokenize=False)
    if not full.startswith(prompt) or _SENTINEL not in full[len(prompt) :]:
        raise ValueError("the processor's chat template does not continue the generation prompt with the answer")
    return full[len(prompt) :].split(_SENTINEL, 1)[1]


def _frame_keys(template: PromptTemplate) -> set[str]:
    return {part.image for part in template.user if part.image is not None}


def records(
    dataset: RewardDataset,
    examples: Sequence[Example],
    template: PromptTemplate,
    processor: Any,
    image_size: tuple[int, int] | None,
    *,
    preference: bool,
) -> tuple[list[dict[str, Any]], np.ndarray]:
    """(records, image bank): one record per example, images as rows into the bank.

    SFT records: prompt, completion, rows; preference records: prompt, chosen,
    rejected, rows. The bank is (N, H, W, 3) uint8, frames resized as the backend
    resizes them.
    """
    examples = [ex for ex in examples if ex.modality == template.modality]
    bank, refs = dataset.image_bank(examples, tuple(image_size) if image_size is not None else None)
    eot = end_of_turn(processor, template)
    out: list[dict[str, Any]] = []
    for ex, ref in zip(examples, refs, strict=True):
        # The prompt and its image order come from the backend's code; the rows follow that order.
        prompt, rows = render_prompt(processor, template, ex.task, ref)
        record: dict[str, Any] = {"prompt": prompt, "rows": [int(r) for r in rows]}
        if preference:
            record["chosen"] = target_text(template, ex, answer_option(template, ex)) + eot
            record["rejected"] = target_text(template, ex, answer_option(template, ex, correct=False)) + eot
        else:
            record["completion"] = target_text(template, ex, answer_option(template, ex)) + eot
        out.append(record)
    return out, bank


def hf_dataset(recs: list[dict[str, Any]], bank: np.ndarray):
    """A `datasets.Dataset` of the records whose `images` column is read from the bank on access."""
    from datasets import Dataset

    columns = {key: [r[key] for r in recs] for key in recs[0]} if recs else {"prompt": [], "rows": []}
    data = Dataset.from_dict(columns)

    def with_images(batch: dict[str, list[Any]]) -> dict[str, list[Any]]:
        out = {k: v for k, v in batch.items() if k != "rows"}
        out["images"] = [[bank[r] for r in rows] for rows in batch["rows"]]
        return out

    data.set_transform(with_images)
    return data
