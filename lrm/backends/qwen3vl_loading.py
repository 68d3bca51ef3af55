"""A Qwen3-VL base with its LoRA adapters attached, and a refusal to serve adapters that did not load.

The loading follows the reference LRM server (`load_vlm_multi_adapter` in
physical-superintelligence-lab/Large-Reward-Models, vlm_reward/vlm_reward_server.py),
for reasons that are easy to undo by accident:

- With adapters, the base is loaded on the CPU without `device_map` and moved to
  the device only after every adapter is attached: with a device map, PEFT was
  seen to leave every lora_B at its zero init without a warning. LoRA adds B @ A,
  so a zero B serves the bare base model while everything looks loaded.
- An adapter with `modules_to_save` (the published progress adapter keeps its own
  copy of the vision tower) is attached first, so that PEFT builds those wrappers
  before the language-only adapters are added.
- A listed module nested in another listed one is dropped (the published
  progress adapter lists `visual` and its `merger`): PEFT cannot load
  overlapping wrappers, and the outer copy holds every weight of the inner one.

PEFT switches the wrappers with the active adapter: with progress active the
vision tower is progress's copy, with the others it is the base's, as in the
reference. After loading, `check_adapters` compares every tensor an adapter saved
with the model's copy and refuses, in one line naming the adapter, an adapter
whose lora_B is all zero or whose tensor did not arrive.
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Mapping
from typing import Any

log = logging.getLogger(__name__)

__all__ = ["AdapterLoadError", "ModelSource", "as_source", "attach_adapters", "check_adapters", "load_model",
           "load_processor"]


class AdapterLoadError(ValueError):
    """An adapter's weights did not reach the model; the message is one line naming the adapter."""


@dataclasses.dataclass(frozen=True)
class ModelSource:
    """A local directory, or a hub repository id, and the subfolder inside it that holds the files."""

    path: str
    subfolder: str | None = None

    def __post_init__(self) -> None:
        if not self.path:
            raise ValueError("a model source needs a path (a directory or a hub id)")

    def hub_kwargs(self) -> dict[str, str]:
        return {"subfolder": self.subfolder} if self.subfolder else {}

    def __str__(self) -> str:
        return f"{self.path}:{self.subfolder}" if self.subfolder else self.path


def as_source(value: ModelSource | str) -> ModelSource:
    return value if isinstance(value, ModelSource) else ModelSource(value)


def load_processor(source: ModelSource) -> Any:
    from transformers import AutoProcessor

    return AutoProcessor.from_pretrained(source.path, **source.hub_kwargs())


def load_model(model: str, adapters: Mapping[str, ModelSource], *, dtype: Any, attn: str, device: str) -> Any:
    """The base model with every adapter attached, checked, on `device`, in eval mode (module doc)."""
    from transformers import Qwen3VLForConditionalGeneration

    if not adapters:
        # no PEFT involved: device_map loads the weights straight onto the device
        return Qwen3VLForConditionalGeneration.from_pretrained(
            model, dtype=dtype, attn_implementation=attn, device_map=device
        ).eval()
    base = Qwen3VLForConditionalGeneration.from_pretrained(model, dtype=dtype, attn_implementation=attn)
    peft_model = attach_adapters(base, adapters).to(device).eval()
    check_adapters(peft_model, adapters)
    return peft_model


def attach_adapters(base: Any, adapters: Mapping[str, ModelSource]) -> Any:
    """A PeftModel over `base` with every adapter, named by its key, inactive ones frozen (module doc)."""
    from peft import PeftConfig, PeftModel

    configs = {name: PeftConfig.from_pretrained(src.path, **src.hub_kwargs()) for name, src in adapters.items()}
    for config in configs.values():
        config.modules_to_save = _outermost(config.modules_to_save, base)
        config.inference_mode = True
    order = sorted(adapters, key=lambda name: not configs[name].modules_to_save)  # stable: wrappers first
    first = order[0]
    model = PeftModel.from_pretrained(
        base, adapters[first].path, adapter_name=first, is_trainable=False, config=configs[first],
        **adapters[first].hub_kwargs(),
    )
    for name in order[1:]:
        # added with its (possibly trimmed) config first; load_adapter then only loads the weights
        model.add_adapter(name, configs[name])
        model.load_adapter(adapters[name].path, adapter_name=name, is_trainable=False, **adapters[name].hub_kwargs())
    model.set_adapter(first)
    log.info("LoRA adapters attached: %s", order)
    return model


def _outermost(names: Any, model: Any) -> list[str] | None:
    """`modules_to_save` without the entries whose every module lies inside another entry's module."""
    if not names or len(names) < 2:
        return list(names) if names else names
    modules = [name for name, _ in model.named_modules()]
    matched = {n: [m for m in modules if m == n or m.endswith("." + n)] for n in names}

    def nested(name: str) -> bool:
        outer = [m for other in names if other != name for m in matched[other]]
        return bool(matched[name]) and all(any(m.startswith(o + ".") for o in outer) for m in matched[name])

    kept = [n for n in names if not nested(n)]
    if len(kept) < len(names):
        log.info("modules_to_save %s: kept %s (the others are inside them)", list(names), kept)
    return kept


def check_adapters(model: Any, adapters: Mapping[str, ModelSource]) -> None:
    """Refuse adapters that would silently serve the base model (module doc); AdapterLoadError, one line."""
    import torch
    from peft.utils import get_peft_model_state_dict, load_peft_weights

    for name, src in adapters.items():
        where = f"adapter {name!r} ({src})"
        saved = load_peft_weights(src.path, device="cpu", **src.hub_kwargs())
        loaded = get_peft_model_state_dict(model, adapter_name=name)  # keys as saved: no adapter name
        lora_b = [tensor for key, tensor in loaded.items() if "lora_B" in key]
        if not any(bool(t.abs().any()) for t in lora_b):
            raise AdapterLoadError(
                f"{where}: every lora_B is zero, so this adapter would serve the bare base model; refusing to start"
            )
        for key, tensor in saved.items():
            got = loaded.get(key)
            # the model may hold the tensor in another dtype (PEFT keeps LoRA weights in float32)
            arrived = (
                got is not None
                and got.shape == tensor.shape
                and torch.equal(got, tensor.to(device=got.device, dtype=got.dtype))
            )
            if not arrived:
                raise AdapterLoadError(f"{where}: the saved tensor {key} did not reach the model; refusing to start")
        log.info("%s: %d saved tensors checked", where, len(saved))
