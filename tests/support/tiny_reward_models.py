"""A tiny random Qwen3-VL checkpoint with three LoRA adapters, built locally.

Tests and CPU benchmarks need the real architecture (the same processor, chat
template, image tokens, M-RoPE and peft wiring as Qwen3-VL-8B) without a model
hub. This module writes such a checkpoint with `save_pretrained` so that it loads
through exactly the production path: a BPE tokenizer trained on a small corpus
with the Qwen chat special tokens, a real Qwen2-VL image-processor config
(16-pixel patches merged 2x2, as Qwen3-VL uses), a few-layer model with tiny
hidden sizes, and one random LoRA adapter per modality.
"""

from __future__ import annotations

import dataclasses
import logging
import pathlib

logger = logging.getLogger(__name__)

SPECIAL_TOKENS = (
    "<|endoftext|>",
    "<|im_start|>",
    "<|im_end|>",
    "<|object_ref_start|>",
    "<|object_ref_end|>",
    "<|box_start|>",
    "<|box_end|>",
    "<|quad_start|>",
    "<|quad_end|>",
    "<|vision_start|>",
    "<|vision_end|>",
    "<|vision_pad|>",
    "<|image_pad|>",
    "<|video_pad|>",
)

# The Qwen3-VL instruct chat template, reduced to what the reward prompts use
# and the baselines use (system/user/assistant turns, text, image and video parts; no tools).
CHAT_TEMPLATE = (
    "{%- for message in messages -%}"
    "{{- '<|im_start|>' + message['role'] + '\\n' -}}"
    "{%- if message['content'] is string -%}"
    "{{- message['content'] -}}"
    "{%- else -%}"
    "{%- for content in message['content'] -%}"
    "{%- if content['type'] == 'image' or 'image' in content or 'image_url' in content -%}"
    "{{- '<|vision_start|><|image_pad|><|vision_end|>' -}}"
    "{%- elif content['type'] == 'video' or 'video' in content -%}"
    "{{- '<|vision_start|><|video_pad|><|vision_end|>' -}}"
    "{%- elif 'text' in content -%}"
    "{{- content['text'] -}}"
    "{%- endif -%}"
    "{%- endfor -%}"
    "{%- endif -%}"
    "{{- '<|im_end|>\\n' -}}"
    "{%- endfor -%}"
    "{%- if add_generation_prompt -%}"
    "{{- '<|im_start|>assistant\\n' -}}"
    "{%- endif -%}"
)

_CORPUS = [
    'You are a reward model for robot manipulation. You judge task progress from camera images.',
    'Task: pick up the red cube and lift it. Task: push the cube to the goal. Task: stack the green cube.',
    'First frame of the episode: Current frame: Image 1: Image 2: This is the first frame of the episode.',
    'Which image shows the robot closer to completing the task? First explain your reasoning briefly.',
    'How much of the task has been completed in the current frame? Has the task been completed?',
    '{"more_complete_image": 1} {"more_complete_image": 2} {"task_completed": "yes"} {"task_completed": "no"}',
    '{"completion_progress": 0.0} 0.1 0.2 0.3 0.4 0.5 0.6 0.7 0.8 0.9 1.0',
    'The gripper is open above the table. The cube is grasped and lifted. The arm moves towards the goal.',
    'In the second image the cube is higher than in the first image, so the robot made progress.',
    'Answer only with a JSON object. then end with a JSON object of the form or where p is one of',
]


@dataclasses.dataclass(frozen=True)
class TinyModelPaths:
    """Where `build_tiny_checkpoint` wrote the base model and the adapters."""

    base: pathlib.Path
    adapters: dict[str, pathlib.Path]


