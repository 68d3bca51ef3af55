"""Benchmark: does PPO improve a cloned policy, and how much of that does the compact reward model recover? (issue 15)

For each task, on this machine:

1. prepare (cached under --work, skipped when present):
   - motion-planning demos with the privileged state and a 64x64 camera (seeds 0..);
   - the episode length from the demos (`sim.demos.horizon_from_demos`: long enough for a cloned
     policy to finish what the planner did);
   - behaviour cloning of the small actor-critic on the first --bc-demos demos (few demos leave
     room for PPO to improve);
   - BC rollouts with the camera on seeds 5000.. (mostly failures), and the compact reward model
     (`lite`) trained on demos + rollouts. Never on the evaluation seeds (10000..).
2. three arms from the same BC checkpoint, with the same env seeds (100000..), the same number of
   env steps and the same hyper-parameters (configs/ppo/<task>_lite.yaml; the oracle arm is the same
   file with reward.source=env):
   (a) no further training;
   (b) PPO with a reward model through interval-hold: with --judge, the completion judge of an
       `lrm-robot improve` run (its `judge/` folder: the fold ensemble trained on demos and
       oracle-labelled, noise-explored calibration episodes; never on evaluation seeds) for that run's
       own task, as configs/ppo/pushcube_judge.yaml says (P(done) every K = 26 steps), the camera at the
       judge run's resolution; for any other task (and without --judge), the lite progress model
       trained here (K from the task's config, 10, unless --set reward.hold.every=K);
   (c) PPO with the simulator's normalised dense reward (the privileged upper bound);
   each evaluated by the oracle success flag over --episodes episodes on seeds 10000.. (mean actions),
   with Wilson 95% intervals; recovered = (b - a) / (c - a).
   Each PPO arm runs ITERATIONS[task] iterations (what fits 30 minutes an arm on a 2-core machine)
   unless --iterations. Its learning curves (metrics.jsonl, learning_curve.png) are copied next to --out.
   A finished arm is cached in WORK/TASK/arm_X.json: rerunning the same command continues. Arms run as
   separate invocations (one --arms each, on a free core) are put together by the full command with
   --cached-only, which runs nothing and writes null for an arm not in the cache.

The run reported in README.md and benchmarks/results/ppo_reward.json (the main job's judge as PushCube's
arm (b): run `lrm-robot improve --config configs/improve/pushcube_cpu.yaml` first, or point --judge at
any PushCube improve run's judge/; PickCube's arm (b) is the lite progress model, queried as often):
    .venv/bin/python benchmarks/ppo_reward.py --tasks PushCube-v1 PickCube-v1 --arms a b c \\
        --judge outputs/improve-pushcube-cpu/judge --set reward.hold.every=26 --out benchmarks/results/ppo_reward.json
The lite progress model as PushCube's arm (b) did not recover the oracle's gain
(benchmarks/results/ppo_reward_lite_progress_prerebuild.json).

On a GPU machine (prepared, for the `device` tool; the preparation still runs on the CPU), the
same arms with ManiSkill's GPU simulation and many envs; the learner stays the same:
    .venv/bin/python benchmarks/ppo_reward.py --tasks PushCube-v1 PickCube-v1 --arms a c b --iterations 30 \\
        --set env.backend=gpu --set env.num_envs=1024 --set device=cuda --work outputs/bench/ppo_reward_gpu \\
        --out outputs/bench/ppo_reward_gpu.json
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import platform
import shlex
import shutil
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.machine import cpu_model  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
CAMERA = "base_camera"
TASKS = {"PushCube-v1": "configs/ppo/pushcube_lite.yaml", "PickCube-v1": "configs/ppo/pickcube_lite.yaml"}
# PPO iterations per arm where --iterations is not given: what fit the 30-minute bar per arm on a 2-core
# machine with the 64 envs in one process (PickCube's steps cost more than PushCube's, and its episodes are
# longer); over 2 worker processes they take 11-19 min, and are kept so that earlier results still compare
ITERATIONS = {"PushCube-v1": 30, "PickCube-v1": 20}
ARMS = {"a": "a_bc", "b": "b_ppo_lite", "c": "c_ppo_oracle"}
JUDGE_ARM = "b_ppo_judge"  # arm (b) with --judge, from the task's judge config
JUDGE_TASKS = {"PushCube-v1": "configs/ppo/pushcube_judge.yaml"}
EVAL_SEED = 10_000
ROLLOUT_SEED = 5_000


def _load() -> str:
    return " ".join(f"{x:.2f}" for x in os.getloadavg())


def _ppo_config(path: str, overrides: list[str]):
    from app.ppo import PPOConfig
    from common.config import load_config

    return load_config(ROOT / path, PPOConfig, overrides)


def prepare(env_id: str, work: Path, args: argparse.Namespace) -> dict:
    """The BC checkpoint, the lite backend YAML and the horizon for `env_id`, built once under `work`."""
    from app.evaluate import evaluate_in_sim
    from common.config import load_config
    from lrm.backends.lite_config import LiteTrainConfig
    from lrm.training.lite_runs import LiteTrainRun, run_lite
    from policies.actor_critic.bc_train import BCTrainConfig, train_bc
    from policies.factory import load_policy
    from recordings.store import EpisodeStore
    from sim.demos import horizon_from_demos, record_demos
    from sim.maniskill_env import SimEnvConfig

    camera_env = SimEnvConfig(env_id=env_id, state_mode="full", cameras=[CAMERA], camera_width=64, camera_height=64)
    store = work / "store"
    if not store.exists():
        report = record_demos(env_id, args.demos, store, seed=0, env_config=camera_env, progress=False)
        print(f"[{env_id}] {report.summary()}", flush=True)
    bc_checkpoint = work / "bc" / "checkpoints/last"
    if not (bc_checkpoint / "model.safetensors").is_file():
        config = load_config(ROOT / "configs/policies/bc_pickcube.yaml", BCTrainConfig, [
            f"store={store}", f"output_dir={work / 'bc'}", "select=[{source: [demo]}]", "progress=false",
            f"max_episodes={args.bc_demos}", f"steps={args.bc_steps}"])
        print(f"[{env_id}] BC on {args.bc_demos} demos: {train_bc(config).summary()}", flush=True)
    policy = load_policy(bc_checkpoint)
    with EpisodeStore.open(store, mode="r") as s:
        lengths = [r.length for r in s.episodes(source="demo")]
        rollouts = len(s.episodes(source="sim"))
    horizon = horizon_from_demos(lengths, policy.config.executed_steps)
    if rollouts == 0:
        report = evaluate_in_sim(policy, camera_env, args.failure_rollouts, seed=ROLLOUT_SEED, max_steps=horizon,
                                 policy_id="bc", record_to=store, progress=False)
        print(f"[{env_id}] BC rollouts for the reward model (seeds {ROLLOUT_SEED}..): {report.summary()}", flush=True)
    lite = work / "lite"
    if not (lite / "backend.yaml").is_file():
        started = time.perf_counter()
        report = run_lite(LiteTrainRun(store=str(store), output_dir=str(lite),
                                       train=LiteTrainConfig(steps=args.lite_steps, log_every=100)))
        print(f"[{env_id}] lite reward model: {time.perf_counter() - started:.0f} s, held-out "
              f"{report['history'].get('val')}", flush=True)
    return {"bc": bc_checkpoint, "backend": lite / "backend.yaml", "horizon": horizon,
            "demo_lengths": [min(lengths), max(lengths)], "demos": len(lengths), "bc_demos": args.bc_demos}


def evaluate(policy_dir: Path, env_id: str, horizon: int, episodes: int) -> dict:
    from app.evaluate import evaluate_in_sim
    from policies.factory import load_policy
    from sim.maniskill_env import SimEnvConfig

    env = SimEnvConfig(env_id=env_id, state_mode="full", cameras=[])
    report = evaluate_in_sim(load_policy(policy_dir), env, episodes, seed=EVAL_SEED, max_steps=horizon,
                             policy_id=str(policy_dir), progress=False)
    lo, hi = report.ci95
    return {"successes": report.successes, "episodes": report.episodes, "success_rate": report.success_rate,
            "ci95": [lo, hi], "eval_seeds": [EVAL_SEED, EVAL_SEED + episodes - 1], "eval_s": round(report.elapsed_s, 1)}


def _stem(arm: str, name: str) -> str:
    """What an arm's cache file and run folder are named after: its letter, or its variant's name (b_ppo_judge)."""
    return arm if name == ARMS[arm] else name


def _run_dir(work: Path, arm: str, name: str) -> Path:
    return work / f"ppo_{_stem(arm, name)}"


def ppo_arm(env_id: str, arm: str, prepared: dict, work: Path, args: argparse.Namespace) -> dict:
    from app.ppo import train_ppo

    name = _arm_name(arm, args, env_id)
    out = _run_dir(work, arm, name)
    overrides = [f"output_dir={out}", f"policy.checkpoint={prepared['bc']}", f"env.episode_steps={prepared['horizon']}",
                 f"iterations={args.iterations or ITERATIONS[env_id]}", "progress=false", f"num_threads={args.threads}"]
    if arm == "c":
        overrides.append("reward.source=env")
    elif name == JUDGE_ARM:
        overrides += _judge_overrides(work, args)
    else:
        overrides.append(f"reward.backend={prepared['backend']}")
    overrides += args.set
    config = _ppo_config(JUDGE_TASKS[env_id] if name == JUDGE_ARM else TASKS[env_id], overrides)
    started = time.perf_counter()
    result = train_ppo(config)  # resumes a killed arm from its last checkpoint
    train_s = time.perf_counter() - started
    rows = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    row = {"train_s": round(train_s, 1), "env_steps": result.env_steps, "iterations": result.iterations,
           "num_envs": config.env.num_envs, "episode_steps": config.env.episode_steps,
           "train_success_first_last": [rows[0]["success_rate"], rows[-1]["success_rate"]],
           "explained_variance_last": rows[-1].get("explained_variance_before")}
    if arm == "b":
        modality = "completion" if name == JUDGE_ARM else "progress"
        keys = [f"{modality}/{k}" for k in ("pearson_global", "roc_auc", "pairwise_accuracy", "pearson_per_trajectory")]
        row["agreement_with_oracle_mean"] = {k: _nanmean([r.get(k) for r in rows]) for k in keys}
        if name == JUDGE_ARM:
            row["judge"] = str(args.judge)
    return {**row, **evaluate(result.policy, env_id, prepared["horizon"], args.episodes)}


def _arm_name(arm: str, args: argparse.Namespace, env_id: str) -> str:
    """--judge rewards arm (b) of its own run's task only; another task's arm (b) is the lite progress model."""
    return JUDGE_ARM if arm == "b" and args.judge and env_id == args.judge_task else ARMS[arm]


def read_judge(folder: Path) -> tuple[str, tuple[int, int]]:
    """The task and camera size (H, W) of the improve run whose judge/ is `folder`; ValueError names what is wrong."""
    from recordings.store import EpisodeStore

    if not (folder / "folds.json").is_file() and not (folder / "config.json").is_file():
        raise ValueError(f"--judge {folder}: not a judge folder (no folds.json or config.json)")
    report = folder.parent / "report.json"
    try:
        env_id = json.loads(report.read_text())["env"]
    except (OSError, ValueError, KeyError, TypeError) as e:
        raise ValueError(f"--judge {folder}: cannot read its run's task from {report} ({e})") from None
    if env_id not in JUDGE_TASKS:
        raise ValueError(f"--judge {folder}: its run is on {env_id}; judge PPO configs exist for "
                         f"{', '.join(JUDGE_TASKS)}")
    with EpisodeStore.open(folder.parent / "store", mode="r") as store:
        if CAMERA not in store.cameras:
            raise ValueError(f"--judge {folder}: its run's store has no {CAMERA} camera")
        return env_id, store.cameras[CAMERA]


def _judge_overrides(work: Path, args: argparse.Namespace) -> list[str]:
    """Arm (b)'s reward backend: the completion judge in --judge, at the resolution its run rendered."""
    folder = args.judge.resolve()
    height, width = args.judge_camera
    backend = work / "judge_backend.yaml"
    backend.write_text(f"# arm (b) with --judge: the completion judge of {folder.parent}\n"
                       f"type: lite\nlite:\n  checkpoint: {folder}\n  device: cpu\n")
    return [f"reward.backend={backend}", f"env.sim.camera_width={width}", f"env.sim.camera_height={height}"]


