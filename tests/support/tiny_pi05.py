"""A tiny pi0.5 of LeRobot's real architecture, for tests and CPU smoke runs (no hub, no gated tokenizer).

LeRobot 0.6.1 hard-codes pi0.5's sizes: `modeling_pi05.get_gemma_config`
knows only "gemma_300m" / "gemma_2b" (and `PI05Config.__post_init__` refuses
other names); `PaliGemmaWithExpertModel` builds the SigLIP vision tower from
PaliGemma's default config (27 layers, 1152 wide) with a fixed projector
(2048) and a 257152-token vocabulary. `tiny_pi05_architecture()` patches
exactly those places, for as long as it is active, so that LeRobot's own
`PI05Policy` (same modules, same forward, same checkpoint format) is built
a few hundred kB small:

- variants "gemma_tiny" (PaliGemma language model) and "gemma_tiny_expert"
  (action expert); 8 heads, because `compute_layer_complete` hard-codes
  `8 * head_dim` as the attention width, and one KV head, like the real ones;
- the vision tower shrunk to one small layer with its projector matching the
  tiny language model's width; the vocabulary shrunk to `TINY_VOCAB`.

Anything that builds the model, including `PI05Policy.from_pretrained` of a
tiny checkpoint, must run inside the context. `train_tiny_tokenizer` trains a
byte-level BPE tokenizer locally (tokenizers library) with the special tokens
the pi0.5 processor needs (`<pad>`, `<bos>`, `<eos>`, `<unk>`).
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

__all__ = ["TINY_EXPERT", "TINY_VLM", "TINY_VOCAB", "tiny_lerobot_config", "tiny_pi05_architecture",
           "train_tiny_tokenizer"]

TINY_VLM = "gemma_tiny"
TINY_EXPERT = "gemma_tiny_expert"
TINY_VOCAB = 512
_TINY_SIZES = {  # width, depth, mlp_dim, num_heads, num_kv_heads, head_dim
    TINY_VLM: (64, 2, 128, 8, 1, 8),
    TINY_EXPERT: (32, 2, 64, 8, 1, 8),
}
_VISION = dict(hidden_size=32, num_hidden_layers=1, num_attention_heads=2, intermediate_size=64, patch_size=8)


@contextlib.contextmanager
def tiny_pi05_architecture() -> Iterator[None]:
    """While active, LeRobot's pi0.5 accepts and builds the tiny variants (see the module doc)."""
    from unittest import mock

    from lerobot.policies.pi05 import configuration_pi05, modeling_pi05

    original_get = modeling_pi05.get_gemma_config
    original_post_init = configuration_pi05.PI05Config.__post_init__
    vlm_class = modeling_pi05.PaliGemmaForConditionalGenerationWithPiGemma
    expert_class = modeling_pi05.PiGemmaForCausalLM

    def get_gemma_config(variant: str) -> Any:
        if variant in _TINY_SIZES:
            return modeling_pi05.GemmaConfig(*_TINY_SIZES[variant])
        return original_get(variant)

    def post_init(self: Any) -> None:
        # Validate as if the tiny variants were gemma_300m (the one check that names variants).
        names = (self.paligemma_variant, self.action_expert_variant)
        self.paligemma_variant = "gemma_300m" if names[0] in _TINY_SIZES else names[0]
        self.action_expert_variant = "gemma_300m" if names[1] in _TINY_SIZES else names[1]
        try:
            original_post_init(self)
        finally:
            self.paligemma_variant, self.action_expert_variant = names

    class TinyPaliGemma(vlm_class):  # type: ignore[misc, valid-type]
        def __init__(self, config: Any) -> None:
            if config.text_config.hidden_size == _TINY_SIZES[TINY_VLM][0]:
                for key, value in _VISION.items():
                    setattr(config.vision_config, key, value)
                config.vision_config.projection_dim = config.text_config.hidden_size
                config.text_config.vocab_size = TINY_VOCAB
                config._vocab_size = TINY_VOCAB  # noqa: SLF001 - mirrors what LeRobot sets
            super().__init__(config=config)

    class TinyExpert(expert_class):  # type: ignore[misc, valid-type]
        def __init__(self, config: Any, **kwargs: Any) -> None:
            if config.hidden_size == _TINY_SIZES[TINY_EXPERT][0]:
                config.vocab_size = TINY_VOCAB
            super().__init__(config, **kwargs)

    with (
        mock.patch.object(modeling_pi05, "get_gemma_config", get_gemma_config),
        mock.patch.object(configuration_pi05.PI05Config, "__post_init__", post_init),
        mock.patch.object(modeling_pi05, "PaliGemmaForConditionalGenerationWithPiGemma", TinyPaliGemma),
        mock.patch.object(modeling_pi05, "PiGemmaForCausalLM", TinyExpert),
    ):
        yield


def tiny_lerobot_config(input_features: dict[str, Any], output_features: dict[str, Any], **overrides: Any) -> Any:
    """A LeRobot PI05Config of the tiny variants (build it inside `tiny_pi05_architecture`)."""
    from lerobot.policies.pi05 import PI05Config

    options: dict[str, Any] = dict(
        paligemma_variant=TINY_VLM,
        action_expert_variant=TINY_EXPERT,
        dtype="float32",
        chunk_size=4,
        n_action_steps=4,
        num_inference_steps=2,
        image_resolution=(32, 32),
        tokenizer_max_length=48,
        max_state_dim=32,
        max_action_dim=32,
        device="cpu",
        push_to_hub=False,
    )
    options.update(overrides)
    return PI05Config(input_features=input_features, output_features=output_features, **options)


def train_tiny_tokenizer(path: str | Path, texts: Iterable[str] = (), vocab_size: int = TINY_VOCAB) -> Any:
    """Train a byte-level BPE tokenizer on `texts` (plus prompt-like text), save it at `path`; return it."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers
    from transformers import PreTrainedTokenizerFast

    specials = ["<pad>", "<eos>", "<bos>", "<unk>"]
    tokenizer = Tokenizer(models.BPE(unk_token="<unk>"))
    tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tokenizer.decoder = decoders.ByteLevel()
    corpus = list(texts) + [
        "Task: pick up the red cube and move it to the goal position, State: "
        + " ".join(str(i) for i in range(256)) + ";\nAction: "
    ]
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size, special_tokens=specials, initial_alphabet=pre_tokenizers.ByteLevel.alphabet()
    )
    tokenizer.train_from_iterator(corpus * 4, trainer=trainer)
    bos = tokenizer.token_to_id("<bos>")
    tokenizer.post_processor = processors.TemplateProcessing(single="<bos> $A", special_tokens=[("<bos>", bos)])
    fast = PreTrainedTokenizerFast(
        tokenizer_object=tokenizer, pad_token="<pad>", eos_token="<eos>", bos_token="<bos>", unk_token="<unk>"
    )
    fast.save_pretrained(str(path))
    return fast
