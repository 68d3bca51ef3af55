"""Prompt templates: YAML files under configs/lrm/prompts/, one per modality.

The prompt texts live in files, not code, because a LoRA adapter only works with
the exact prompt it was trained with: a user who plugs in a published adapter
copies its prompt into a template. A template says which frames go where, whether
the model reasons before answering, the JSON key of the answer and the answer
options with the reward each one maps to.

Loading is strict (unknown key, wrong type, missing file: one line naming the
file and the key), like the app's config loader, which `lrm` may not import.
"""

from __future__ import annotations

import dataclasses
import json
import pathlib
from typing import Any

import yaml

from lrm.types import FRAME_KEYS, MODALITIES, OPTIONAL_FRAMES, REQUIRED_FRAMES

PROMPTS_DIR = pathlib.Path(__file__).resolve().parents[2] / "configs" / "lrm" / "prompts"


class PromptError(ValueError):
    """A prompt template file is missing or malformed; the message is one line."""


@dataclasses.dataclass(frozen=True)
class PromptPart:
    """One piece of the user turn: a text (with `{task}` substituted) or a frame.

    `when` names a frame: the part is only included when the request carries that
    frame (used for the optional first-frame anchor of the contrastive prompt).
    `video: true` stands for the request's video (the episode so far), shown as
    up to `video_frames` images sampled evenly, the last one the current frame:
    whole-episode judges such as RoboReward need it.
    """

    text: str | None = None
    image: str | None = None
    when: str | None = None
    video: bool = False


@dataclasses.dataclass(frozen=True)
class AnswerOption:
    """One admissible answer: its JSON literal as the model writes it, and its reward.

    `aliases` are other spellings accepted by the tolerant parser (case-insensitive).
    """

    text: str
    value: float
    aliases: tuple[str, ...] = ()

    @property
    def literal(self) -> Any:
        """The decoded JSON value, e.g. "yes", 0.3 or 2."""
        return json.loads(self.text)

    @property
    def name(self) -> str:
        """The key of this option in `Reward.probs`."""
        return str(self.literal)


@dataclasses.dataclass(frozen=True)
class PromptTemplate:
    """A modality's prompt and answer format.

    The answer is `{"<answer_key>": <option>}`. With `reasoning` on, the model writes
    its reasoning first and the JSON object last; with it off, it answers at once.
    `snap_numeric` lets the parser map a number between options to the nearest
    option (progress), instead of calling it a failure.
    """

    modality: str
    answer_key: str
    options: tuple[AnswerOption, ...]
    user: tuple[PromptPart, ...]
    reasoning: bool = False
    system: str | None = None
    snap_numeric: bool = False
    answer_suffix: str = "}"
    video_frames: int = 8

    @property
    def uses_video(self) -> bool:
        """Whether the prompt shows the request's video (then every request must carry one)."""
        return any(part.video for part in self.user)

    @property
    def answer_prefix(self) -> str:
        """The answer up to where its value starts: the logits mode forces this text."""
        return '{"' + self.answer_key + '": '

    def answer_text(self, option: AnswerOption) -> str:
        """The full canonical answer for one option, e.g. '{"task_completed": "yes"}'."""
        return self.answer_prefix + option.text + self.answer_suffix

    def messages(
        self, task: str, frame_keys: set[str] | frozenset[str], video_len: int = 0
    ) -> list[dict[str, Any]]:
        """Chat messages for the processor's chat template; images are placeholders in frame order.

        Returns the messages; the images must be passed to the processor in the
        order given by `image_order(frame_keys)` (or `prompt_images` with a video).
        `video_len` is the number of sampled video frames a video part expands to.
        """
        content: list[dict[str, Any]] = []
        for part in self.user:
            if part.when is not None and part.when not in frame_keys:
                continue
            if part.video:
                content.extend({"type": "image"} for _ in range(video_len))
            elif part.image is not None:
                content.append({"type": "image"})
            else:
                content.append({"type": "text", "text": (part.text or "").replace("{task}", task)})
        messages: list[dict[str, Any]] = []
        if self.system:
            messages.append({"role": "system", "content": [{"type": "text", "text": self.system}]})
        messages.append({"role": "user", "content": content})
        return messages

    def chat(
        self, task: str, frames: dict[str, Any], video: list[Any] | None = None
    ) -> tuple[list[dict[str, Any]], list[Any]]:
        """One request's chat messages and its images in prompt order.

        The one place that turns a request into a prompt, shared by the `qwen3vl`
        backend and LoRA training (lrm.training.lora_data), so an adapter sees at training
        time exactly the prompt it is queried with.
        """
        messages = self.messages(task, frozenset(frames), video_len=len(video) if video else 0)
        return messages, self.prompt_images(frames, video)

    def image_order(self, frame_keys: set[str] | frozenset[str]) -> list[str]:
        """Frame keys in the order their images appear in the prompt."""
        return [
            part.image
            for part in self.user
            if part.image is not None and (part.when is None or part.when in frame_keys)
        ]

    def prompt_images(self, frames: dict[str, Any], video: list[Any] | None) -> list[Any]:
        """Every image of the prompt in order: named frames and the sampled video frames."""
        images: list[Any] = []
        for part in self.user:
            if part.when is not None and part.when not in frames:
                continue
            if part.video:
                images.extend(video or [])
            elif part.image is not None:
                images.append(frames[part.image])
        return images


