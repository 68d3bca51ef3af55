"""Benchmark: how much of the oracle's PPO gain does the compact reward model recover? (issue 7, item 5)

For each task (PushCube-v1, PickCube-v1), on this machine:

1. record motion-planning demos with the privileged state and a 64x64 camera;
   behaviour-clone the small actor-critic on them (configs/policies/bc_pickcube.yaml);
   roll the BC policy out on other seeds with the camera on (mostly failures);
   train the compact reward model (`lite`) on demos + rollouts (lrm.training.lite_runs.run_lite).
   All of this is cached under --work and skipped when present.
2. three arms from the same BC checkpoint, the same env seeds and the same number of env steps:
   (a) no further training;
   (b) PPO with the compact reward model (progress, K = 10, interval-hold; configs/ppo/*_lite.yaml);
   (c) PPO with the simulator's dense reward (configs/ppo/pickcube_oracle.yaml);
   each evaluated by the oracle success flag over --episodes episodes (seeds 10000..,
   deterministic mean actions, horizon = the PPO episode length), with Wilson 95% intervals;
   recovered = (b - a) / (c - a).
3. env-steps/s of one PPO rollout with the camera rendered only at query steps (what `lrm-robot ppo`
   does) against rendering every env at every step (what an rgb observation mode costs).

Example (the run reported in README.md; the PickCube BC checkpoint is configs/policies/bc_pickcube.yaml's,
50 demos, 14% success over 200 steps):
    .venv/bin/python benchmarks/ppo_reward.py --bc-checkpoint PickCube-v1=outputs/policies/bc_pickcube/checkpoints/last \
        --demos 12 --failure-rollouts 10 --lite-steps 600 --env-steps 15360 --episodes 100 \
        --out outputs/bench/ppo_reward.json

Measured on the 2-core development machine, shared (load average 5-8 during the run), 865 s in all;
8 in-process envs, 15,360 env steps per PPO arm (PushCube 40 iterations of 8 x 48 steps, PickCube 20 of
8 x 96), configs/ppo/*_lite.yaml and pickcube_oracle.yaml as shipped; 100 evaluation episodes:

    task        (a) BC             (b) PPO + lite      (c) PPO + oracle    (b-a)/(c-a)
    PushCube    0/100 [0, 3.7%]    0/100 [0, 3.7%]     1/100 [0.2, 5.4%]   0.0
    PickCube   10/100 [5.5, 17%]  10/100 [5.5, 17%]   12/100 [7.0, 20%]    0.0

The oracle's own gain is inside the noise (overlapping intervals), so the ratio says nothing yet; the
PPO budget a 2-core machine affords here is ~1/50 of the paper's (320 envs x 30 iterations).
With 3x the env steps on PickCube (--tasks PickCube-v1 --env-steps 46080 --skip-render-cost, 60
iterations, load 5-6.5, 1023 s): (a) 10/100, (b) 9/100 [4.8, 16.2%], (c) 10/100: still no gain from
either reward at this budget.
Reward-vs-oracle agreement of the lite model during PPO (mean over iterations): PushCube progress
Pearson 0.92 (per trajectory 0.98), ROC-AUC 0.96; PickCube 0.41 (0.61), 0.64.
Rendering only at query steps: 153 env-steps/s vs 28.7 when every env renders every step (5.3x),
PickCube, 8 envs, one 64x64 camera, lite progress every 10 steps.
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

ROOT = Path(__file__).resolve().parents[1]
CAMERA = "base_camera"
TASKS = {  # env id -> (PPO config of the lite arm, episode steps)
    "PushCube-v1": ("configs/ppo/pushcube_lite.yaml", 48),
    "PickCube-v1": ("configs/ppo/pickcube_lite.yaml", 96),
}


def _load() -> str:
    return " ".join(f"{x:.2f}" for x in os.getloadavg())


def prepare(env_id: str, work: Path, args: argparse.Namespace) -> tuple[Path, Path]:
    """(BC checkpoint, lite backend YAML) for `env_id`, built once under `work`."""
    from common.config import load_config
    from app.evaluate import evaluate_in_sim
    from lrm.backends.lite_config import LiteTrainConfig
    from lrm.training.lite_runs import LiteTrainRun, run_lite
    from policies.actor_critic.bc_train import BCTrainConfig, train_bc
    from policies.factory import load_policy
    from recordings.store import EpisodeStore
    from sim.demos import record_demos
    from sim.maniskill_env import SimEnvConfig

    camera_env = SimEnvConfig(env_id=env_id, state_mode="full", cameras=[CAMERA], camera_width=64, camera_height=64)
    store = work / "store"
    if not store.exists():
        report = record_demos(env_id, args.demos, store, seed=0, env_config=camera_env, progress=False)
        print(f"[{env_id}] {report.summary()}", flush=True)
    given = dict(item.split("=", 1) for item in args.bc_checkpoint)
    if env_id in given:  # an existing behaviour-cloned checkpoint (e.g. configs/policies/bc_pickcube.yaml's)
        bc_checkpoint = Path(given[env_id])
    else:
        bc_checkpoint = work / "bc" / "checkpoints/last"
    bc = bc_checkpoint.parents[1]
    if env_id not in given and not (bc_checkpoint / "model.safetensors").is_file():
        config = load_config(ROOT / "configs/policies/bc_pickcube.yaml", BCTrainConfig, [
            f"store={store}", f"output_dir={bc}", "select=[{source: [demo]}]", "progress=false",
            f"steps={args.bc_steps}"])
        print(f"[{env_id}] BC: {train_bc(config).summary()}", flush=True)
    with EpisodeStore.open(store, mode="r") as s:
        rollouts = len(s.episodes(source="sim"))
    if rollouts == 0:
        report = evaluate_in_sim(load_policy(bc_checkpoint), camera_env, args.failure_rollouts, seed=5000,
                                 max_steps=TASKS[env_id][1], policy_id="bc", record_to=store, progress=False)
        print(f"[{env_id}] recorded BC rollouts for the reward model: {report.summary()}", flush=True)
    lite = work / "lite"
    if not (lite / "backend.yaml").is_file():
        started = time.perf_counter()
        report = run_lite(LiteTrainRun(store=str(store), output_dir=str(lite),
                                       train=LiteTrainConfig(steps=args.lite_steps, log_every=100)))
        print(f"[{env_id}] lite reward model: {time.perf_counter() - started:.0f} s, held-out "
              f"{report['history'].get('val')}", flush=True)
    return bc_checkpoint, lite / "backend.yaml"


def evaluate(policy_dir: Path, env_id: str, args: argparse.Namespace, steps: int) -> dict:
    from app.evaluate import evaluate_in_sim
    from policies.factory import load_policy
    from sim.maniskill_env import SimEnvConfig

    env = SimEnvConfig(env_id=env_id, state_mode="full", cameras=[])
    report = evaluate_in_sim(load_policy(policy_dir), env, args.episodes, seed=10_000, max_steps=steps,
                             policy_id=str(policy_dir), progress=False)
    lo, hi = report.ci95
    return {"successes": report.successes, "episodes": report.episodes, "success_rate": report.success_rate,
            "ci95": [lo, hi], "mean_max_dense_reward": report.mean_max_dense_reward, "eval_s": report.elapsed_s}


def ppo_arm(env_id: str, arm: str, bc: Path, backend: Path, work: Path, args: argparse.Namespace) -> dict:
    from common.config import load_config
    from app.ppo import PPOConfig, train_ppo

    lite_config, steps = TASKS[env_id]
    config_path = ROOT / (lite_config if arm == "lite" else "configs/ppo/pickcube_oracle.yaml")
    out = work / f"ppo_{arm}"
    overrides = [f"output_dir={out}", f"policy.checkpoint={bc}", f"env.sim.env_id={env_id}",
                 f"env.episode_steps={steps}", f"env.num_envs={args.num_envs}", f"env.backend={args.backend}",
                 f"iterations={args.env_steps // (args.num_envs * steps)}", "progress=false", "resume=false",
                 "checkpoint_every=1000", f"num_threads={args.threads}", *args.set]
    if arm == "lite":
        overrides.append(f"reward.backend={backend}")
    config = load_config(config_path, PPOConfig, overrides)
    started = time.perf_counter()
    result = train_ppo(config)
    train_s = time.perf_counter() - started
    rows = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    out_row = {"train_s": round(train_s, 1), "env_steps": result.env_steps, "iterations": result.iterations,
               "rollout_env_steps_per_s": sum(r["env_steps_per_s"] * r["rollout_s"] for r in rows)
               / max(sum(r["rollout_s"] for r in rows), 1e-9),
               "train_success_first_last": [rows[0]["success_rate"], rows[-1]["success_rate"]]}
    if arm == "lite":
        keys = ("progress/pearson_global", "progress/roc_auc", "progress/pairwise_accuracy",
                "progress/pearson_per_trajectory")
        out_row["agreement_mean"] = {k: _nanmean([r.get(k) for r in rows]) for k in keys}
        out_row["backend_failures"] = rows[-1]["backend_failures"]
    return {**out_row, **evaluate(result.policy, env_id, args, steps)}


def _nanmean(values: list) -> float | None:
    import numpy as np

    kept = [v for v in values if v is not None]
    return float(np.mean(kept)) if kept else None


def render_cost(env_id: str, bc: Path, backend: Path, args: argparse.Namespace) -> dict:
    """env-steps/s of one rollout: render at query steps only vs every env every step (same K = 10 queries)."""
    import torch

    from common.config import load_config
    from app.ppo import PPOConfig
    from app.ppo.loop import collect_rollout, make_agent, make_reward_model
    from app.ppo.rewards import StepReward
    from sim.vector_env import make_vec_sim

    lite_config, steps = TASKS[env_id]
    config = load_config(ROOT / lite_config, PPOConfig, [
        f"policy.checkpoint={bc}", f"reward.backend={backend}", f"env.num_envs={args.num_envs}",
        f"env.backend={args.backend}", f"env.episode_steps={steps}"])
    sim = make_vec_sim(config.env.sim, config.env.num_envs, config.env.backend)
    try:
        agent = make_agent(config, sim, torch.device("cpu"))
        model = make_reward_model(config)
        out = {}
        for mode in ("query_steps_only", "every_step"):
            reward = StepReward.make(config.reward, sim.num_envs, sim.task, model)
            target = sim if mode == "query_steps_only" else _RenderEveryStep(sim)
            seeds = [900_000 + i for i in range(sim.num_envs)]
            collect_rollout(agent, target, reward, seeds=seeds, episode_steps=10, gamma=0.99,
                            reward_camera=CAMERA, device=torch.device("cpu"))  # warm-up (shader compile)
            torch.manual_seed(0)
            rollout = collect_rollout(agent, target, reward, seeds=seeds, episode_steps=steps, gamma=0.99,
                                      reward_camera=CAMERA, device=torch.device("cpu"))
            out[mode] = {"env_steps": rollout.env_steps, "seconds": round(rollout.seconds, 2),
                         "env_steps_per_s": rollout.env_steps / rollout.seconds}
        out["speedup"] = out["query_steps_only"]["env_steps_per_s"] / out["every_step"]["env_steps_per_s"]
        return out
    finally:
        sim.close()


class _RenderEveryStep:
    """The same envs, but every env renders its cameras after every step, as an rgb observation mode would."""

    def __init__(self, sim) -> None:
        self.sim = sim
        self._frames: dict = {}

    def __getattr__(self, name):
        return getattr(self.sim, name)

    def step(self, actions):
        result = self.sim.step(actions)
        self._frames = self.sim.capture(list(range(self.sim.num_envs)))
        return result

    def capture(self, indices):
        return {i: self._frames[i] for i in indices}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tasks", nargs="+", default=list(TASKS), choices=list(TASKS))
    parser.add_argument("--work", type=Path, default=ROOT / "outputs/bench/ppo_reward")
    parser.add_argument("--demos", type=int, default=12, help="motion-planning demos with a camera, per task")
    parser.add_argument("--bc-checkpoint", nargs="*", default=[], metavar="ENV=DIR",
                        help="use this BC checkpoint for ENV instead of training one on the demos")
    parser.add_argument("--bc-steps", type=int, default=3000)
    parser.add_argument("--failure-rollouts", type=int, default=15)
    parser.add_argument("--lite-steps", type=int, default=800)
    parser.add_argument("--env-steps", type=int, default=15_360, help="PPO env steps per arm")
    parser.add_argument("--num-envs", type=int, default=8)
    parser.add_argument("--backend", default="cpu_sync", help="cpu (AsyncVectorEnv workers), cpu_sync or gpu")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--episodes", type=int, default=100, help="evaluation episodes per arm")
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="override a PPO config key")
    parser.add_argument("--skip-render-cost", action="store_true")
    parser.add_argument("--out", type=Path, help="write the results as JSON")
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)
    import torch

    torch.set_num_threads(args.threads)
    started = time.perf_counter()
    results: dict = {"benchmark": "ppo_reward", "machine": platform.platform(), "cpus": os.cpu_count(),
                     "load_at_start": _load(), "args": {k: str(v) for k, v in vars(args).items()}, "tasks": {}}
    for env_id in args.tasks:
        work = args.work / env_id
        work.mkdir(parents=True, exist_ok=True)
        bc, backend = prepare(env_id, work, args)
        steps = TASKS[env_id][1]
        row: dict = {"a_bc": evaluate(bc, env_id, args, steps)}
        print(f"[{env_id}] (a) BC: {row['a_bc']['successes']}/{args.episodes}  load {_load()}", flush=True)
        for arm, key in (("lite", "b_ppo_lite"), ("oracle", "c_ppo_oracle")):
            row[key] = ppo_arm(env_id, arm, bc, backend, work, args)
            print(f"[{env_id}] ({key[0]}) PPO {arm}: {row[key]['successes']}/{args.episodes} after "
                  f"{row[key]['env_steps']} env steps, {row[key]['train_s']} s  load {_load()}", flush=True)
        a, b, c = (row[k]["success_rate"] for k in ("a_bc", "b_ppo_lite", "c_ppo_oracle"))
        row["recovered_fraction"] = None if c == a else (b - a) / (c - a)
        if not args.skip_render_cost and env_id == args.tasks[-1]:
            row["render_cost"] = render_cost(env_id, bc, backend, args)
            print(f"[{env_id}] render cost: {row['render_cost']}", flush=True)
        results["tasks"][env_id] = row
        if args.out:
            args.out.parent.mkdir(parents=True, exist_ok=True)
            args.out.write_text(json.dumps(results, indent=2) + "\n")
    results["load_at_end"] = _load()
    results["total_s"] = round(time.perf_counter() - started, 1)
    text = json.dumps(results, indent=2)
    print(text)
    if args.out:
        args.out.write_text(text + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