def build_tokenizer(vocab_size: int = 600):
    """A byte-level BPE tokenizer trained on a small corpus, as a Qwen2Tokenizer."""
    from tokenizers import Regex, Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import AddedToken
    from transformers.models.qwen2.tokenization_qwen2 import PRETOKENIZE_REGEX, Qwen2Tokenizer

    bpe = Tokenizer(models.BPE())
    bpe.pre_tokenizer = pre_tokenizers.Sequence(
        [
            pre_tokenizers.Split(Regex(PRETOKENIZE_REGEX), behavior="isolated"),
            pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False),
        ]
    )
    bpe.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=list(SPECIAL_TOKENS),
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    bpe.train_from_iterator(_CORPUS * 4, trainer=trainer)
    vocab = bpe.get_vocab()
    merges = _merges_of(bpe)
    tokenizer = Qwen2Tokenizer(vocab=vocab, merges=merges)
    tokenizer.add_tokens([AddedToken(t, special=True, normalized=False) for t in SPECIAL_TOKENS])
    tokenizer.chat_template = CHAT_TEMPLATE
    return tokenizer


def _merges_of(bpe) -> list[tuple[str, str]]:
    import json

    data = json.loads(bpe.to_str())
    return [tuple(m.split(" ", 1)) if isinstance(m, str) else tuple(m) for m in data["model"]["merges"]]


def build_processor(tokenizer, image_side: int = 64):
    """A Qwen3-VL processor with the real image-processor config, sized for tiny images."""
    from transformers import Qwen3VLProcessor
    from transformers.models.qwen2_vl.image_processing_qwen2_vl import Qwen2VLImageProcessor
    from transformers.models.qwen3_vl.video_processing_qwen3_vl import Qwen3VLVideoProcessor

    # Qwen3-VL-8B ships patch 16, merge 2, temporal patch 2, mean/std 0.5; the pixel
    # bounds are lowered so that a 64x64 frame stays 64x64 (4x4 patches, 4 tokens).
    pixels = {"shortest_edge": 32 * 32, "longest_edge": 4 * image_side * image_side}
    common = dict(
        patch_size=16, temporal_patch_size=2, merge_size=2, image_mean=[0.5, 0.5, 0.5], image_std=[0.5, 0.5, 0.5]
    )
    image_processor = Qwen2VLImageProcessor(size=dict(pixels), **common)
    video_processor = Qwen3VLVideoProcessor(size=dict(pixels), **common)
    return Qwen3VLProcessor(
        image_processor=image_processor,
        tokenizer=tokenizer,
        video_processor=video_processor,
        chat_template=CHAT_TEMPLATE,
    )


def build_config(tokenizer):
    """A two-layer Qwen3-VL config with tiny widths; token ids come from the tokenizer."""
    from transformers import Qwen3VLConfig

    ids = {t: tokenizer.convert_tokens_to_ids(t) for t in SPECIAL_TOKENS}
    head_dim = 16
    text_config = dict(
        vocab_size=len(tokenizer),
        hidden_size=64,
        intermediate_size=128,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        head_dim=head_dim,
        max_position_embeddings=4096,
        # M-RoPE splits head_dim / 2 rotary frequencies over (t, h, w): 4 + 2 + 2 = 8.
        rope_parameters={"rope_type": "default", "rope_theta": 5_000_000.0, "mrope_section": [4, 2, 2],
                         "mrope_interleaved": True},
        pad_token_id=ids["<|endoftext|>"],
        tie_word_embeddings=False,
    )
    vision_config = dict(
        depth=2,
        hidden_size=32,
        intermediate_size=64,
        num_heads=2,
        patch_size=16,
        spatial_merge_size=2,
        temporal_patch_size=2,
        out_hidden_size=64,
        num_position_embeddings=64,  # an 8x8 grid of learned position embeddings, interpolated
        deepstack_visual_indexes=[0],
    )
    return Qwen3VLConfig(
        text_config=text_config,
        vision_config=vision_config,
        image_token_id=ids["<|image_pad|>"],
        video_token_id=ids["<|video_pad|>"],
        vision_start_token_id=ids["<|vision_start|>"],
        vision_end_token_id=ids["<|vision_end|>"],
        tie_word_embeddings=False,
    )