def render_prompt(
    processor: Any, template: PromptTemplate, task: str, frames: dict[str, Any], video: list[Any] | None = None
) -> tuple[str, list[Any]]:
    """The prompt text (chat template applied, generation prompt added) and its images for a processor."""
    messages, images = template.chat(task, frames, video)
    return processor.apply_chat_template(messages, tokenize=False, add_generation_prompt=True), images


def sample_video(video: Any, count: int) -> list[Any]:
    """Up to `count` frames of a (T, H, W, 3) video, evenly spaced, always ending at the last frame."""
    import numpy as np

    length = len(video)
    if length <= count:
        return list(video)
    index = np.round(np.linspace(0, length - 1, count)).astype(int)
    return [video[i] for i in index]


_TOP_KEYS = {f.name for f in dataclasses.fields(PromptTemplate)}
_PART_KEYS = {f.name for f in dataclasses.fields(PromptPart)}
_OPTION_KEYS = {f.name for f in dataclasses.fields(AnswerOption)}


def load_prompt(path: str | pathlib.Path) -> PromptTemplate:
    """Read and check one template file."""
    path = pathlib.Path(path)
    if not path.is_file():
        raise PromptError(f"{path}: prompt template not found")
    try:
        data = yaml.safe_load(path.read_text())
    except yaml.YAMLError as exc:
        raise PromptError(f"{path}: invalid YAML: {getattr(exc, 'problem', None) or type(exc).__name__}") from None
    return prompt_from_dict(data, source=str(path))


def load_default_prompts(directory: str | pathlib.Path = PROMPTS_DIR) -> dict[str, PromptTemplate]:
    """The three shipped templates, keyed by modality (files named <modality>.yaml)."""
    directory = pathlib.Path(directory)
    return {modality: load_prompt(directory / f"{modality}.yaml") for modality in MODALITIES}


