"""Benchmark: a PPO batch of CPU envs in worker processes (`AsyncSim`, one per core) against all in this
process (`SyncSim`), and whether the split changes any number.

Why: PPO on a CPU steps 64 ManiSkill envs per decision and waits for all of them; one process
steps them on one core. Both sims run the same episodes here (same seeds, same random actions,
the camera rendered for every env every --capture-every steps, as PPO's reward queries do),
alternating so that load from other processes hits both alike. The first round is a warm-up (each
worker builds its renderer) and is reported apart; the ratio is the median over the rest. Every
state, oracle value and frame is compared bit for bit.

Example (the README's figure):
    .venv/bin/python benchmarks/sim_workers.py --out benchmarks/results/sim_workers.json
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import statistics
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.machine import cpu_model  # noqa: E402
from sim.maniskill_env import SimEnvConfig  # noqa: E402
from sim.vector_env import AsyncSim, SyncSim  # noqa: E402


def episode(sim, seeds: list[int], actions: np.ndarray, capture_every: int) -> tuple[float, list[np.ndarray]]:
    """One synchronised episode; its wall seconds and everything it returned, flattened."""
    start = time.perf_counter()
    result = sim.reset(seeds)
    out = [result.states]
    everyone = list(range(len(seeds)))
    for step, action in enumerate(actions, start=1):
        result = sim.step(np.clip(action, sim.action_low, sim.action_high))
        out += [result.states, result.dense_reward, result.success]
        if step % capture_every == 0:
            frames = sim.capture(everyone)
            out += [frames[i][name] for i in everyone for name in sim.camera_names]
    return time.perf_counter() - start, out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--env", default="PushCube-v1")
    parser.add_argument("--envs", type=int, default=64, help="envs per batch (configs/ppo/pushcube_judge.yaml)")
    parser.add_argument("--workers", type=int, default=0, help="worker processes (0: one per core)")
    parser.add_argument("--steps", type=int, default=104, help="steps per episode")
    parser.add_argument("--capture-every", type=int, default=26, help="render every env every N steps (K)")
    parser.add_argument("--rounds", type=int, default=3, help="episodes of each sim, the first a warm-up")
    parser.add_argument("--out", type=Path, help="also write the result as JSON here")
    args = parser.parse_args(argv)
    if args.rounds < 2:
        parser.error("--rounds must be at least 2: the first is a warm-up")

    config = SimEnvConfig(env_id=args.env, state_mode="full", cameras=["base_camera"], camera_width=128,
                          camera_height=128, show_goal_markers=False)
    start = time.perf_counter()
    workers = AsyncSim(config, args.envs, args.workers)
    start_s = time.perf_counter() - start
    local = SyncSim(config, args.envs)
    rng = np.random.default_rng(0)
    times: dict[str, list[float]] = {"workers": [], "in_process": []}
    identical = True
    try:
        for r in range(args.rounds):
            seeds = list(range(r * args.envs, (r + 1) * args.envs))
            actions = rng.normal(0.0, 0.3, (args.steps, args.envs, len(local.action_low))).astype(np.float32)
            t_workers, a = episode(workers, seeds, actions, args.capture_every)
            t_local, b = episode(local, seeds, actions, args.capture_every)
            identical &= len(a) == len(b) and all(np.array_equal(x, y) for x, y in zip(a, b, strict=True))
            times["workers"].append(t_workers)
            times["in_process"].append(t_local)
            print(f"round {r}: workers {t_workers:.1f} s, in process {t_local:.1f} s, identical so far: {identical}",
                  flush=True)
    finally:
        workers.close()
        local.close()
    median = {k: statistics.median(v[1:]) for k, v in times.items()}
    result = {
        "command": "python " + shlex.join(sys.argv if argv is None else ["benchmarks/sim_workers.py", *argv]),
        "env": args.env, "envs": args.envs, "workers": workers.workers, "steps": args.steps,
        "capture_every": args.capture_every, "cpu_count": os.cpu_count(), "cpu_model": cpu_model(),
        "worker_start_s": round(start_s, 2),
        "episode_s": {k: [round(t, 2) for t in v] for k, v in times.items()},
        "median_after_warmup_s": {k: round(v, 2) for k, v in median.items()},
        "speedup": round(median["in_process"] / median["workers"], 2), "bit_identical": bool(identical),
    }
    print(json.dumps(result, indent=2))
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(result, indent=2) + "\n")
    return 0 if identical else 1


if __name__ == "__main__":
    raise SystemExit(main())