def build_tiny_checkpoint(
    directory: str | pathlib.Path, seed: int = 0, modalities: tuple[str, ...] = ("contrastive", "progress", "completion")
) -> TinyModelPaths:
    """Write base model, processor and one LoRA adapter per modality under `directory`.

    Weights are random (seeded), and every adapter's B matrices are random too
    (peft initialises them to zero, which would make all adapters identical to the
    base), so switching adapters visibly changes the outputs.
    """
    import torch
    from peft import LoraConfig
    from transformers import GenerationConfig, Qwen3VLForConditionalGeneration

    directory = pathlib.Path(directory)
    base_dir = directory / "base"
    torch.manual_seed(seed)
    tokenizer = build_tokenizer()
    processor = build_processor(tokenizer)
    config = build_config(tokenizer)
    model = Qwen3VLForConditionalGeneration(config).eval()
    im_end = tokenizer.convert_tokens_to_ids("<|im_end|>")
    eos = tokenizer.convert_tokens_to_ids("<|endoftext|>")
    model.generation_config = GenerationConfig(eos_token_id=[im_end, eos], pad_token_id=eos, do_sample=False)
    model.save_pretrained(base_dir)
    processor.save_pretrained(base_dir)

    adapters: dict[str, pathlib.Path] = {}
    for i, modality in enumerate(modalities):
        torch.manual_seed(seed + 1 + i)
        lora = LoraConfig(
            r=4,
            lora_alpha=8,
            target_modules=["q_proj", "k_proj", "v_proj", "o_proj"],
            lora_dropout=0.0,
            bias="none",
        )
        adapters[modality] = _save_random_adapter(base_dir, lora, directory / f"adapter_{modality}")
    logger.info("tiny Qwen3-VL checkpoint written to %s", directory)
    return TinyModelPaths(base=base_dir, adapters=adapters)


def build_tiny_vision_adapter(base: str | pathlib.Path, path: str | pathlib.Path, seed: int = 0) -> pathlib.Path:
    """A LoRA adapter that, like the published progress adapter, also keeps its own vision tower.

    `modules_to_save` lists the vision tower and its nested merger, as the published
    adapter's config does; the LoRA B matrices and the saved vision copy are random,
    so that every part of it changes what the model computes.
    """
    import torch
    from peft import LoraConfig

    torch.manual_seed(seed)
    lora = LoraConfig(r=4, lora_alpha=8, target_modules=["q_proj", "k_proj", "v_proj", "o_proj"], lora_dropout=0.0,
                      bias="none", modules_to_save=["visual", "merger"])
    return _save_random_adapter(base, lora, path)


def _save_random_adapter(base: str | pathlib.Path, lora, path: str | pathlib.Path) -> pathlib.Path:
    """`lora` on the model at `base` with random B matrices and perturbed saved-module copies, saved to `path`.

    peft initialises B to zero, which would make every adapter identical to the base.
    """
    import torch
    from peft import get_peft_model
    from transformers import Qwen3VLForConditionalGeneration

    peft_model = get_peft_model(Qwen3VLForConditionalGeneration.from_pretrained(base), lora)
    with torch.no_grad():
        for name, param in peft_model.named_parameters():
            if "lora_B" in name:
                param.normal_(0.0, 0.5)
            elif "modules_to_save" in name:
                param.add_(torch.randn_like(param) * 0.5)
    path = pathlib.Path(path)
    peft_model.save_pretrained(path)
    return path


def build_tiny_robometer(directory: str | pathlib.Path, base: str | pathlib.Path, seed: int = 0) -> pathlib.Path:
    """A Robometer checkpoint of LeRobot's real architecture on the tiny Qwen3-VL `base`, random heads.

    Built the way LeRobot builds a fresh Robometer (base weights, embedding table
    resized for its five special tokens), then saved with `save_pretrained` with
    `pretrained_path` set, so that loading it takes the same path as the published
    Robometer-4B: architecture from the saved `vlm_config`, weights from safetensors.
    """
    import torch
    from lerobot.rewards.robometer.configuration_robometer import RobometerConfig
    from lerobot.rewards.robometer.modeling_robometer import RobometerRewardModel

    directory = pathlib.Path(directory)
    torch.manual_seed(seed)
    config = RobometerConfig(pretrained_path=None, base_model_id=str(base), torch_dtype="float32", device="cpu")
    model = RobometerRewardModel(config)
    config.pretrained_path = str(directory)
    model.save_pretrained(directory)
    logger.info("tiny Robometer checkpoint written to %s", directory)
    return directory
