"""Benchmark: what one reward query costs, by scoring mode, batch size and episode step.

Part 1, `generate` vs `logits` (lrm.backends.qwen3vl): the progress modality at batch
sizes 1, 8, 32, with reasoning off (logits: one forward pass; generate: a short
greedy decode of the JSON answer) and on (both decode the reasoning first;
logits then scores the eleven options). Reports latency per query and frames/s
(one scored frame per query; each progress query also shows the anchor frame).

Part 2, step 10 vs step 300 at K = 10: an LRM progress query always shows two
frames, so its cost is flat; a Robometer-style model (LeRobot's Robometer on the
same tiny backbone) reads the episode prefix, so its cost grows with the step
unless the prefix is subsampled (`max_frames`, 8 in LeRobot's default).

Models: the tiny random Qwen3-VL of tests.support.tiny_reward_models (CPU-friendly, same code
path as Qwen3-VL-8B; absolute numbers are not the 8B's, ratios are the point),
or `--model DIR` for a real checkpoint (part 1 only).

Timings are the fastest of `--repeats` runs; on a shared machine (the JSON records
the load average) use `--threads 1`, which keeps other processes from stalling
torch's thread team; small differences are still noise, trends are not.

Example:
    .venv/bin/python benchmarks/lrm_scoring.py --out outputs/benchmarks/lrm_scoring.json
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import platform
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from lrm.backends.lerobot_rewards import RobometerBackendConfig, RobometerRewardModel  # noqa: E402
from lrm.backends.qwen3vl import Qwen3VLBackendConfig, Qwen3VLRewardModel  # noqa: E402
from lrm.types import RewardRequest  # noqa: E402
from tests.support.tiny_reward_models import build_tiny_checkpoint, build_tiny_robometer  # noqa: E402

log = logging.getLogger("lrm_scoring")
TASK = "pick up the red cube and lift it"


def scene(seed: int, size: int) -> np.ndarray:
    """A camera-like frame (smooth background, table, a block that moves with the seed)."""
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:size, 0:size]
    image = np.stack([80 + 40 * y / size, 90 + 30 * x / size, 110 + 0 * x], axis=-1)
    image[size * 2 // 3 :] = [120, 100, 80]
    top = (seed * 3) % (size - 16)
    image[top : top + 12, size // 3 : size // 3 + 12] = [200, 40, 40]
    return np.clip(image + rng.normal(0, 3, image.shape), 0, 255).astype(np.uint8)


def timed(fn, repeats: int) -> float:
    """Fastest of `repeats` calls after two warm-up calls (first calls of a new shape pay one-off costs).

    The minimum, not the median: on a shared machine other processes only ever add time.
    """
    fn()
    fn()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return float(min(times))


def bench_modes(model_dir: str, adapters: dict[str, str], args) -> list[dict]:
    rows = []
    frames = [scene(i, args.frame_size) for i in range(max(args.batch_sizes) + 1)]
    for reasoning in (False, True):
        for mode in ("generate", "logits"):
            config = Qwen3VLBackendConfig(
                model=model_dir,
                adapters=adapters,
                mode=mode,
                reasoning=reasoning,
                max_new_tokens=args.reasoning_tokens,
                max_new_tokens_direct=args.answer_tokens,
                max_batch_size=max(args.batch_sizes),
                image_size=(args.image_size, args.image_size),
                device=args.device,
            )
            model = Qwen3VLRewardModel(config)
            for batch in args.batch_sizes:
                requests = [
                    RewardRequest("progress", {"current": frames[i + 1], "first": frames[0]}, TASK)
                    for i in range(batch)
                ]
                seconds = timed(lambda: model.score(requests), args.repeats)
                texts = [r.raw_text for r in model.score(requests)]
                tokens = [len(model.tokenizer(t, add_special_tokens=False)["input_ids"]) for t in texts]
                row = {
                    "mode": mode,
                    "reasoning": reasoning,
                    "batch": batch,
                    "seconds_per_batch": round(seconds, 4),
                    "ms_per_query": round(1000 * seconds / batch, 2),
                    "frames_per_s": round(batch / seconds, 2),
                    # text per answer (logits: reasoning + forced answer prefix); a random model may stop early
                    "mean_text_tokens": round(float(np.mean(tokens)), 1),
                }
                log.info("%s", row)
                rows.append(row)
            del model
    return rows


def bench_steps(model_dir: str, adapters: dict[str, str], robometer_dir: str, args) -> list[dict]:
    every = 10
    frames = [scene(i, args.frame_size) for i in range(max(args.steps) + 1)]
    lrm = Qwen3VLRewardModel(
        Qwen3VLBackendConfig(
            model=model_dir,
            adapters=adapters,
            mode="logits",
            reasoning=False,
            image_size=(args.image_size, args.image_size),
            device=args.device,
        )
    )
    side = args.image_size  # the scenes are square: the longer side is the size
    capped = RobometerRewardModel(
        RobometerBackendConfig(pretrained_path=robometer_dir, base_model_id=model_dir, max_frames=8, max_side=side)
    )
    full = RobometerRewardModel(
        RobometerBackendConfig(pretrained_path=robometer_dir, base_model_id=model_dir, max_frames=10**6, max_side=side)
    )
    rows = []
    for step in args.steps:
        current, first = frames[step], frames[0]
        prefix = np.stack(frames[: step + 1])  # every frame so far: per-frame progress over the prefix
        queried = np.stack(frames[: step + 1 : every])  # the frames interval-hold rendered so far
        cases = {
            "lrm_progress (2 frames)": (lrm, RewardRequest("progress", {"current": current, "first": first}, TASK), 2),
            "robometer max_frames=8": (
                capped,
                RewardRequest("progress", {"current": current, "first": first}, TASK, video=prefix),
                min(8, len(prefix)),
            ),
            "robometer every-K prefix": (
                full,
                RewardRequest("progress", {"current": current, "first": first}, TASK, video=queried),
                len(queried),
            ),
            "robometer full prefix": (
                full,
                RewardRequest("progress", {"current": current, "first": first}, TASK, video=prefix),
                len(prefix),
            ),
        }
        for name, (model, request, shown) in cases.items():
            seconds = timed(lambda m=model, r=request: m.score([r]), args.repeats)
            row = {"model": name, "step": step, "frames_shown": shown, "ms_per_query": round(1000 * seconds, 2)}
            log.info("%s", row)
            rows.append(row)
    return rows


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", help="a Qwen3-VL checkpoint dir (default: build the tiny random one)")
    parser.add_argument("--batch-sizes", type=int, nargs="+", default=[1, 8, 32])
    parser.add_argument("--steps", type=int, nargs="+", default=[10, 300])
    parser.add_argument("--frame-size", type=int, default=128, help="side of the square camera frames")
    parser.add_argument("--image-size", type=int, default=64, help="side frames are resized to for the model")
    parser.add_argument("--answer-tokens", type=int, default=12, help="generate budget without reasoning")
    parser.add_argument("--reasoning-tokens", type=int, default=48, help="generate budget with reasoning")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--device", default="auto")
    parser.add_argument("--threads", type=int, help="torch CPU threads (default: torch's choice)")
    parser.add_argument("--skip-steps", action="store_true", help="only part 1")
    parser.add_argument("--out", default="outputs/benchmarks/lrm_scoring.json")
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    for noisy in ("transformers", "lerobot", "lrm"):
        logging.getLogger(noisy).setLevel(logging.WARNING)

    import torch

    if args.threads:
        torch.set_num_threads(args.threads)
    with tempfile.TemporaryDirectory() as tmp:
        if args.model:
            model_dir, adapters = args.model, {}
        else:
            tiny = build_tiny_checkpoint(Path(tmp) / "tiny")
            model_dir, adapters = str(tiny.base), {m: str(p) for m, p in tiny.adapters.items()}
        result = {
            "machine": {
                "platform": platform.platform(),
                "torch_threads": torch.get_num_threads(),
                "torch": torch.__version__,
                "load_average_at_start": os.getloadavg(),
            },
            "model": args.model or "tiny random Qwen3-VL (tests.support.tiny_reward_models)",
            "settings": {k: v for k, v in vars(args).items() if k != "out"},
            "modes": bench_modes(model_dir, adapters, args),
        }
        if not args.skip_steps and not args.model:
            robometer_dir = build_tiny_robometer(Path(tmp) / "robometer", model_dir)
            result["steps"] = bench_steps(model_dir, adapters, str(robometer_dir), args)
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=1))
    print(f"{'mode':9} {'reasoning':9} {'batch':>5} {'ms/query':>9} {'frames/s':>9} {'tokens':>6}")
    for row in result["modes"]:
        print(
            f"{row['mode']:9} {row['reasoning']!s:9} {row['batch']:5d} {row['ms_per_query']:9.1f} "
            f"{row['frames_per_s']:9.1f} {row['mean_text_tokens']:6.1f}"
        )
    for row in result.get("steps", []):
        print(f"step {row['step']:4d}  {row['model']:26} frames {row['frames_shown']:4d}  {row['ms_per_query']:9.1f} ms")
    print(f"wrote {out} (load average at start {result['machine']['load_average_at_start'][0]:.1f})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
