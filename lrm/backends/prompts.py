"""Prompt templates: YAML files under configs/lrm/prompts/, one per modality.

The prompt texts live in files, not code, because a LoRA adapter only works with
the exact prompt it was trained with: a user who plugs in a published adapter
copies its prompt into a template. A template says which frames go where, whether
the model reasons before answering, the JSON key of the answer and the answer
options with the reward each one maps to.

Loading is strict (unknown key, wrong type, missing file: one line naming the
file and the key): `common.config` reads the file into `PromptTemplate`, then
the checks that depend on the modality (which frames it may show) follow.
"""

from __future__ import annotations

import dataclasses
import json
import pathlib
from typing import Any, Literal

from common.config import ConfigError, load_config
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

    The answer is `{"<answer_key>": <option>}` (`answer_style: spaced` writes
    `{ "<answer_key>": <option> }`, as the published adapters' prompts show it).
    With `reasoning` on, the model writes its reasoning first and the JSON object
    last; with it off, it answers at once. `snap_numeric` lets the tolerant parser
    map a number between options to the nearest option (progress), instead of
    calling it a failure. `parser: reference` reads answers as the reference LRM
    server does (lrm.backends.reference_parsing), for adapters trained with it.
    """

    modality: str
    answer_key: str
    options: tuple[AnswerOption, ...]
    user: tuple[PromptPart, ...]
    reasoning: bool = False
    system: str | None = None
    snap_numeric: bool = False
    parser: Literal["tolerant", "reference"] = "tolerant"
    answer_style: Literal["compact", "spaced"] = "compact"
    answer_suffix: str | None = None  # None: "}" (compact) or " }" (spaced)
    video_frames: int = 8

    @property
    def uses_video(self) -> bool:
        """Whether the prompt shows the request's video (then every request must carry one)."""
        return any(part.video for part in self.user)

    @property
    def answer_prefix(self) -> str:
        """The answer up to where its value starts: the logits mode forces this text."""
        opening = "{ " if self.answer_style == "spaced" else "{"
        return opening + '"' + self.answer_key + '": '

    def answer_text(self, option: AnswerOption) -> str:
        """The full canonical answer for one option, e.g. '{"task_completed": "yes"}'."""
        suffix = self.answer_suffix
        if suffix is None:
            suffix = " }" if self.answer_style == "spaced" else "}"
        return self.answer_prefix + option.text + suffix

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


def load_prompt(path: str | pathlib.Path) -> PromptTemplate:
    """Read and check one template file."""
    try:
        template = load_config(path, PromptTemplate)
    except ConfigError as exc:
        raise PromptError(str(exc)) from None
    _check(template, str(path))
    return template


def load_default_prompts(directory: str | pathlib.Path = PROMPTS_DIR) -> dict[str, PromptTemplate]:
    """The three shipped templates, keyed by modality (files named <modality>.yaml)."""
    directory = pathlib.Path(directory)
    return {modality: load_prompt(directory / f"{modality}.yaml") for modality in MODALITIES}


def _check(template: PromptTemplate, source: str) -> None:
    """What the loader's type checks cannot see: frames the modality uses, answer options that parse."""
    modality = template.modality
    if modality not in MODALITIES:
        raise PromptError(f"{source}: modality: {modality!r} is not one of {list(MODALITIES)}")
    allowed_frames = REQUIRED_FRAMES[modality] | OPTIONAL_FRAMES[modality]
    for i, part in enumerate(template.user):
        key = f"user.{i}"
        if (part.text is not None) + (part.image is not None) + part.video != 1:
            raise PromptError(f"{source}: {key}: give exactly one of 'text', 'image' or 'video: true'")
        for field, frame in (("image", part.image), ("when", part.when)):
            if frame is not None and frame not in allowed_frames:
                raise PromptError(
                    f"{source}: {key}.{field}: frame {frame!r} is not used by {modality} "
                    f"(allowed: {sorted(allowed_frames)}; all frames: {list(FRAME_KEYS)})"
                )
    shown = {p.image for p in template.user if p.image is not None}
    missing = sorted(REQUIRED_FRAMES[modality] - shown)
    if missing and not template.uses_video:  # a video holds the first and current frames
        raise PromptError(f"{source}: user: the prompt never shows frame(s) {missing}")
    for i, option in enumerate(template.options):
        try:
            json.loads(option.text)
        except json.JSONDecodeError:
            raise PromptError(
                f"{source}: options.{i}.text: {option.text!r} is not a JSON literal (quote strings: '\"yes\"')"
            ) from None
    if len(template.options) < 2:
        raise PromptError(f"{source}: options: need at least two answer options")
    names = [o.name for o in template.options]
    if len(set(names)) != len(names):
        raise PromptError(f"{source}: options: duplicate option {names}")
    if template.video_frames < 1:
        raise PromptError(f"{source}: video_frames: must be >= 1, got {template.video_frames}")
    if template.parser == "reference":
        _check_reference_options(template, source)


# What the reference server's reading of each modality needs from the options (lrm.backends.reference_parsing).
_REFERENCE_OPTIONS = {
    "contrastive": ("string options (the image names)", lambda literals: all(isinstance(v, str) for v in literals)),
    "progress": ("numeric options", lambda literals: all(_is_number(v) for v in literals)),
    "completion": ('the options "yes" and "no"', lambda literals: {"yes", "no"} <= {str(v).lower() for v in literals}),
}


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _check_reference_options(template: PromptTemplate, source: str) -> None:
    wanted, fits = _REFERENCE_OPTIONS[template.modality]
    if not fits([o.literal for o in template.options]):
        raise PromptError(f"{source}: options: parser 'reference' reads {template.modality} answers with {wanted}")
