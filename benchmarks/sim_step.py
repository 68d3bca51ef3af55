"""Benchmark: ManiSkill env steps per second, state only vs. rendering the cameras every step.

Why: on a CPU a camera frame (lavapipe) costs an order of magnitude more than
a physics step, which is why `ManiSkillEnv.step` never renders and `capture()`
is on demand. This measures both in the same process, on the same env, and
reports the ratio; run it on the machine whose numbers you quote.

The action holds the arm near its reset pose with a small joint-space
oscillation (pd_joint_pos), so the arm moves but nothing flies off the table.

Example:
    .venv/bin/python benchmarks/sim_step.py --env PickCube-v1 --steps 400 --capture-steps 100 \
        --out benchmarks/results/sim_step.json
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from sim.maniskill_env import SimEnvConfig, make_sim_env  # noqa: E402


def _actions(env, n: int) -> list[np.ndarray]:
    qpos = env.raw_env.agent.robot.get_qpos()[0].cpu().numpy()
    arm = qpos[: env.action_shape[0] - 1]
    out = []
    for t in range(n):
        target = arm + 0.05 * np.sin(2 * np.pi * t / 40.0 + np.arange(arm.shape[0]))
        out.append(np.hstack([target, 1.0]).astype(np.float32))
    return out


def _rate(env, actions: list[np.ndarray], *, capture: bool) -> float:
    start = time.perf_counter()
    for action in actions:
        env.step(action)
        if capture:
            env.capture()
    return len(actions) / (time.perf_counter() - start)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--env", default="PickCube-v1")
    parser.add_argument("--steps", type=int, default=400, help="state-only steps to time")
    parser.add_argument("--capture-steps", type=int, default=100, help="steps with a capture() each to time")
    parser.add_argument("--height", type=int, default=128)
    parser.add_argument("--width", type=int, default=128)
    parser.add_argument("--repeats", type=int, default=2, help="alternate the two measurements this many times")
    parser.add_argument("--out", type=Path, help="also write the result as JSON here")
    args = parser.parse_args(argv)

    env = make_sim_env(SimEnvConfig(env_id=args.env, camera_width=args.width, camera_height=args.height))
    try:
        env.reset(seed=0)
        env.capture()  # the first frame compiles shaders; keep it out of the timing
        state_rates, capture_rates = [], []
        for _ in range(args.repeats):  # alternate, so that load from other processes hits both alike
            env.reset(seed=0)
            state_rates.append(_rate(env, _actions(env, args.steps), capture=False))
            env.reset(seed=0)
            capture_rates.append(_rate(env, _actions(env, args.capture_steps), capture=True))
        cameras = env.camera_names
    finally:
        env.close()

    state, rendered = max(state_rates), max(capture_rates)
    result = {
        "env_id": args.env,
        "cameras": cameras,
        "camera_size": [args.height, args.width],
        "state_only_steps_per_s": round(state, 1),
        "capture_every_step_steps_per_s": round(rendered, 1),
        "ratio": round(state / rendered, 1),
        "capture_ms": round(1000 * (1 / rendered - 1 / state), 2),
        "all_state_only": [round(r, 1) for r in state_rates],
        "all_capture_every_step": [round(r, 1) for r in capture_rates],
        "machine": {"cpus": os.cpu_count(), "platform": platform.platform(), "processor": platform.processor()},
    }
    print(
        f"{args.env} ({', '.join(cameras)} at {args.height}x{args.width}): "
        f"state only {state:.0f} steps/s, capture every step {rendered:.1f} steps/s, "
        f"ratio {state / rendered:.1f}x (~{result['capture_ms']} ms per capture)"
    )
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(result, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
