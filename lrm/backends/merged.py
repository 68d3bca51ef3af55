"""A Qwen3-VL base with one adapter merged into its weights, saved as a plain checkpoint.

vLLM refuses a LoRA adapter with `modules_to_save` (vllm/lora/peft_helper.py,
`validate_legal`), and the published progress adapter keeps its own vision tower
and merger that way. Merged into the base (LoRA B @ A added to the weights, the
saved vision copy in place of the base's), it is an ordinary checkpoint that
`vllm serve` loads as a model (lrm.backends.vllm's module doc has the command):

    python -c "from lrm.backends.merged import merge_adapter; \\
        merge_adapter('Qwen/Qwen3-VL-8B-Instruct', '/models/LRM-models/progress', '/models/lrm-progress-merged')"

The adapter is attached exactly as the `qwen3vl` backend attaches it
(lrm.backends.qwen3vl_loading: nested `modules_to_save` trimmed, every saved
tensor checked), so the merged model computes what that backend computes with
the adapter active, up to the rounding of the merge in the checkpoint's dtype.
"""

from __future__ import annotations

import logging
import pathlib

from lrm.backends.qwen3vl_loading import ModelSource, as_source, attach_adapters, check_adapters, load_processor

log = logging.getLogger(__name__)

__all__ = ["merge_adapter"]


def merge_adapter(base: str, adapter: ModelSource | str, out: str | pathlib.Path, *,
                  processor: ModelSource | str | None = None, dtype: str = "auto") -> pathlib.Path:
    """Write `base` with `adapter` merged to `out`, with the processor of `processor` (default: `base`).

    `dtype` is the torch dtype to load and save in ("auto": the checkpoint's own,
    bfloat16 for Qwen3-VL-8B, so the merge needs about 17 GB of memory, on the CPU).
    """
    import torch
    from transformers import Qwen3VLForConditionalGeneration

    out = pathlib.Path(out)
    source = as_source(adapter)
    torch_dtype = dtype if dtype == "auto" else getattr(torch, dtype)
    model = Qwen3VLForConditionalGeneration.from_pretrained(base, dtype=torch_dtype)
    peft_model = attach_adapters(model, {"merged": source}).eval()
    check_adapters(peft_model, {"merged": source})
    merged = peft_model.merge_and_unload()
    merged.save_pretrained(out)
    load_processor(as_source(processor or base)).save_pretrained(out)
    log.info("%s merged into %s, written to %s", source, base, out)
    return out
