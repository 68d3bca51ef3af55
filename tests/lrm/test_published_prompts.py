"""The published adapters' prompts, rendered by the backend, token for token as the reference renders them.

tests/lrm/golden/published_prompts.json holds, per modality, the reference
server's chat message for a fixed task (its exact strings, with the images
standing as the frame they show), and what the reference's own calls make of it
with the tiny Qwen3-VL processor: the prompt text and token ids, and the image
grids. The backend, configured by configs/lrm/backends/lrm_published.yaml, must
produce exactly those ids from requests as the RL loop sends them.

The golden is rendered from its stored messages only, never from the shipped
prompt files; `python -m tests.lrm.test_published_prompts` renders it again
(needed when the tiny tokenizer changes).
"""

from __future__ import annotations

import json
import pathlib
import re

import numpy as np
import pytest
import torch

from common.config import load_config
from lrm.backends import RewardBackendConfig
from lrm.backends.qwen3vl import Qwen3VLRewardModel
from lrm.types import RewardRequest
from tests.support.tiny_reward_models import TinyModelPaths, build_processor, build_tokenizer

GOLDEN = pathlib.Path(__file__).parent / "golden" / "published_prompts.json"
PRESET = pathlib.Path(__file__).resolve().parents[2] / "configs" / "lrm" / "backends" / "lrm_published.yaml"
HEIGHT, WIDTH = 96, 128  # 4:3, like the reference camera's 480x640


def frame(name: str) -> np.ndarray:
    seed = {"first": 1, "previous": 2, "current": 3}[name]
    return np.random.default_rng(seed).integers(0, 256, (HEIGHT, WIDTH, 3), dtype=np.uint8)


def reference_rendering(processor, entry: dict) -> dict:
    """The reference server's calls on its message: completion through apply_chat_template(tokenize=True),
    the others through the text template and then the processor, images in message order, as PIL images."""
    from PIL import Image

    images = [Image.fromarray(frame(item["image"])) for item in entry["message"] if item["type"] == "image"]
    pictures = iter(images)
    content = [dict(item, image=next(pictures)) if item["type"] == "image" else item for item in entry["message"]]
    messages = [{"role": "user", "content": content}]
    text = processor.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
    if entry["call"] == "tokenize":
        inputs = processor.apply_chat_template(messages, tokenize=True, add_generation_prompt=True,
                                               return_tensors="pt", return_dict=True)
    else:
        inputs = processor(text=[text], images=images, padding=True, return_tensors="pt")
    return {"text": text, "input_ids": inputs["input_ids"][0].tolist(),
            "image_grid_thw": inputs["image_grid_thw"].tolist(), "pixel_values": inputs["pixel_values"]}


@pytest.fixture(scope="module")
def golden() -> dict:
    return json.loads(GOLDEN.read_text())


@pytest.fixture(scope="module")
def processor():
    return build_processor(build_tokenizer())


def published_config(tiny: TinyModelPaths, *overrides: str) -> RewardBackendConfig:
    """The shipped preset with the tiny model in place of the hub's (adapters as hub-style subfolders)."""
    adapters = {m: {"path": str(p.parent), "subfolder": p.name} for m, p in tiny.adapters.items()}
    return load_config(PRESET, RewardBackendConfig, [
        f"qwen3vl.model={tiny.base}", f"qwen3vl.processor={tiny.base}",
        f"qwen3vl.adapters={json.dumps(adapters)}", "qwen3vl.device=cpu", *overrides,
    ])


@pytest.fixture(scope="module")
def backend(tiny_qwen3vl: TinyModelPaths) -> Qwen3VLRewardModel:
    return Qwen3VLRewardModel(published_config(tiny_qwen3vl).qwen3vl)


MODALITIES = ("contrastive", "progress", "completion")


