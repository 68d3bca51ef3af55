"""Reading answers as the reference LRM server reads them, for the published adapters.

The published adapters were evaluated, and their paper numbers produced, by the
answer reading of the public reference server (physical-superintelligence-lab/
Large-Reward-Models, `vlm_reward/vlm_reward_server.py`: `extract_comparison_result`,
`extract_progress_score`, the parsing in `compute_vlm_completion`). Its
behaviour is reimplemented here, not its code; where it differs from this
project's tolerant parser (lrm.backends.parsing) the reference wins for a
template with `parser: reference`:

- contrastive: the first brace block without nested braces, read as JSON, if
  its answer value is one of the options; else the first `"key": "<option>"`
  pair in the text; else the option whose name occurs last in the text. So
  "ImageB" (the current frame more complete) -> +1, "ImageA" -> -1.
- progress: the first brace block's value, or else the first `"key": value`
  pair (quoted or not), clamped to [0, 1] and never snapped to the 0.1 grid;
  "NA" reads as 0.0.
- completion: the last `"key": "yes"|"no"` pair, case-insensitive.

`read_reference` returns None where the reference falls back; what it falls
back to (`reference_fallback`) is the preset's default for unusable answers:
contrastive 0; progress the first of a list of bare-number patterns, else 0;
completion "yes" when the text says "yes" and nowhere "no", else "no".
"""

from __future__ import annotations

import json
import re
from typing import Any

from lrm.backends.prompts import PromptTemplate

__all__ = ["read_reference", "reference_fallback"]

_FLAT_BLOCK = re.compile(r"\{[^}]+\}")  # the reference reads the first such block, not the last

# Where no "key": value pair is found, progress tries these in order and takes the
# first hit: a 0-or-1-looking number anywhere, a number after "progress"/"score"
# (capitalised first), a number ending the text, a number starting it.
_BARE_NUMBER = r"([0-9]*\.?[0-9]+)"
_PROGRESS_PATTERNS = tuple(
    re.compile(p)
    for p in (
        r"\b(0(\.[0-9]+)?|1(\.0)?)\b",
        r"Progress[:\s]*" + _BARE_NUMBER,
        r"progress[:\s]*" + _BARE_NUMBER,
        r"Score[:\s]*" + _BARE_NUMBER,
        r"score[:\s]*" + _BARE_NUMBER,
        _BARE_NUMBER + r"\s*$",
        r"^" + _BARE_NUMBER,
    )
)


def read_reference(text: str, template: PromptTemplate) -> float | None:
    """The reward the reference reads from `text`, or None where it would fall back. Never raises."""
    if not isinstance(text, str):
        return None
    reader = {"contrastive": _read_choice, "progress": _read_progress, "completion": _read_yes_no}
    return reader[template.modality](text, template)


def reference_fallback(text: str, template: PromptTemplate) -> float:
    """The reference's reward for an answer `read_reference` could not read."""
    text = text if isinstance(text, str) else ""
    if template.modality == "progress":
        for pattern in _PROGRESS_PATTERNS:
            match = pattern.search(text)
            if match is not None:
                try:
                    return _clamp(float(match.group(1)))
                except ValueError:
                    continue
        return 0.0
    if template.modality == "completion":
        lowered = text.lower()
        said_yes = "yes" in lowered and "no" not in lowered  # any "no", also inside "not", means no
        return _value_of(template, "yes" if said_yes else "no")
    return 0.0


def _read_choice(text: str, template: PromptTemplate) -> float | None:
    names = {str(o.literal): o.value for o in template.options}
    data = _first_block(text)
    if isinstance(data, dict) and template.answer_key in data:
        value = data[template.answer_key]
        if isinstance(value, str) and value in names:
            return names[value]
    alternatives = "|".join(re.escape(n) for n in names)
    pair = re.search(rf'"{re.escape(template.answer_key)}"\s*:\s*"({alternatives})"', text)
    if pair is not None:
        return names[pair.group(1)]
    last = {name: text.rfind(name) for name in names}
    latest = max(last.values())
    winners = [name for name, at in last.items() if at == latest]
    if latest < 0 or len(winners) > 1:
        return None
    return names[winners[0]]


def _read_progress(text: str, template: PromptTemplate) -> float | None:
    key = template.answer_key
    data = _first_block(text)
    if isinstance(data, dict) and key in data:
        value = data[key]
        if value in ("NA", "na"):
            return 0.0
        try:
            return _clamp(float(value))
        except (TypeError, ValueError):
            pass  # e.g. "high": the pair search below may still find a number
    pair = re.search(rf'"{re.escape(key)}"\s*:\s*"?(NA|[0-9.]+)"?', text, re.IGNORECASE)
    if pair is not None:
        if pair.group(1).upper() == "NA":
            return 0.0
        try:
            return _clamp(float(pair.group(1)))
        except ValueError:
            return None
    return None


def _read_yes_no(text: str, template: PromptTemplate) -> float | None:
    pairs = re.findall(rf'"{re.escape(template.answer_key)}"\s*:\s*"(yes|no)"', text, re.IGNORECASE)
    if not pairs:
        return None
    return _value_of(template, pairs[-1].lower())


def _first_block(text: str) -> Any:
    block = _FLAT_BLOCK.search(text)
    if block is None:
        return None
    try:
        return json.loads(block.group(0))
    except ValueError:
        return None


def _clamp(value: float) -> float:
    # max of min, as the reference writes it: a NaN then lands on 1.0 there and here
    return max(0.0, min(1.0, value))


def _value_of(template: PromptTemplate, name: str) -> float:
    return next(o.value for o in template.options if str(o.literal).lower() == name)
