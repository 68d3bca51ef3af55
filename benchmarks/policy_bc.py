"""Benchmark: behaviour cloning of the small actor-critic on 10, 25 and 50 PickCube demos.

Why: these are the base policies the self-improvement rounds start from; the
success rate over 100 evaluation episodes (oracle flag, 95% Wilson interval)
and the training time on this machine say what a round has to improve on and
what a CPU-only user waits for.

It records motion-planning demos (privileged "full" state, no cameras) into a
store unless `--store` already holds enough, trains one policy per demo count
on the first N demos (the recipe of configs/policies/bc_pickcube.yaml unless
overridden), evaluates each on env seeds 10000.. (never a demo seed), and
evaluates a random policy on the same seeds as the floor.

Example:
    .venv/bin/python benchmarks/policy_bc.py --store outputs/bench/pickcube-full --demos 10 25 50 \
        --episodes 100 --out outputs/bench/policy_bc.json

Measured on the 2-core development machine (no GPU), configs/policies/bc_pickcube.yaml
(state "full", relative joint targets, chunks of 16 with 8 executed, 3000 steps of batch 256,
input-state noise 0.1), 100 episodes on seeds 10000-10099, max 200 steps; two runs gave
identical success counts (training and evaluation are deterministic on one machine), after
every reset began to rebuild the scene:

    policy          success (95% Wilson CI)      mean best dense reward   training time
    random          0/100 = 0%  (0.0%-3.7%)      0.085                    -
    BC, 10 demos    0/100 = 0%  (0.0%-3.7%)      0.167                    30.7 s
    BC, 25 demos    6/100 = 6%  (2.8%-12.5%)     0.321                    30.3 s
    BC, 50 demos   20/100 = 20% (13.3%-28.9%)    0.521                    30.4 s

(Training time includes loading the frames, with two other jobs on the two cores; alone
it took 8-11 s. Before the reset rebuild the same command gave 0 / 8 / 14%. Held-out demos:
10% of the episodes, at least one.)
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import platform
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from common.config import load_config  # noqa: E402
from app.evaluate import evaluate_in_sim  # noqa: E402
from policies.factory import load_policy  # noqa: E402
from policies.scripted import RandomPolicy  # noqa: E402
from policies.actor_critic.bc_train import BCTrainConfig, train_bc  # noqa: E402
from sim.maniskill_env import SimEnvConfig  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]


def _ensure_demos(store: Path, n: int) -> None:
    from recordings.store import EpisodeStore
    from sim.demos import record_demos

    have, next_seed = 0, 0
    if store.exists():
        with EpisodeStore.open(store) as s:
            demos = s.episodes(source="demo", oracle_success=True)
            have = len(demos)
            next_seed = 1 + max((r.meta.seed or 0 for r in s.episodes()), default=-1)
    if have < n:
        config = SimEnvConfig(env_id="PickCube-v1", state_mode="full", cameras=[])
        report = record_demos("PickCube-v1", n - have, store, seed=next_seed, env_config=config)
        print(report.summary())


def _relative(path: Path) -> str:
    try:
        return str(path.resolve().relative_to(ROOT))
    except ValueError:
        return str(path)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--store", type=Path, default=ROOT / "outputs/bench/pickcube-full")
    parser.add_argument("--demos", type=int, nargs="+", default=[10, 25, 50])
    parser.add_argument("--episodes", type=int, default=100)
    parser.add_argument("--config", type=Path, default=ROOT / "configs/policies/bc_pickcube.yaml")
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="override a train key")
    parser.add_argument("--max-steps", type=int, default=200)
    parser.add_argument("--work", type=Path, default=ROOT / "outputs/bench/policy_bc")
    parser.add_argument("--out", type=Path, help="write the results as JSON")
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)

    _ensure_demos(args.store, max(args.demos))
    env = SimEnvConfig(env_id="PickCube-v1", state_mode="full", cameras=[])
    rows = []
    floor = evaluate_in_sim(RandomPolicy(seed=0), env, args.episodes, max_steps=args.max_steps, policy_id="random")
    print(floor.summary())
    for n in args.demos:
        out = args.work / f"demos{n}"
        overrides = [f"store={args.store}", f"output_dir={out}", f"max_episodes={n}", "select=[{source: [demo]}]",
                     *args.set]
        config = load_config(args.config, BCTrainConfig, overrides)
        if out.exists():
            import shutil

            shutil.rmtree(out)
        started = time.perf_counter()
        result = train_bc(config)
        train_s = time.perf_counter() - started
        report = evaluate_in_sim(load_policy(result.checkpoint), env, args.episodes, max_steps=args.max_steps,
                                 policy_id=f"bc-{n}")
        lo, hi = report.ci95
        row = {"demos": n, "train_episodes": len(result.train_episodes), "train_frames": result.train_frames,
               "steps": result.report.steps, "train_s": round(train_s, 1), "val_loss": result.report.val_loss,
               "successes": report.successes, "episodes": report.episodes,
               "success_rate": report.success_rate, "ci95": [lo, hi],
               "mean_max_dense_reward": report.mean_max_dense_reward, "eval_s": round(report.elapsed_s, 1)}
        rows.append(row)
        print(f"{n:3d} demos: train {train_s:6.1f} s, success {report.successes}/{report.episodes} "
              f"= {report.success_rate:.1%} (95% CI {lo:.1%}-{hi:.1%}), "
              f"mean best dense reward {report.mean_max_dense_reward:.3f}")
    result = {
        "benchmark": "policy_bc",
        "machine": {"cpus": os.cpu_count(), "platform": platform.platform(), "python": platform.python_version()},
        "config": _relative(args.config), "overrides": args.set, "max_steps": args.max_steps,
        "random": {"successes": floor.successes, "episodes": floor.episodes, "ci95": list(floor.ci95),
                   "mean_max_dense_reward": floor.mean_max_dense_reward},
        "results": rows,
    }
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(result, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
