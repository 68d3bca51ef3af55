"""The answer parser on a corpus of well-formed and malformed answers; it never raises."""

from __future__ import annotations

import pytest

from lrm.backends.parsing import ParseStats, fallback_value, parse_answer
from lrm.backends.prompts import load_default_prompts

PROMPTS = load_default_prompts()

# (modality, answer text, expected value or None for a failure)
CORPUS: list[tuple[str, str, float | None]] = [
    # strict JSON, as the adapters are trained to answer
    ("completion", '{"task_completed": "yes"}', 1.0),
    ("completion", '{"task_completed": "no"}', 0.0),
    ("progress", '{"completion_progress": 0.7}', 0.7),
    ("progress", '{"completion_progress": 1.0}', 1.0),
    ("progress", '{"completion_progress": 0}', 0.0),
    ("contrastive", '{"more_complete_image": 2}', 1.0),
    ("contrastive", '{"more_complete_image": 1}', -1.0),
    ("contrastive", '  {"more_complete_image": 2}\n', 1.0),
    # reasoning first, JSON last
    ("progress", 'The gripper holds the cube above the table.\n{"completion_progress": 0.6}', 0.6),
    ("contrastive", 'In image 2 the cube is lifted; in image 1 it is on the table. {"more_complete_image": 2}', 1.0),
    ("contrastive", 'Template: {"more_complete_image": 1}. Actually the second is better: {"more_complete_image": 2}', 1.0),
    # code fences
    ("completion", '```json\n{"task_completed": "yes"}\n```', 1.0),
    ("progress", 'Reasoning...\n```\n{"completion_progress": 0.3}\n```', 0.3),
    ("progress", 'text ```json\n{"completion_progress": 0.2} trailing\n```', 0.2),
    # single quotes / python literals
    ("completion", "{'task_completed': 'no'}", 0.0),
    ("progress", "so: {'completion_progress': 0.9}", 0.9),
    # value spelled differently
    ("completion", '{"task_completed": "Yes"}', 1.0),
    ("completion", '{"task_completed": true}', 1.0),
    ("completion", '{"task_completed": 0}', 0.0),
    ("progress", '{"completion_progress": "0.4"}', 0.4),
    ("progress", '{"completion_progress": 0.35}', 0.3),  # snapped to the nearest option (tie -> lower)
    ("progress", '{"completion_progress": 0.72}', 0.7),
    ("contrastive", '{"more_complete_image": "2"}', 1.0),
    ("contrastive", '{"more_complete_image": "Image 1"}', -1.0),
    # bare key/value pairs, broken JSON
    ("completion", '"task_completed": yes', 1.0),
    ("progress", '{"completion_progress": 0.5', 0.5),
    ("progress", "completion_progress = 0.8", 0.8),
    ("contrastive", '{"more_complete_image": 2,}', 1.0),
    # bare values
    ("completion", "yes", 1.0),
    ("completion", "No.", 0.0),
    ("progress", "0.1", 0.1),
    ("contrastive", "Image 2", 1.0),
    # failures
    ("completion", "", None),
    ("completion", "I am not sure what the robot did here, the picture is dark.", None),
    ("completion", '{"task_completed": "maybe"}', None),
    ("completion", '{"other_key": "yes"}', None),
    ("progress", '{"completion_progress": 1.7}', None),
    ("progress", '{"completion_progress": -0.2}', None),
    ("progress", '{"completion_progress": NaN}', None),
    ("progress", '{"completion_progress": null}', None),
    ("progress", '{"completion_progress": [0.3]}', None),
    ("contrastive", '{"more_complete_image": 3}', None),
    ("contrastive", '{"more_complete_image": 1.5}', None),
    ("contrastive", "{{{{{{", None),
    ("contrastive", "}" * 5 + "{" * 5000, None),
    ("progress", "\x00\ufffd garbage \u200b", None),
]


@pytest.mark.parametrize(("modality", "text", "expected"), CORPUS)
def test_corpus(modality: str, text: str, expected: float | None) -> None:
    value = parse_answer(text, PROMPTS[modality])
    if expected is None:
        assert value is None
    else:
        assert value == pytest.approx(expected)


@pytest.mark.parametrize("bad", [None, 3, b'{"task_completed": "yes"}', ["yes"]])
def test_non_strings_never_raise(bad: object) -> None:
    assert parse_answer(bad, PROMPTS["completion"]) is None  # type: ignore[arg-type]


def test_failure_policy() -> None:
    assert fallback_value("contrastive", 0.8) == 0.0
    assert fallback_value("completion", 1.0) == 0.0
    assert fallback_value("progress", 0.6) == 0.6
    assert fallback_value("progress", None) == 0.0


def test_stats_count_failures() -> None:
    stats = ParseStats()
    for modality, text, _ in CORPUS:
        stats.record(modality, parse_answer(text, PROMPTS[modality]) is not None)
    expected_failures = sum(1 for _, _, e in CORPUS if e is None)
    assert sum(stats.failures.values()) == expected_failures
    assert sum(stats.answers.values()) == len(CORPUS)
    assert 0.0 < stats.failure_rate("progress") < 1.0
    assert stats.as_dict()["answers"]["completion"] == sum(1 for m, _, _ in CORPUS if m == "completion")
