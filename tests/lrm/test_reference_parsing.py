"""Answers of the published adapters read as the reference server reads them, and its fallbacks.

Each case is an answer the reference would see and the reward it computes from
it (vlm_reward/vlm_reward_server.py of the reference repository), worked out by
hand from its reading rules.
"""

from __future__ import annotations

import pathlib

import pytest

from lrm.backends.parsing import parse_answer, unusable_answer_value
from lrm.backends.prompts import PromptError, load_prompt
from lrm.backends.reference_parsing import read_reference, reference_fallback

PUBLISHED = pathlib.Path(__file__).resolve().parents[2] / "configs" / "lrm" / "prompts" / "published"
CONTRASTIVE = load_prompt(PUBLISHED / "contrastive.yaml")
PROGRESS = load_prompt(PUBLISHED / "progress.yaml")
COMPLETION = load_prompt(PUBLISHED / "completion.yaml")


@pytest.mark.parametrize(
    ("text", "value"),
    [
        ('The carrot moved onto the plate in B.\n{ "more_complete_image": "ImageB" }', 1.0),
        ('{"more_complete_image": "ImageA"}', -1.0),
        # the first brace block decides, not the last
        ('e.g. {"more_complete_image": "ImageA"} ... so: {"more_complete_image": "ImageB"}', -1.0),
        # a first block without a valid value: the first key-value pair
        ('{"step": 1} then "more_complete_image": "ImageB" and "more_complete_image": "ImageA"', 1.0),
        ('{ "more_complete_image": "Image B" } but ImageA looked earlier', -1.0),  # "Image B" is no option
        # no pair: the option named last
        ("ImageB is blurred, ImageA shows the grasp", -1.0),
        ("ImageA shows the start; ImageB is further along", 1.0),
    ],
)
def test_contrastive(text: str, value: float) -> None:
    assert read_reference(text, CONTRASTIVE) == value
    assert parse_answer(text, CONTRASTIVE) == value


@pytest.mark.parametrize("text", ["Image B is closer", "", '{"more_complete_image": 2}'])
def test_contrastive_unreadable_is_zero(text: str) -> None:
    assert read_reference(text, CONTRASTIVE) is None
    assert reference_fallback(text, CONTRASTIVE) == 0.0


@pytest.mark.parametrize(
    ("text", "value"),
    [
        ('{ "completion_progress": 0.7 }', 0.7),
        ('{ "completion_progress": 0.35 }', 0.35),  # not snapped to the 0.1 grid
        ('{ "completion_progress": 1.4 }', 1.0),
        ('{"completion_progress": -0.2}', 0.0),
        ('{"completion_progress": "0.6"}', 0.6),
        ('{ "completion_progress": "NA" }', 0.0),
        ('{ "completion_progress": NA }', 0.0),  # not JSON: the key-value pair reads it
        ('{"completion_progress": "na"}', 0.0),
        ('Reasoning {"a": 1} then "completion_progress": 0.4', 0.4),
        ('{"completion_progress": 0.2} {"completion_progress": 0.9}', 0.2),
    ],
)
def test_progress(text: str, value: float) -> None:
    assert read_reference(text, PROGRESS) == pytest.approx(value)
    assert parse_answer(text, PROGRESS) == pytest.approx(value)


@pytest.mark.parametrize(
    ("text", "fallback"),
    [
        ("Progress: 0.6", 0.6),
        ("I would say 0.3, maybe 1", 0.3),  # the first 0-or-1-looking number anywhere
        ("progress: 55", 1.0),  # after "progress", clamped
        ("step 2 of 5", 1.0),  # a number ending the text, clamped
        ('{"completion_progress": "high"}', 0.0),
        ("no idea", 0.0),
    ],
)
def test_progress_fallbacks(text: str, fallback: float) -> None:
    assert read_reference(text, PROGRESS) is None
    assert reference_fallback(text, PROGRESS) == pytest.approx(fallback)


@pytest.mark.parametrize(
    ("text", "value"),
    [
        ('{ "task_completed": "yes" }', 1.0),
        ('{ "task_completed": "NO" }', 0.0),
        ('"task_completed": "no" ... corrected: {"task_completed": "Yes"}', 1.0),  # the last pair
    ],
)
def test_completion(text: str, value: float) -> None:
    assert read_reference(text, COMPLETION) == value


@pytest.mark.parametrize(
    ("text", "fallback"),
    [("yes, it is done", 1.0), ("yes, but not quite", 0.0), ("the carrot is on the plate", 0.0), ("", 0.0)],
)
def test_completion_fallbacks(text: str, fallback: float) -> None:
    assert read_reference(text, COMPLETION) is None
    assert reference_fallback(text, COMPLETION) == fallback


def test_the_fallback_policies() -> None:
    assert unusable_answer_value("Progress: 0.6", PROGRESS, 0.4, "reference") == pytest.approx(0.6)
    assert unusable_answer_value("Progress: 0.6", PROGRESS, 0.4, "hold_previous") == 0.4
    assert unusable_answer_value("yes, done", COMPLETION, None, "reference") == 1.0
    assert unusable_answer_value("yes, done", COMPLETION, None, "hold_previous") == 0.0
    assert unusable_answer_value("??", CONTRASTIVE, 1.0, "reference") == 0.0


def test_logits_answers_are_the_reference_format() -> None:
    assert CONTRASTIVE.answer_text(CONTRASTIVE.options[1]) == '{ "more_complete_image": "ImageB" }'
    assert COMPLETION.answer_text(COMPLETION.options[0]) == '{ "task_completed": "yes" }'
    assert PROGRESS.answer_prefix == '{ "completion_progress": '
    assert [o.name for o in PROGRESS.options] == [f"{i / 10:.1f}" for i in range(11)]


def test_the_reference_parser_needs_fitting_options(tmp_path: pathlib.Path) -> None:
    text = (PUBLISHED / "completion.yaml").read_text().replace("""'"yes"'""", """'"done"'""")
    path = tmp_path / "completion.yaml"
    path.write_text(text)
    with pytest.raises(PromptError, match=r"options: parser 'reference' reads completion answers with the options"):
        load_prompt(path)
