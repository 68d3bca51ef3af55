"""Benchmark: logits mode (the answer-option token trie) against generate, at batch 1, 8 and 32.

The bar (issue 14, item 6): logits mode is never slower than generate at any
batch size. Both modes score the progress modality (eleven options, two frames)
with reasoning off, on two random Qwen3-VL models in one run:

- `tiny`: the test suite's checkpoint (tests.support.tiny_reward_models), 64x64
  frames: overhead-bound, as the issue's 6.2 vs 4.7 ms per query was measured on.
- `compute`: a wider and deeper random Qwen3-VL on the same tokenizer, fed
  320x240 camera frames (75 vision tokens each, 16-pixel patches merged 2x2 as in
  Qwen3-VL-8B): big enough that matrix products, not Python, dominate on a CPU,
  the regime the 8B model is in. `--frame 480 640` gives the published adapters'
  native input (300 vision tokens per frame), about three times the run time.

Generate decodes as many tokens as a trained adapter does when answering at
once: the longest canonical answer plus the end-of-turn token. A random model
rarely stops early; the JSON records the decoder passes each mode made.
Timings are the fastest of `--repeats` calls after a warm-up, generate and logits
interleaved on one loaded model, so that load on a shared machine hits both; the
ratio logits / generate is the result, the load average is recorded with it. Each
call's CPU time (time.process_time) is recorded too: with one torch thread it is
the work done, which other processes' load inflates much less than wall time.

Example (the run behind benchmarks/results/lrm_logits_trie.json; one thread keeps
other processes on a shared machine from stalling torch's thread team):
    .venv/bin/python benchmarks/lrm_logits_trie.py --threads 1
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import platform
import shlex
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from lrm.backends.qwen3vl import Qwen3VLBackendConfig, Qwen3VLRewardModel  # noqa: E402
from lrm.types import RewardRequest  # noqa: E402
from tests.support.tiny_reward_models import (  # noqa: E402
    build_config,
    build_processor,
    build_tiny_checkpoint,
    build_tokenizer,
)

log = logging.getLogger("lrm_logits_trie")
TASK = "pick up the red cube and lift it"


def build_compute_bound_checkpoint(directory: Path, hidden: int, layers: int, image_side: int, seed: int = 0) -> Path:
    """A random Qwen3-VL with a `hidden`-wide, `layers`-deep decoder that takes `image_side`-sized frames."""
    import torch
    from transformers import GenerationConfig, Qwen3VLConfig, Qwen3VLForConditionalGeneration

    torch.manual_seed(seed)
    tokenizer = build_tokenizer()
    processor = build_processor(tokenizer, image_side=image_side)
    tiny = build_config(tokenizer)
    head_dim = 64
    text = tiny.text_config.to_dict()
    text.update(
        hidden_size=hidden,
        intermediate_size=3 * hidden,
        num_hidden_layers=layers,
        num_attention_heads=hidden // head_dim,
        num_key_value_heads=max(1, hidden // head_dim // 2),
        head_dim=head_dim,
        # M-RoPE splits head_dim / 2 = 32 rotary frequencies over (t, h, w), as 8B's 24/20/20 split 64.
        rope_parameters={**text["rope_parameters"], "mrope_section": [12, 10, 10]},
    )
    vision = tiny.vision_config.to_dict()
    vision.update(hidden_size=hidden // 2, intermediate_size=hidden * 2, num_heads=4, depth=2, out_hidden_size=hidden)
    config = Qwen3VLConfig(
        text_config=text,
        vision_config=vision,
        image_token_id=tiny.image_token_id,
        video_token_id=tiny.video_token_id,
        vision_start_token_id=tiny.vision_start_token_id,
        vision_end_token_id=tiny.vision_end_token_id,
        tie_word_embeddings=False,
    )
    model = Qwen3VLForConditionalGeneration(config).eval()
    eos = [tokenizer.convert_tokens_to_ids(t) for t in ("<|im_end|>", "<|endoftext|>")]
    model.generation_config = GenerationConfig(eos_token_id=eos, pad_token_id=eos[1], do_sample=False)
    model.save_pretrained(directory)
    processor.save_pretrained(directory)
    return directory


def scene(seed: int, height: int, width: int) -> np.ndarray:
    """A camera-like frame (smooth background, table, a block that moves with the seed)."""
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:height, 0:width]
    image = np.stack([80 + 40 * y / height, 90 + 30 * x / width, 110 + 0 * x], axis=-1)
    image[height * 2 // 3 :] = [120, 100, 80]
    top, left = (seed * 7) % (height - height // 8), width // 3
    image[top : top + height // 10, left : left + width // 10] = [200, 40, 40]
    return np.clip(image + rng.normal(0, 3, image.shape), 0, 255).astype(np.uint8)


def answer_budget(model: Qwen3VLRewardModel) -> int:
    """Tokens a trained adapter decodes when it answers at once: the longest answer, then end of turn."""
    template = model.templates["progress"]
    answers = [template.answer_text(o) for o in template.options]
    longest = max(len(model.tokenizer(a, add_special_tokens=False)["input_ids"]) for a in answers)
    return longest + 1


def bench_model(
    name: str, model_dir: str, adapters: dict[str, str], frame: tuple[int, int], repeats: int, args
) -> dict:
    model = Qwen3VLRewardModel(
        Qwen3VLBackendConfig(
            model=model_dir,
            adapters=adapters,
            mode="generate",
            reasoning=False,
            max_batch_size=max(args.batch_sizes),
            image_size=None,  # frames as the camera gives them
            device="cpu",
        )
    )
    budget = answer_budget(model)
    model.config.max_new_tokens_direct = budget
    height, width = frame
    frames = [scene(i, height, width) for i in range(max(args.batch_sizes) + 1)]
    rows = []
    for batch in args.batch_sizes:
        requests = [
            RewardRequest("progress", {"current": frames[i + 1], "first": frames[0]}, TASK) for i in range(batch)
        ]
        wall: dict[str, list[float]] = {"generate": [], "logits": []}
        cpu: dict[str, list[float]] = {"generate": [], "logits": []}
        passes: dict[str, int] = {}
        for repeat in range(repeats + 1):  # the first round warms both modes up, untimed, and counts passes
            for mode in ("generate", "logits"):
                model.config.mode = mode
                if repeat == 0:
                    passes[mode] = count_passes(model, requests)
                    continue
                start, start_cpu = time.perf_counter(), time.process_time()
                model.score(requests)
                wall[mode].append(time.perf_counter() - start)
                cpu[mode].append(time.process_time() - start_cpu)
        row = {"model": name, "batch": batch, "prompt_tokens": prompt_length(model, requests[0])}
        row["generate_budget"] = budget
        for mode in ("generate", "logits"):
            row[f"{mode}_ms_per_query"] = round(1000 * min(wall[mode]) / batch, 2)
            row[f"{mode}_cpu_ms_per_query"] = round(1000 * min(cpu[mode]) / batch, 2)
            # decoder passes per batch: generate stopping before its budget would flatter it
            row[f"{mode}_passes"] = passes[mode]
        row["logits_over_generate"] = round(row["logits_ms_per_query"] / row["generate_ms_per_query"], 3)
        row["logits_over_generate_cpu"] = round(row["logits_cpu_ms_per_query"] / row["generate_cpu_ms_per_query"], 3)
        log.info("%s", row)
        rows.append(row)
    params = sum(p.numel() for p in model.model.parameters())
    return {"model": name, "parameters": params, "frame_hw": list(frame), "rows": rows}


def count_passes(model: Qwen3VLRewardModel, requests: list[RewardRequest]) -> int:
    """Decoder forward passes one `score` call makes."""
    decoder = next(m for m in model.model.modules() if type(m).__name__ == "Qwen3VLTextModel")
    calls = []
    handle = decoder.register_forward_pre_hook(lambda *_: calls.append(1))
    try:
        model.score(requests)
    finally:
        handle.remove()
    return len(calls)


def prompt_length(model: Qwen3VLRewardModel, request: RewardRequest) -> int:
    """Tokens of one query's prompt (text and vision tokens) as the model reads it."""
    from lrm.types import prepare_frames

    template = model.templates["progress"]
    inputs = model._encode(template, [request], [prepare_frames(request, 0, model.config.image_size)])
    return int(inputs["attention_mask"].sum())


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--batch-sizes", type=int, nargs="+", default=[1, 8, 32])
    parser.add_argument("--repeats", type=int, default=15, help="tiny: timed calls per mode and batch (fastest kept)")
    parser.add_argument("--compute-repeats", type=int, default=3, help="the same for the compute-bound model")
    parser.add_argument("--hidden", type=int, default=512, help="decoder width of the compute-bound model")
    parser.add_argument("--layers", type=int, default=4, help="decoder depth of the compute-bound model")
    parser.add_argument("--frame", type=int, nargs=2, default=[240, 320], metavar=("H", "W"))
    parser.add_argument("--threads", type=int, help="torch CPU threads (default: torch's choice)")
    parser.add_argument("--out", default="benchmarks/results/lrm_logits_trie.json")
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    for noisy in ("transformers", "lrm"):
        logging.getLogger(noisy).setLevel(logging.WARNING)

    import torch

    if args.threads:
        torch.set_num_threads(args.threads)
    started = time.perf_counter()
    load_at_start = os.getloadavg()
    with tempfile.TemporaryDirectory() as tmp:
        tiny = build_tiny_checkpoint(Path(tmp) / "tiny")
        tiny_adapters = {m: str(p) for m, p in tiny.adapters.items()}
        big = build_compute_bound_checkpoint(Path(tmp) / "compute", args.hidden, args.layers, max(args.frame))
        models = [
            bench_model("tiny", str(tiny.base), tiny_adapters, (64, 64), args.repeats, args),
            bench_model("compute", str(big), {}, tuple(args.frame), args.compute_repeats, args),
        ]
    result = {
        "command": shlex.join([".venv/bin/python", *sys.argv]),
        "machine": {
            "platform": platform.platform(),
            "cpus": os.cpu_count(),
            "torch_threads": torch.get_num_threads(),
            "torch": torch.__version__,
            "load_average_at_start": [round(x, 2) for x in load_at_start],
            "load_average_at_end": [round(x, 2) for x in os.getloadavg()],
        },
        "settings": {k: v for k, v in vars(args).items() if k != "out"},
        "seconds": round(time.perf_counter() - started, 1),
        "models": models,
        "logits_never_slower": {
            "wall": all(r["logits_over_generate"] <= 1.0 for m in models for r in m["rows"]),
            "cpu": all(r["logits_over_generate_cpu"] <= 1.0 for m in models for r in m["rows"]),
        },
    }
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=1) + "\n")
    header = ("model", "batch", "prompt", "generate ms/q", "logits ms/q", "ratio", "cpu ratio")
    print("{:8} {:>5} {:>6} {:>13} {:>11} {:>6} {:>9}".format(*header))
    for m in models:
        for r in m["rows"]:
            print(
                f"{r['model']:8} {r['batch']:5d} {r['prompt_tokens']:6d} {r['generate_ms_per_query']:13.2f} "
                f"{r['logits_ms_per_query']:11.2f} {r['logits_over_generate']:6.3f} "
                f"{r['logits_over_generate_cpu']:9.3f}"
            )
    print(f"wrote {out} in {result['seconds']} s (load average {load_at_start[0]:.2f} at start)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
