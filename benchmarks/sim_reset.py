"""Benchmark: what `ManiSkillEnv.reset` costs now that it rebuilds the scene, against ManiSkill's plain reset.

Why: a plain reset only sets poses, and the next episode then depends on the
one before (`ManiSkillEnv.reset`); rebuilding the scene makes an episode a
function of its seed, at a price per reset. This measures both in the same
process on the same env, alternating (so that load from other processes hits
both alike), each after a few steps of physics as a real episode would leave
it, and reports the medians, their ratio and a state-only episode for scale.

Example:
    .venv/bin/python benchmarks/sim_reset.py --env PickCube-v1 --resets 10
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from sim.maniskill_env import SimEnvConfig, make_sim_env  # noqa: E402


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--env", default="PickCube-v1")
    parser.add_argument("--resets", type=int, default=10, help="resets of each kind to time")
    parser.add_argument("--episode-steps", type=int, default=100, help="state-only steps of the episode for scale")
    parser.add_argument("--out", type=Path, help="also write the result as JSON here")
    args = parser.parse_args(argv)

    env = make_sim_env(SimEnvConfig(env_id=args.env))
    try:
        env.reset(seed=0)
        qpos = env.raw_env.agent.robot.get_qpos()[0].cpu().numpy()[: env.action_shape[0] - 1]
        action = np.hstack([qpos, 1.0]).astype(np.float32)
        times: dict[str, list[float]] = {"plain": [], "rebuild": []}
        for i in range(args.resets):
            for kind in times:
                for _ in range(5):
                    env.step(action)
                start = time.perf_counter()
                if kind == "plain":
                    env.raw_env.reset(seed=i)  # what ManiSkillEnv.reset did before
                else:
                    env.reset(seed=i)
                times[kind].append(time.perf_counter() - start)
        start = time.perf_counter()
        for _ in range(args.episode_steps):
            env.step(action)
        episode_s = time.perf_counter() - start
    finally:
        env.close()

    plain, rebuild = (statistics.median(times[k]) for k in ("plain", "rebuild"))
    result = {
        "env_id": args.env,
        "plain_reset_ms": round(1000 * plain, 1),
        "rebuild_reset_ms": round(1000 * rebuild, 1),
        "ratio": round(rebuild / plain, 1),
        f"episode_{args.episode_steps}_steps_ms": round(1000 * episode_s, 1),
        "all_plain_ms": [round(1000 * t, 1) for t in times["plain"]],
        "all_rebuild_ms": [round(1000 * t, 1) for t in times["rebuild"]],
        "machine": {"cpus": os.cpu_count(), "platform": platform.platform(), "processor": platform.processor()},
    }
    print(f"{args.env}: plain reset {result['plain_reset_ms']} ms, rebuilding reset {result['rebuild_reset_ms']} ms "
          f"({result['ratio']}x); {args.episode_steps} state-only steps {1000 * episode_s:.0f} ms")
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(result, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
