"""GPU check: the published LRM adapters scoring recorded ManiSkill frames, every modality in both modes.

Loads the backend of configs/lrm/backends/lrm_published.yaml (Qwen3-VL-8B-Instruct
with the three adapters of USC-PSI-Lab/LRM-models, through the project's loading
code, whose check refuses adapters that did not load), then scores one episode's
query frames as the paper's interval-hold would (K steps apart, first query at
step K): contrastive on (previous query frame, current), progress on (reset
frame, current), completion on the current frame, each in `generate` and
`logits` mode. Prints per modality and mode the rewards per query, how many
answers were read, the first answer's text, and seconds per query; `--out`
writes the same as JSON.

Frames (native size, as the reference sends them):
- `--store PATH [--episode N] [--camera NAME]`: an episode of an episode store;
- default: one motion-planning demonstration recorded here (`--env`, 640x480 by
  default, like the reference's camera; needs ManiSkill and its planner);
- `--synthetic`: drawn frames, no simulator (a dry run of the code path).

Weights: the hub ids of the preset, or `--adapters DIR` for a local copy of
USC-PSI-Lab/LRM-models (subfolders contrastive/ progress/ completion/) and
`--model DIR` for a local Qwen3-VL-8B-Instruct; `--set key=value` overrides any
key of the backend file. `--tiny` swaps in the tiny random Qwen3-VL of the tests
(its progress adapter keeps a vision-tower copy like the published one): a CPU
dry run of everything but the real weights. Never a test dependency.

Examples:
    .venv/bin/python benchmarks/gpu_lrm_published.py --adapters /models/LRM-models --out lrm_published.json
    .venv/bin/python benchmarks/gpu_lrm_published.py --tiny --synthetic --every 4 --steps 12
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import logging
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

log = logging.getLogger("gpu_lrm_published")
MODALITIES = ("contrastive", "progress", "completion")


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter, epilog=__doc__.split("\n\n", 1)[1])
    parser.add_argument("--backend", default=str(ROOT / "configs/lrm/backends/lrm_published.yaml"), help="backend YAML")
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="override a backend key")
    parser.add_argument("--adapters", metavar="DIR", help="local copy of USC-PSI-Lab/LRM-models")
    parser.add_argument("--model", metavar="DIR", help="local Qwen3-VL-8B-Instruct (default: the preset's hub id)")
    parser.add_argument("--tiny", action="store_true", help="the tests' tiny random Qwen3-VL instead (CPU dry run)")
    source = parser.add_mutually_exclusive_group()
    source.add_argument("--store", metavar="PATH", help="score an episode of this episode store")
    source.add_argument("--synthetic", action="store_true", help="drawn frames instead of the simulator")
    parser.add_argument("--episode", type=int, default=0, help="episode of --store")
    parser.add_argument("--camera", help="camera of --store (default: its first)")
    parser.add_argument("--env", default="PickCube-v1", help="ManiSkill task to record a demonstration of")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--width", type=int, default=640)
    parser.add_argument("--height", type=int, default=480)
    parser.add_argument("--every", type=int, default=10, help="K: steps between queries (first query at step K)")
    parser.add_argument("--steps", type=int, default=None, help="use at most this many frames of the episode")
    parser.add_argument("--modes", nargs="+", choices=["generate", "logits"], default=["generate", "logits"])
    parser.add_argument("--modalities", nargs="+", choices=MODALITIES, default=list(MODALITIES))
    parser.add_argument("--out", metavar="JSON", help="write the results here too")
    args = parser.parse_args(argv)
    if args.every < 1:
        parser.error("--every must be >= 1")
    if args.tiny and (args.adapters or args.model):
        parser.error("--tiny replaces the weights; leave out --adapters and --model")
    return args


# ---------------------------------------------------------------- frames


def episode_frames(args: argparse.Namespace, scratch: Path) -> tuple[np.ndarray, str]:
    """(T, H, W, 3) uint8 frames of one episode, frame 0 the reset observation, and its task."""
    if args.synthetic:
        return synthetic_frames(args.steps or 4 * args.every + 1, args.height, args.width), "pick up the red cube"
    from recordings.store import EpisodeStore

    path = args.store
    if path is None:
        from sim.demos import record_demos

        path = str(scratch / "demo_store")
        log.info("recording a %s demonstration at %dx%d", args.env, args.width, args.height)
        report = record_demos(args.env, 1, path, seed=args.seed, camera_size=(args.height, args.width),
                              progress=False)
        log.info("%s", report)
    store = EpisodeStore.open(path, mode="r")
    episode = store.load_episode(args.episode if args.store else 0)
    camera = args.camera or next(iter(episode.images))
    frames = episode.images[camera]
    return (frames[: args.steps] if args.steps else frames), episode.meta.task


def synthetic_frames(count: int, height: int, width: int) -> np.ndarray:
    """A red block sliding right over a table, one frame per step."""
    y, x = np.mgrid[0:height, 0:width]
    out = []
    for t in range(count):
        image = np.stack([80 + 40 * y / height, 90 + 30 * x / width, 110 + 0 * x], axis=-1)
        image[height * 2 // 3 :] = [120, 100, 80]
        left = int((width - height // 6) * t / max(1, count - 1))
        image[height // 2 : height // 2 + height // 6, left : left + height // 6] = [200, 40, 40]
        out.append(image.astype(np.uint8))
    return np.stack(out)


def query_requests(frames: np.ndarray, task: str, every: int, modality: str) -> tuple[list[int], list[Any]]:
    """The paper's queries of one episode: steps K, 2K, ...; contrastive from the second on (A = previous)."""
    from lrm.types import RewardRequest

    steps = list(range(every, len(frames), every))
    requests = []
    kept = []
    for j, t in enumerate(steps):
        current = frames[t]
        if modality == "contrastive":
            if j == 0:
                continue  # no earlier query frame: the reference adds 0
            images = {"current": current, "previous": frames[steps[j - 1]]}
        elif modality == "progress":
            images = {"current": current, "first": frames[0]}
        else:
            images = {"current": current}
        requests.append(RewardRequest(modality, images, task, request_id=t))
        kept.append(t)
    return kept, requests


