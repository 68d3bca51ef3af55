"""Turning a model's answer text into a reward value, without ever raising.

The parser runs inside the RL loop, thousands of times per iteration, so a bad
answer must cost one reward, not the run. It tries the strict reading first (the
whole text is the JSON object the adapter was trained to emit), then tolerant
readings in order of how much they trust the text: a JSON object in a code fence,
the last JSON object after reasoning text, single-quoted pseudo-JSON, a bare
`key: value` pair, and finally a bare value. The result is mapped to an answer
option of the template; anything else is a failure, handled by `fallback_value`
(or, as the backend's `fallback` says, `unusable_answer_value`) and counted in
`ParseStats`. A template with `parser: reference` is read by
lrm.backends.reference_parsing instead, as the published adapters' server reads it.
"""

from __future__ import annotations

import ast
import dataclasses
import json
import logging
import math
import re
from typing import Any, Literal

from lrm.backends.prompts import AnswerOption, PromptTemplate
from lrm.backends.reference_parsing import read_reference, reference_fallback

logger = logging.getLogger(__name__)

_FENCE = re.compile(r"```(?:json|JSON)?\s*(.*?)```", re.DOTALL)
_NO_VALUE = object()


def parse_answer(text: str, template: PromptTemplate) -> float | None:
    """The reward value of `text` under `template`, or None when no option can be read.

    A template with `parser: reference` is read as the reference server reads it
    (lrm.backends.reference_parsing); progress may then be any value in [0, 1].
    """
    if template.parser == "reference":
        return read_reference(text, template)
    option = parse_option(text, template)
    return None if option is None else option.value


def parse_option(text: str, template: PromptTemplate) -> AnswerOption | None:
    """The answer option named by `text`, or None. Never raises."""
    try:
        raw = extract_value(text, template.answer_key)
        if raw is _NO_VALUE:
            return None
        return match_option(raw, template.options, snap_numeric=template.snap_numeric)
    except Exception:  # noqa: BLE001 - a parser inside the RL loop must never raise
        logger.debug("answer parser failed on %r", text, exc_info=True)
        return None


def extract_value(text: str, key: str) -> Any:
    """The raw value under `key` in the answer text, or the sentinel `_NO_VALUE`."""
    if not isinstance(text, str):
        return _NO_VALUE
    stripped = text.strip()
    # 1. strict: the whole answer is the JSON object.
    found = _value_from_json(stripped, key)
    if found is not _NO_VALUE:
        return found
    # 2. JSON in code fences (last fence wins: reasoning may quote an example first).
    for block in reversed(_FENCE.findall(stripped)):
        found = _value_from_json(block.strip(), key)
        if found is _NO_VALUE:
            found = _last_object_value(block, key)
        if found is not _NO_VALUE:
            return found
    # 3. the last JSON (or single-quoted, Python-literal) object anywhere in the text.
    found = _last_object_value(stripped, key)
    if found is not _NO_VALUE:
        return found
    # 4. a bare `key: value` pair, e.g. `"task_completed": yes` or `task_completed = 0.4`.
    pair = re.compile(
        r"""["']?""" + re.escape(key) + r"""["']?\s*[:=]\s*("[^"]*"|'[^']*'|[-+]?\d+(?:\.\d+)?|[A-Za-z_]+)"""
    )
    matches = pair.findall(stripped)
    if matches:
        return _literal(matches[-1])
    # 5. a bare value: the whole answer is just the option, e.g. `yes`, `0.7`, `"2"`.
    bare = stripped.strip("`").strip().rstrip(".").strip()
    if bare and "\n" not in bare and len(bare) <= 32:
        return _literal(bare)
    return _NO_VALUE