@pytest.mark.parametrize("modality", MODALITIES)
def test_the_golden_is_the_reference_rendering(golden: dict, processor, modality: str) -> None:
    entry = golden["prompts"][modality]
    rendered = reference_rendering(processor, entry)
    assert rendered["text"] == entry["text"]
    assert rendered["input_ids"] == entry["input_ids"]
    assert rendered["image_grid_thw"] == entry["image_grid_thw"]


def requests(task: str) -> dict[str, RewardRequest]:
    """As the interval-hold loop sends them: contrastive also carries the first frame, which must not show."""
    f = {name: frame(name) for name in ("first", "previous", "current")}
    return {
        "contrastive": RewardRequest("contrastive", {"current": f["current"], "previous": f["previous"],
                                                     "first": f["first"]}, task),
        "progress": RewardRequest("progress", {"current": f["current"], "first": f["first"]}, task),
        "completion": RewardRequest("completion", {"current": f["current"]}, task),
    }


@pytest.mark.parametrize("modality", MODALITIES)
def test_the_backend_renders_the_golden_token_for_token(
    golden: dict, backend: Qwen3VLRewardModel, processor, modality: str
) -> None:
    from lrm.types import prepare_frames

    entry = golden["prompts"][modality]
    request = requests(golden["task"])[modality]
    config = backend.config
    frames = prepare_frames(request, 0, config.image_size, config.max_pixels)
    inputs = backend._encode(backend.templates[modality], [request], [frames])
    ids = inputs["input_ids"][0].tolist()
    assert ids == entry["input_ids"], _first_difference(backend, ids, entry["input_ids"])
    assert inputs["image_grid_thw"].tolist() == entry["image_grid_thw"]
    # the same pictures in the same order (Image A is the previous query's frame): the same pixels
    assert torch.equal(inputs["pixel_values"], reference_rendering(processor, entry)["pixel_values"])


def test_frames_keep_their_native_size(golden: dict) -> None:
    # 96x128 in 32-pixel merged patches: a 3x4 grid of vision tokens, not a square
    for entry in golden["prompts"].values():
        assert all(grid == [1, HEIGHT // 16, WIDTH // 16] for grid in entry["image_grid_thw"])


def test_no_system_message_and_the_reference_text(golden: dict) -> None:
    for entry in golden["prompts"].values():
        assert entry["text"].startswith("<|im_start|>user\n") and "<|im_start|>system" not in entry["text"]
        assert entry["text"].endswith("<|im_end|>\n<|im_start|>assistant\n")
    contrastive = golden["prompts"]["contrastive"]["text"]
    assert "- Later observation (Image A): <|vision_start|>" in contrastive
    assert contrastive.count("<|vision_start|>") == 2
    completion = golden["prompts"]["completion"]["text"]
    assert "- Current observation:<|vision_start|><|image_pad|>" in completion  # the reference strips here
    assert "<|vision_end|>Has the task been completed?" in completion


def _first_difference(backend: Qwen3VLRewardModel, got: list[int], want: list[int]) -> str:
    at = next((i for i, (a, b) in enumerate(zip(got, want)) if a != b), min(len(got), len(want)))
    decode = backend.tokenizer.decode
    return f"first difference at token {at}: got {decode(got[at:at + 12])!r}, want {decode(want[at:at + 12])!r}"


def regenerate() -> None:
    """Render the golden again from its stored reference messages (not from the shipped prompt files)."""
    data = json.loads(GOLDEN.read_text())
    processor = build_processor(build_tokenizer())
    for entry in data["prompts"].values():
        rendered = reference_rendering(processor, entry)
        entry.update(text=rendered["text"], input_ids=rendered["input_ids"], image_grid_thw=rendered["image_grid_thw"])
    text = json.dumps(data, indent=1)
    # one line per list of numbers, so that a reviewer reads the messages, not ten thousand id lines
    text = re.sub(r"\[\s*([-\d,\s]+?)\s*\]", lambda m: "[" + " ".join(m.group(1).split()) + "]", text)
    GOLDEN.write_text(text + "\n")


if __name__ == "__main__":
    regenerate()
