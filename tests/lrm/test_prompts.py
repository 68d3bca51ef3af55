"""The shipped templates load; malformed template files are one-line errors naming file and key."""

from __future__ import annotations

import pathlib

import pytest

from lrm.backends.prompts import PromptError, load_default_prompts, load_prompt


def test_shipped_templates() -> None:
    prompts = load_default_prompts()
    assert prompts["contrastive"].answer_key == "more_complete_image"
    assert prompts["progress"].answer_key == "completion_progress"
    assert prompts["completion"].answer_key == "task_completed"
    assert prompts["contrastive"].reasoning and prompts["progress"].reasoning
    assert not prompts["completion"].reasoning
    assert [o.value for o in prompts["progress"].options] == pytest.approx([i / 10 for i in range(11)])
    assert prompts["completion"].answer_text(prompts["completion"].options[0]) == '{"task_completed": "yes"}'


def test_optional_anchor_frame() -> None:
    template = load_default_prompts()["contrastive"]
    assert template.image_order({"current", "previous"}) == ["previous", "current"]
    assert template.image_order({"current", "previous", "first"}) == ["first", "previous", "current"]
    with_anchor = template.messages("stack", {"current", "previous", "first"})
    without = template.messages("stack", {"current", "previous"})
    count = lambda msgs: sum(1 for c in msgs[-1]["content"] if c["type"] == "image")  # noqa: E731
    assert (count(with_anchor), count(without)) == (3, 2)
    assert "Task: stack" in without[-1]["content"][0]["text"]


BASE = """\
modality: completion
answer_key: task_completed
user:
  - text: "Task: {task}"
  - image: current
options:
  - {text: '"yes"', value: 1}
  - {text: '"no"', value: 0}
"""


@pytest.mark.parametrize(
    ("text", "match"),
    [
        (BASE + "colour: red\n", "unknown key 'colour'"),
        (BASE.replace("modality: completion", "modality: vibes"), "modality: 'vibes' is not one of"),
        (BASE.replace("image: current", "image: first"), "user.1.image: frame 'first' is not used by completion"),
        (BASE.replace("value: 1}", "value: high}"), "key 'options\\[0\\].value': expected float, got str"),
        (BASE.replace("""text: '"yes"'""", "text: maybe"), "options.0.text: 'maybe' is not a JSON literal"),
        (BASE + "reasoning: 1\n", "key 'reasoning': expected bool, got int"),
        (BASE.replace('  - image: current\n', ''), r"never shows frame\(s\) \['current'\]"),
        ("user: [", "invalid YAML"),
    ],
)
def test_bad_templates(tmp_path: pathlib.Path, text: str, match: str) -> None:
    path = tmp_path / "t.yaml"
    path.write_text(text)
    with pytest.raises(PromptError, match=match) as info:
        load_prompt(path)
    assert str(info.value).startswith(str(path)) and "\n" not in str(info.value)


def test_missing_file(tmp_path: pathlib.Path) -> None:
    with pytest.raises(PromptError, match="not found"):
        load_prompt(tmp_path / "nope.yaml")