def match_option(raw: Any, options: tuple[AnswerOption, ...], *, snap_numeric: bool = False) -> AnswerOption | None:
    """The option equal to `raw`: numbers numerically, strings case-insensitively or by alias."""
    if isinstance(raw, bool):
        raw = "true" if raw else "false"
    number = _as_number(raw)
    numeric_options = [(o, _as_number(o.literal)) for o in options]
    if number is not None:
        for option, value in numeric_options:
            if value is not None and math.isclose(number, value, abs_tol=1e-6):
                return option
    if isinstance(raw, str):
        wanted = {raw.strip().strip("\"'").strip().lower()}
    elif number is not None:
        wanted = {str(raw).lower(), f"{number:g}"}
    else:
        wanted = set()
    for option in options:
        names = {str(option.literal).lower(), *(a.lower() for a in option.aliases)}
        if wanted & names:
            return option
    if snap_numeric and number is not None:
        candidates = [(o, v) for o, v in numeric_options if v is not None]
        if candidates:
            low = min(v for _, v in candidates)
            high = max(v for _, v in candidates)
            if low - 1e-6 <= number <= high + 1e-6:
                return min(candidates, key=lambda ov: abs(ov[1] - number))[0]
    return None


FallbackPolicy = Literal["hold_previous", "reference"]


def unusable_answer_value(
    text: str, template: PromptTemplate, previous_value: float | None, policy: FallbackPolicy
) -> float:
    """The reward of an answer `parse_answer` could not read.

    `hold_previous`: `fallback_value`. `reference`: what the reference server
    makes of it (its last-resort readings, then 0), the published adapters' way.
    """
    if policy == "reference":
        return reference_fallback(text, template)
    return fallback_value(template.modality, previous_value)


def fallback_value(modality: str, previous_value: float | None) -> float:
    """The reward used when an answer is unusable: 0, or for progress the env's previous value.

    Contrastive and completion fall back to the neutral 0; progress holds the
    last value so that a single bad answer does not look like a sudden regression.
    """
    if modality == "progress" and previous_value is not None:
        return float(previous_value)
    return 0.0


@dataclasses.dataclass
class ParseStats:
    """How many answers each modality produced and how many could not be parsed."""

    answers: dict[str, int] = dataclasses.field(default_factory=dict)
    failures: dict[str, int] = dataclasses.field(default_factory=dict)

    def record(self, modality: str, ok: bool) -> None:
        self.answers[modality] = self.answers.get(modality, 0) + 1
        if not ok:
            self.failures[modality] = self.failures.get(modality, 0) + 1

    def failure_rate(self, modality: str) -> float:
        total = self.answers.get(modality, 0)
        return self.failures.get(modality, 0) / total if total else 0.0

    def as_dict(self) -> dict[str, dict[str, int]]:
        return {"answers": dict(self.answers), "failures": dict(self.failures)}


def _value_from_json(text: str, key: str) -> Any:
    try:
        data = json.loads(text)
    except (json.JSONDecodeError, ValueError, RecursionError):
        return _NO_VALUE
    if isinstance(data, dict) and key in data:
        return data[key]
    return _NO_VALUE


def _last_object_value(text: str, key: str) -> Any:
    """Scan every `{` and keep the value of the last object holding `key`."""
    decoder = json.JSONDecoder()
    found: Any = _NO_VALUE
    for match in re.finditer(r"\{", text):
        start = match.start()
        try:
            data, _ = decoder.raw_decode(text, start)
        except (json.JSONDecodeError, ValueError, RecursionError):
            data = _python_literal_object(text, start)
        if isinstance(data, dict) and key in data:
            found = data[key]
    return found


def _python_literal_object(text: str, start: int) -> Any:
    """A single-quoted object such as {'task_completed': 'yes'} read as a Python literal."""
    end = text.find("}", start)
    if end < 0:
        return None
    try:
        return ast.literal_eval(text[start : end + 1])
    except (ValueError, SyntaxError, TypeError, MemoryError, RecursionError):
        return None


def _literal(token: str) -> Any:
    token = token.strip()
    if len(token) >= 2 and token[0] == token[-1] and token[0] in "\"'":
        return token[1:-1]
    number = _as_number(token)
    return number if number is not None else token


def _as_number(value: Any) -> float | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, (int, float)):
        return float(value) if math.isfinite(value) else None
    if isinstance(value, str):
        try:
            number = float(value.strip())
        except ValueError:
            return None
        return number if math.isfinite(number) else None
    return None