# ---------------------------------------------------------------- the backend


def backend_config(args: argparse.Namespace, scratch: Path):
    from common.config import load_config
    from lrm.backends import RewardBackendConfig

    overrides = list(args.set)
    if args.tiny:
        from tests.support.tiny_reward_models import build_tiny_checkpoint, build_tiny_vision_adapter

        tiny = build_tiny_checkpoint(scratch / "tiny", modalities=("contrastive", "completion"))
        repo = scratch / "tiny" / "LRM-models"
        build_tiny_vision_adapter(tiny.base, repo / "progress")
        for name, path in tiny.adapters.items():
            path.rename(repo / name)
        args.model, args.adapters = str(tiny.base), str(repo)
        overrides += [f"qwen3vl.processor={tiny.base}", "qwen3vl.max_new_tokens_by_modality="
                      "{contrastive: 24, progress: 16, completion: 12}"]
    if args.model:
        overrides.append(f"qwen3vl.model={args.model}")
    if args.adapters:
        adapters = {m: {"path": args.adapters, "subfolder": m} for m in ("progress", "contrastive", "completion")}
        overrides.append(f"qwen3vl.adapters={json.dumps(adapters)}")
        if not args.tiny and not any(o.startswith("qwen3vl.processor=") for o in args.set):
            overrides.append(f"qwen3vl.processor={json.dumps({'path': args.adapters, 'subfolder': 'progress'})}")
    return load_config(args.backend, RewardBackendConfig, overrides)


def synchronize() -> None:
    import torch

    if torch.cuda.is_available():
        torch.cuda.synchronize()


def score_all(model: Any, frames: np.ndarray, task: str, args: argparse.Namespace) -> list[dict[str, Any]]:
    rows = []
    for mode in args.modes:
        model.config = dataclasses.replace(model.config, mode=mode)  # one loaded model serves both modes
        for modality in args.modalities:
            steps, requests = query_requests(frames, task, args.every, modality)
            if not requests:
                continue
            model.score(requests[:1])  # warm-up: the first call of a shape pays one-off costs
            synchronize()
            started = time.perf_counter()
            rewards = model.score(requests)
            synchronize()
            seconds = time.perf_counter() - started
            rows.append({
                "mode": mode, "modality": modality, "steps": steps,
                "values": [round(r.value, 4) for r in rewards],
                "read": sum(r.parsed_ok for r in rewards), "queries": len(rewards),
                "seconds_per_query": seconds / len(rewards),
                "first_answer": rewards[0].raw_text,
                "first_probs": rewards[0].probs,
            })
            row = rows[-1]
            print(f"{mode:8s} {modality:11s} {row['seconds_per_query']:7.3f} s/query  read {row['read']}/{row['queries']}"
                  f"  rewards {dict(zip(steps, row['values']))}", flush=True)
            print(f"{'':21s}first answer: {row['first_answer'][-160:]!r}", flush=True)
            if row["first_probs"]:
                print(f"{'':21s}first probs: { {k: round(v, 3) for k, v in row['first_probs'].items()} }", flush=True)
    return rows


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s")
    import torch

    from lrm.backends.qwen3vl import Qwen3VLRewardModel

    with tempfile.TemporaryDirectory(prefix="gpu_lrm_published-") as tmp:
        scratch = Path(tmp)
        config = backend_config(args, scratch)
        frames, task = episode_frames(args, scratch)
        print(f"episode: {len(frames)} frames of {frames.shape[2]}x{frames.shape[1]}, task {task!r}, K = {args.every}")
        started = time.perf_counter()
        model = Qwen3VLRewardModel(config.qwen3vl)  # refuses adapters whose weights did not arrive
        synchronize()
        load_seconds = time.perf_counter() - started
        print(f"loaded {config.qwen3vl.model} with adapters {sorted(config.qwen3vl.adapters)} on {model.device} "
              f"({model.dtype}) in {load_seconds:.1f} s; the adapter check passed")
        rows = score_all(model, frames, task, args)
    result = {
        "backend": args.backend, "model": config.qwen3vl.model, "tiny": args.tiny, "device": model.device,
        "gpu": torch.cuda.get_device_name() if torch.cuda.is_available() else None,
        "peak_gpu_memory_gb": torch.cuda.max_memory_allocated() / 2**30 if torch.cuda.is_available() else None,
        "frames": list(frames.shape), "task": task, "every": args.every, "load_seconds": load_seconds, "rows": rows,
    }
    if result["peak_gpu_memory_gb"] is not None:
        print(f"peak GPU memory {result['peak_gpu_memory_gb']:.1f} GiB on {result['gpu']}")
    if args.out:
        Path(args.out).parent.mkdir(parents=True, exist_ok=True)
        Path(args.out).write_text(json.dumps(result, indent=2, default=str) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