def _copy_curves(run: Path, stem: str, curves: Path) -> str:
    """An arm's metrics.jsonl and learning_curve.png as curves/STEM.*, also for an arm read from the cache."""
    curves.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(run / "metrics.jsonl", curves / f"{stem}.jsonl")
    if (run / "learning_curve.png").is_file():
        shutil.copyfile(run / "learning_curve.png", curves / f"{stem}.png")
    return str((curves / stem).relative_to(ROOT)) if curves.is_relative_to(ROOT) else str(curves / stem)


def _nanmean(values: list) -> float | None:
    kept = [v for v in values if v is not None]
    return sum(kept) / len(kept) if kept else None


def run_task(env_id: str, args: argparse.Namespace, curves: Path) -> dict:
    work = args.work / env_id
    work.mkdir(parents=True, exist_ok=True)
    prepared = prepare(env_id, work, args)
    row: dict = {"setup": {k: (str(v) if isinstance(v, Path) else v) for k, v in prepared.items()}}
    names = {arm: _arm_name(arm, args, env_id) for arm in args.arms}
    if "b" in names:
        row["arm_b_reward"] = (f"completion judge {args.judge}" if names["b"] == JUDGE_ARM
                               else "lite progress model trained here")
    for arm in args.arms:
        name = names[arm]
        cached = work / f"arm_{_stem(arm, name)}.json"
        if cached.is_file():
            row[name] = json.loads(cached.read_text())
        elif args.cached_only:
            row[name] = None  # not run: the result says so rather than leaving the arm out
            print(f"[{env_id}] ({arm}) {name}: not in the cache, not run (--cached-only)", flush=True)
            continue
        else:
            started = time.perf_counter()
            if arm == "a":
                row[name] = evaluate(prepared["bc"], env_id, prepared["horizon"], args.episodes)
            else:
                row[name] = ppo_arm(env_id, arm, prepared, work, args)
            row[name]["wall_s"] = round(time.perf_counter() - started, 1)
            row[name]["load_after"] = _load()
            cached.write_text(json.dumps(row[name], indent=2) + "\n")
        if arm != "a":
            stem = f"{env_id.split('-')[0].lower()}_{name}"
            row[name]["curves"] = _copy_curves(_run_dir(work, arm, name), stem, curves)
        r = row[name]
        print(f"[{env_id}] ({arm}) {name}: {r['successes']}/{r['episodes']} "
              f"[{r['ci95'][0]:.3f}, {r['ci95'][1]:.3f}]  wall {r['wall_s']} s  load after {r['load_after']}",
              flush=True)
    if all(arm in names and row[names[arm]] is not None for arm in "abc"):
        a, b, c = (row[names[k]] for k in "abc")
        row["oracle_gain_points"] = round(100 * (c["success_rate"] - a["success_rate"]), 1)
        row["oracle_gain_separated"] = c["ci95"][0] > a["ci95"][1]  # non-overlapping 95% intervals
        gain = c["success_rate"] - a["success_rate"]
        row["recovered_fraction"] = None if gain == 0 else (b["success_rate"] - a["success_rate"]) / gain
        row["bars"] = {  # issue 15's, for this task
            "oracle_gain_at_least_15_points_intervals_apart": row["oracle_gain_points"] >= 15
            and row["oracle_gain_separated"],
            "recovered_at_least_0.4": row["recovered_fraction"] is not None and row["recovered_fraction"] >= 0.4,
            "every_arm_at_most_30_min": all(x["wall_s"] <= 1800 for x in (a, b, c)),
        }
    return row


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tasks", nargs="+", default=["PushCube-v1"], choices=list(TASKS))
    parser.add_argument("--arms", nargs="+", default=["a", "c", "b"], choices=list(ARMS))
    parser.add_argument("--work", type=Path, default=ROOT / "outputs/bench/ppo_reward")
    parser.add_argument("--demos", type=int, default=20, help="motion-planning demos with a camera, per task")
    parser.add_argument("--bc-demos", type=int, default=6, help="the first N demos the cloned policy learns from")
    parser.add_argument("--bc-steps", type=int, default=3000)
    parser.add_argument("--failure-rollouts", type=int, default=20, help="BC rollouts for the reward model")
    parser.add_argument("--lite-steps", type=int, default=800)
    parser.add_argument("--judge", type=Path,
                        help="an improve run's judge/ folder: the completion judge rewards arm (b) of that run's task")
    parser.add_argument("--iterations", type=int, help="PPO iterations per arm (the config's envs each); default: "
                        + ", ".join(f"{t} {n}" for t, n in ITERATIONS.items()))
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--episodes", type=int, default=200, help="evaluation episodes per arm")
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="override a PPO config key")
    parser.add_argument("--cached-only", action="store_true",
                        help="report the arms earlier invocations cached under --work; run none (null for the rest)")
    parser.add_argument("--out", type=Path, help="write the results as JSON; curves go to OUT's folder")
    args = parser.parse_args()
    args.judge_task = args.judge_camera = None
    if args.judge:
        try:
            args.judge_task, args.judge_camera = read_judge(args.judge.resolve())
        except ValueError as e:
            print(f"ppo_reward.py: {e}", file=sys.stderr)
            return 2
    logging.basicConfig(level=logging.WARNING)
    import torch

    torch.set_num_threads(args.threads)
    started = time.perf_counter()
    results: dict = {"benchmark": "ppo_reward", "command": shlex.join([".venv/bin/python", *sys.argv]),
                     "machine": platform.platform(), "cpu_model": cpu_model(), "cpus": os.cpu_count(),
                     "load_at_start": _load(), "tasks": {}}
    curves = (args.out.parent if args.out else args.work) / "ppo_reward_curves"
    for env_id in args.tasks:
        results["tasks"][env_id] = run_task(env_id, args, curves)
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
