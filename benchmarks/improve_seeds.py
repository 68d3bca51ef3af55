"""Benchmark: the main command's improve config over several run seeds, the judge's arm and the oracle's.

Why: issue 16's bars are about the method, not one lucky run. For each run seed
this runs `lrm-robot improve --config CONFIG --seed S` with the judge selecting
(the command as shipped) and again with `selection.rollouts=oracle` (a perfect
filter: the ablation), every round evaluated on the same `--eval-episodes`
fresh seeds, and reports per seed, arm and round:
- oracle success with its 95% Wilson interval, the change from the base policy
  and the exact McNemar p against the base on the same seeds;
- the judge's precision and recall on the round's rollouts (against the
  oracle), and on the held-out calibration episodes before the round (what the
  precision floor read), with the threshold the round used;
- the wall time of every phase;
then the bars: round-1 gain >= +10 points with p < 0.05 and no later round
below round 1 (judge arm), the oracle arm's gain over the rounds >= +15 points,
and the judge arm recovering >= 80% of it. Writes OUT/benchmark.json, OUT/curves.png
(every seed's success per round, base as a line) and, with --result, the summary
JSON committed under benchmarks/results/ with the command line that produced it.

Runs are subprocesses (`--jobs` at a time; each uses one torch thread), each a
resumable run directory under OUT: run the same command again to finish.

Example (the result committed as benchmarks/results/improve_pushcube_seeds.json):
    .venv/bin/python benchmarks/improve_seeds.py --config configs/improve/pushcube_cpu.yaml \
        --seeds 0 1 2 --eval-episodes 200 --out outputs/bench/improve_seeds \
        --result benchmarks/results/improve_pushcube_seeds.json
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shlex
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
ARMS = {"judge": [], "oracle": ["selection.rollouts=oracle"]}


def _command(args: argparse.Namespace, seed: int, arm: str) -> list[str]:
    sets = [f"eval.episodes={args.eval_episodes}", *ARMS[arm], *args.set]
    return [str(Path(sys.executable).with_name("lrm-robot")), "improve", "--config", str(args.config), "--seed", str(seed),
            "--output-dir", str(args.out / f"seed{seed}-{arm}"), "--no-progress",
            *[x for s in sets for x in ("--set", s)]]


def _run(args: argparse.Namespace, seed: int, arm: str) -> dict:
    cmd = _command(args, seed, arm)
    log = args.out / f"seed{seed}-{arm}.log"
    log.parent.mkdir(parents=True, exist_ok=True)
    load_before = os.getloadavg()[0]
    started = time.perf_counter()
    with log.open("a") as fh:
        rc = subprocess.run(cmd, cwd=ROOT, stdout=fh, stderr=subprocess.STDOUT, env={**os.environ, "PYTHONPATH": str(ROOT)}).returncode
    wall = time.perf_counter() - started
    if rc != 0:
        raise SystemExit(f"seed {seed} {arm}: exit {rc}; see {log}")
    report = json.loads((args.out / f"seed{seed}-{arm}" / "report.json").read_text())
    return {"seed": seed, "arm": arm, "command": shlex.join(["lrm-robot", *cmd[1:]]),
            "wall_s": round(wall, 1), "load_before": round(load_before, 2), "load_after": round(os.getloadavg()[0], 2),
            "report": report}


def _rounds(report: dict) -> list[dict]:
    """Per round: success, interval, change and p against the base; the judge's numbers on that round's rollouts."""
    rows = []
    for e in report["rounds"]:
        ev = e.get("eval")
        if not ev:
            continue
        flt = (e.get("rollouts") or {}).get("lrm_filter") or {}
        check = e.get("judge_check") or {}
        rows.append({
            "round": e["round"], "successes": ev["successes"], "episodes": ev["episodes"],
            "success_rate": ev["success_rate"], "ci95": ev["ci95"],
            "change_from_base": ev.get("change_from_base", 0.0),
            "p_vs_base": (ev.get("vs_base") or {}).get("p_value"),
            "carried_forward": (ev.get("carry") or {}).get("carried_forward", True),
            "judge_on_rollouts": {k: flt.get(k) for k in ("precision", "recall", "tp", "fp", "fn", "tn")} if flt else None,
            "judge_on_held_out_calibration": ({k: check.get(k) for k in ("episodes", "successes", "precision", "recall",
                                                                          "threshold", "action")} if check else None),
        })
    return rows


def _bars(judge: list[dict], oracle: list[dict]) -> dict:
    def gain(rows: list[dict]) -> float:
        return rows[-1]["success_rate"] - rows[0]["success_rate"]

    first = next(r for r in judge if r["round"] == 1)
    later = [r for r in judge if r["round"] > 1]
    g_judge, g_oracle = gain(judge), gain(oracle)
    return {
        "round1_gain": first["change_from_base"], "round1_p": first["p_vs_base"],
        "round1_meets": first["change_from_base"] >= 0.10 and (first["p_vs_base"] or 1.0) < 0.05,
        "no_later_round_below_round1": all(r["success_rate"] >= first["success_rate"] for r in later),
        "oracle_gain": g_oracle, "oracle_meets": g_oracle >= 0.15,
        "judge_gain": g_judge, "recovered": g_judge / g_oracle if g_oracle > 0 else None,
        "recovers_80pct": g_oracle > 0 and g_judge >= 0.8 * g_oracle,
    }


def _plot(results: list[dict], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6.4, 4.2))
    colors = {}
    for res in results:
        rows = _rounds(res["report"])
        x = [r["round"] for r in rows]
        y = [100 * r["success_rate"] for r in rows]
        color = colors.setdefault(res["seed"], f"C{len(colors)}")
        style = "-o" if res["arm"] == "judge" else ":s"
        ax.plot(x, y, style, color=color, label=f"seed {res['seed']}, {res['arm']} filter")
        if res["arm"] == "judge":
            ax.axhline(y[0], color=color, lw=0.8, alpha=0.5)  # the base policy of this seed
    ax.set_xlabel("round")
    ax.set_ylabel("oracle success (%)")
    ax.set_ylim(0, 100)
    ax.set_xticks(sorted({r["round"] for res in results for r in _rounds(res["report"])}))
    ax.legend(fontsize=7, ncol=2)
    ax.set_title("improve: success per round (thin lines: each seed's base)")
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", type=Path, default=ROOT / "configs/improve/pushcube_cpu.yaml")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--eval-episodes", type=int, default=200)
    parser.add_argument("--arms", nargs="+", default=list(ARMS), choices=list(ARMS))
    parser.add_argument("--jobs", type=int, default=2)
    parser.add_argument("--out", type=Path, default=ROOT / "outputs/bench/improve_seeds")
    parser.add_argument("--result", type=Path, help="also write the summary here (benchmarks/results/...)")
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="passed to every run")
    args = parser.parse_args()
    args.out = args.out.resolve()

    started = time.perf_counter()
    jobs = [(s, a) for s in args.seeds for a in args.arms]
    with ThreadPoolExecutor(args.jobs) as pool:
        results = list(pool.map(lambda job: _run(args, *job), jobs))
    summary = {"command": shlex.join([Path(sys.executable).name, *sys.argv]),
               "machine": {"cpus": os.cpu_count(), "platform": platform.platform(), "python": platform.python_version(),
                           "jobs_in_parallel": args.jobs},
               "wall_s_total": round(time.perf_counter() - started, 1), "runs": []}
    for res in results:
        summary["runs"].append({k: res[k] for k in ("seed", "arm", "command", "wall_s", "load_before", "load_after")}
                               | {"phases_s": res["report"]["phases"], "rounds": _rounds(res["report"])})
    by = {(r["seed"], r["arm"]): r["rounds"] for r in summary["runs"]}
    summary["bars"] = {str(s): _bars(by[(s, "judge")], by[(s, "oracle")]) for s in args.seeds
                       if (s, "judge") in by and (s, "oracle") in by}
    for s, bars in summary["bars"].items():
        print(f"seed {s}: round 1 {100 * bars['round1_gain']:+.1f} (p {bars['round1_p']:.3g}), "
              f"judge over the rounds {100 * bars['judge_gain']:+.1f}, oracle {100 * bars['oracle_gain']:+.1f}, "
              f"recovered {bars['recovered'] if bars['recovered'] is None else round(bars['recovered'], 2)}")
    for run in summary["runs"]:
        line = " -> ".join(f"{r['successes']}/{r['episodes']}" for r in run["rounds"])
        print(f"seed {run['seed']} {run['arm']:6s}: {line}   ({run['wall_s'] / 60:.1f} min)")
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "benchmark.json").write_text(json.dumps({**summary, "reports": [r["report"] for r in results]},
                                                        indent=2, default=str) + "\n")
    _plot(results, args.out / "curves.png")
    if args.result:
        args.result.parent.mkdir(parents=True, exist_ok=True)
        args.result.write_text(json.dumps(summary, indent=2, default=str) + "\n")
        print(f"wrote {args.result}")
    print(f"wrote {args.out / 'benchmark.json'} and {args.out / 'curves.png'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