def prompt_from_dict(data: Any, *, source: str = "<prompt>") -> PromptTemplate:
    """Build a PromptTemplate from plain data with strict checks."""
    if not isinstance(data, dict):
        raise PromptError(f"{source}: expected a mapping at the top level, got {type(data).__name__}")
    _check_keys(data, _TOP_KEYS, source, "")
    for required in ("modality", "answer_key", "options", "user"):
        if required not in data:
            raise PromptError(f"{source}: missing required key {required!r}")
    modality = _typed(data["modality"], str, source, "modality")
    if modality not in MODALITIES:
        raise PromptError(f"{source}: modality: {modality!r} is not one of {list(MODALITIES)}")
    allowed_frames = REQUIRED_FRAMES[modality] | OPTIONAL_FRAMES[modality]

    parts: list[PromptPart] = []
    for i, raw in enumerate(_typed(data["user"], list, source, "user")):
        key = f"user.{i}"
        _check_keys(_typed(raw, dict, source, key), _PART_KEYS, source, key)
        text = _typed(raw.get("text"), (str, type(None)), source, f"{key}.text")
        image = _typed(raw.get("image"), (str, type(None)), source, f"{key}.image")
        when = _typed(raw.get("when"), (str, type(None)), source, f"{key}.when")
        video = _typed(raw.get("video", False), bool, source, f"{key}.video")
        if (text is not None) + (image is not None) + video != 1:
            raise PromptError(f"{source}: {key}: give exactly one of 'text', 'image' or 'video: true'")
        for field, frame in (("image", image), ("when", when)):
            if frame is not None and frame not in allowed_frames:
                raise PromptError(
                    f"{source}: {key}.{field}: frame {frame!r} is not used by {modality} "
                    f"(allowed: {sorted(allowed_frames)}; all frames: {list(FRAME_KEYS)})"
                )
        parts.append(PromptPart(text=text, image=image, when=when, video=video))
    shown = {p.image for p in parts if p.image is not None}
    missing = sorted(REQUIRED_FRAMES[modality] - shown)
    if missing and not any(p.video for p in parts):  # a video holds the first and current frames
        raise PromptError(f"{source}: user: the prompt never shows frame(s) {missing}")

    options: list[AnswerOption] = []
    for i, raw in enumerate(_typed(data["options"], list, source, "options")):
        key = f"options.{i}"
        _check_keys(_typed(raw, dict, source, key), _OPTION_KEYS, source, key)
        if "text" not in raw or "value" not in raw:
            raise PromptError(f"{source}: {key}: needs 'text' and 'value'")
        text = _typed(raw["text"], str, source, f"{key}.text")
        try:
            json.loads(text)
        except json.JSONDecodeError:
            raise PromptError(f"{source}: {key}.text: {text!r} is not a JSON literal (quote strings: '\"yes\"')") from None
        value = float(_typed(raw["value"], (int, float), source, f"{key}.value"))
        aliases = tuple(str(a) for a in _typed(raw.get("aliases", []), list, source, f"{key}.aliases"))
        options.append(AnswerOption(text=text, value=value, aliases=aliases))
    if len(options) < 2:
        raise PromptError(f"{source}: options: need at least two answer options")
    names = [o.name for o in options]
    if len(set(names)) != len(names):
        raise PromptError(f"{source}: options: duplicate option {names}")

    return PromptTemplate(
        modality=modality,
        answer_key=_typed(data["answer_key"], str, source, "answer_key"),
        options=tuple(options),
        user=tuple(parts),
        reasoning=_typed(data.get("reasoning", False), bool, source, "reasoning"),
        system=_typed(data.get("system"), (str, type(None)), source, "system"),
        snap_numeric=_typed(data.get("snap_numeric", False), bool, source, "snap_numeric"),
        answer_suffix=_typed(data.get("answer_suffix", "}"), str, source, "answer_suffix"),
        video_frames=_video_frames(data.get("video_frames", 8), source),
    )


def _video_frames(value: Any, source: str) -> int:
    count = _typed(value, int, source, "video_frames")
    if count < 1:
        raise PromptError(f"{source}: video_frames: must be >= 1, got {count}")
    return count


def _check_keys(data: dict, allowed: set[str], source: str, where: str) -> None:
    for key in data:
        if key not in allowed:
            dotted = f"{where}.{key}" if where else str(key)
            raise PromptError(f"{source}: {dotted}: unknown key (allowed: {sorted(allowed)})")


def _typed(value: Any, types: type | tuple[type, ...], source: str, key: str) -> Any:
    # bool is an int in Python; a YAML `true` where a number is expected is still a mistake.
    expected = types if isinstance(types, tuple) else (types,)
    if isinstance(value, bool) and bool not in expected:
        ok = False
    else:
        ok = isinstance(value, expected)
    if not ok:
        names = " or ".join("null" if t is type(None) else t.__name__ for t in expected)
        raise PromptError(f"{source}: {key}: expected {names}, got {type(value).__name__}")
    return value
