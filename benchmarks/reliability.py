"""Benchmark: reliability, counted (issue 18, item 7): random SIGKILLs, the store damage matrix, bad inputs.

1. Kills. For `demos`, `improve` and `ppo` in turn, the real CLI (`python -m app.cli`) on the tiny
   configs of the tests (tests/app/test_cli.py, test_improve_rounds.py, test_ppo_loop.py) is
   SIGKILLed (its whole process group) after a random delay drawn from `--seed`, between 5 % and
   95 % of an uninterrupted reference run's time. The same command is then run again to the end,
   and the result compared with the reference: the resumed run must exit 0 ("survived"), hold no
   fewer episodes (lost) and none twice (duplicates: the same seed, round and source recorded
   twice; for ppo, an iteration logged twice or missing and the final weights bit for bit), and
   its store must open and verify clean.
2. The store damage matrix of benchmarks/store_damage.py (imported, no export).
3. Bad inputs: every case of tests/support/bad_inputs.py (broken config files for every command,
   values out of range, argparse errors, unwritable outputs), run in-process through `app.cli.main`:
   handled cleanly means exit code 2 and exactly one line on stderr, `lrm-robot ...: error`, with
   the expected text and no traceback.

Example:
    .venv/bin/python benchmarks/reliability.py --kills 6 --seed 0 --out benchmarks/results/reliability.json
"""

from __future__ import annotations

import argparse
import collections
import contextlib
import io
import json
import logging
import os
import random
import shlex
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import yaml  # noqa: E402

from recordings.store import EpisodeStore  # noqa: E402

COMMANDS = ("demos", "improve", "ppo")


# ---------------------------------------------------------------------------------------------- kills
def demos_argv(out: Path) -> list[str]:
    """tests/app/test_cli.py's demos run, three demonstrations."""
    return ["demos", "--config", str(ROOT / "configs/demos_pickcube.yaml"), "-n", "3", "--output-dir", str(out),
            "--camera-size", "32x32"]


def improve_argv(out: Path) -> list[str]:
    """tests/app/test_improve_rounds.py's TINY run: 3 demos, 2 calibration rollouts, 2 rounds of 3 rollouts."""
    from tests.app.test_improve_rounds import TINY

    config = out.with_suffix(".yaml")
    if not config.exists():
        config.write_text(yaml.safe_dump({**TINY, "output_dir": str(out)}))
    return ["improve", "--config", str(config)]


def ppo_argv(out: Path, checkpoint: Path) -> list[str]:
    """tests/app/test_ppo_loop.py's resumed run: 4 iterations of 2 envs x 8 steps, a checkpoint each."""
    from tests.app.test_ppo_loop import _command

    return _command(checkpoint, out, 4)


def ppo_checkpoint(workdir: Path) -> Path:
    """The tiny BC checkpoint of tests/app/test_ppo_loop.py (its `checkpoint` fixture)."""
    from tests.support.tiny_actor_critic import save_tiny_actor_critic

    return save_tiny_actor_critic(workdir / "bc_checkpoint")


def run_cli(argv: list[str], kill_after: float | None = None, timeout: float = 900) -> tuple[int, float, str]:
    """`python -m app.cli ARGV` in its own process group; SIGKILLed (the group) after `kill_after` seconds.

    (exit code, seconds, last stderr lines); the exit code is -9 when the kill landed."""
    env = {**os.environ, "PYTHONPATH": str(ROOT), "PYTHONWARNINGS": "ignore::DeprecationWarning"}
    t0 = time.monotonic()
    with tempfile.TemporaryFile() as err:
        proc = subprocess.Popen([sys.executable, "-m", "app.cli", *argv], cwd=ROOT, env=env, stdout=subprocess.DEVNULL,
                                stderr=err, start_new_session=True)
        try:
            proc.wait(timeout=kill_after if kill_after is not None else timeout)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)  # no cleanup anywhere: as a power cut or the OOM killer
            proc.wait()
        err.seek(0)
        tail = err.read().decode(errors="replace").strip().splitlines()[-3:]
    return proc.returncode, time.monotonic() - t0, "\n".join(tail)


def store_outcome(store_path: Path) -> dict:
    """What the store holds, as (source, round, seed) keys with their lengths; whether it opens and verifies clean."""
    try:
        with EpisodeStore.open(store_path, mode="r") as store:
            damaged = sorted(store.damaged)
            keys = [(r.meta.source, r.meta.round, r.meta.seed, r.length) for r in store.episodes()]
        return {"readable": True, "damaged": damaged, "keys": keys}
    except Exception as exc:  # counted: an unreadable store is what the benchmark looks for
        return {"readable": False, "damaged": [], "keys": [], "error": f"{type(exc).__name__}: {exc}"}


def ppo_outcome(out: Path) -> dict:
    from safetensors.torch import load_file

    rows = []
    metrics = out / "metrics.jsonl"
    if metrics.is_file():
        rows = [json.loads(line)["iteration"] for line in metrics.read_text().splitlines() if line.strip()]
    weights = out / "policy/model.safetensors"
    return {"iterations": rows, "weights": load_file(str(weights)) if weights.is_file() else None}


def compare(command: str, mine: dict, reference: dict) -> dict:
    """Episodes (or ppo iterations) lost and duplicated against the reference; the store readable."""
    if command == "ppo":
        import torch

        ref, got = reference["iterations"], mine["iterations"]
        counts = collections.Counter(got)
        same = (mine["weights"] is not None and mine["weights"].keys() == reference["weights"].keys()
                and all(torch.equal(mine["weights"][k], reference["weights"][k]) for k in mine["weights"]))
        return {"lost": len(set(ref) - set(got)), "duplicates": sum(n - 1 for n in counts.values() if n > 1),
                "extra": len(set(got) - set(ref)), "readable": True, "same_result": same}
    ref = collections.Counter(k[:3] for k in reference["keys"])
    got = collections.Counter(k[:3] for k in mine["keys"])
    return {"lost": sum((ref - got).values()), "duplicates": sum(n - 1 for n in got.values() if n > 1),
            "extra": len(set(got) - set(ref)),
            "readable": mine["readable"] and not mine["damaged"],
            "same_result": sorted(mine["keys"]) == sorted(reference["keys"])}


def outcome(command: str, out: Path) -> dict:
    return ppo_outcome(out) if command == "ppo" else store_outcome(out / "store" if command == "improve" else out)


def kill_benchmark(kills: int, rng: random.Random, workdir: Path) -> tuple[list[dict], dict]:
    checkpoint = ppo_checkpoint(workdir)
    argv = {"demos": demos_argv, "improve": improve_argv, "ppo": lambda out: ppo_argv(out, checkpoint)}
    references = {}
    for command in COMMANDS:
        out = workdir / f"{command}-reference"
        code, seconds, err = run_cli(argv[command](out))
        if code != 0:
            raise SystemExit(f"the uninterrupted {command} run failed (exit {code}): {err}")
        references[command] = {"seconds": seconds, "outcome": outcome(command, out)}
        print(f"reference {command}: {seconds:.1f} s", flush=True)
    results = []
    for i in range(kills):
        command = COMMANDS[i % len(COMMANDS)]
        reference = references[command]
        delay = rng.uniform(0.05, 0.95) * reference["seconds"]
        out = workdir / f"{command}-kill-{i}"
        killed_code, _, _ = run_cli(argv[command](out), kill_after=delay)
        resumed_code, resumed_s, err = run_cli(argv[command](out))
        row = {"kill": i, "command": command, "after_s": round(delay, 2), "landed": killed_code == -signal.SIGKILL,
               "resumed_exit": resumed_code, "survived": resumed_code == 0, "resume_s": round(resumed_s, 1),
               **compare(command, outcome(command, out), reference["outcome"])}
        if resumed_code != 0:
            row["error"] = err
        results.append(row)
        print(f"kill {i}: {command} after {delay:.1f} s: {'landed' if row['landed'] else 'run had ended'}, "
              f"resumed exit {resumed_code}, lost {row['lost']}, duplicates {row['duplicates']}, "
              f"same as uninterrupted: {row['same_result']}", flush=True)
    return results, {c: round(r["seconds"], 1) for c, r in references.items()}


# ---------------------------------------------------------------------------------------------- bad inputs
def bad_input_cases(workdir: Path) -> list[tuple[str, list[str], str]]:
    """(group, argv, expected text) for every case of tests/support/bad_inputs.py that needs no simulator."""
    from tests.support import bad_inputs as bad
    from tests.support.demo_store import demo_store

    store = demo_store(workdir / "small_store")
    cases = []
    for command in sorted(bad.COMMANDS):
        for kind, (content, expected) in sorted(bad.BROKEN_FILES.items()):
            config = workdir / f"broken-{command}-{kind}.yaml"
            config.write_bytes(content)
            expected = "is not UTF-8 text (byte 0 is 0x89)" if kind == "binary" else expected
            cases.append(("broken config file", bad.argv_for(command, config, workdir / "store"), expected))
    for command, config, key in bad.LEARNING_RATES:
        for value, expected in bad.LEARNING_RATE_VALUES:
            cases.append(("learning rate", [command, "--config", config, "--set", f"{key}={value}", "--set",
                                            f"output_dir={workdir / 'lr-out'}"], expected))
    cases += [("flag out of range", argv, expected) for argv, expected in bad.FLAG_CASES]
    cases += [("argparse", [str(store) if w == "STORE" else w for w in argv], "(see lrm-robot")
              for argv in bad.ARGPARSE_CASES]
    a_file = workdir / "a-file"
    a_file.write_text("not a folder\n")
    cases += [("output path", argv, expected) for argv, expected in bad.output_cases(store, a_file, workdir)]
    cases += [("export fps", ["store", "export", str(store), "--output-dir", str(workdir / "ds"), "--fps", value],
               "must be more than 0 and at most 1000") for value in bad.EXPORT_FPS_VALUES]
    return cases


def bad_input_benchmark(workdir: Path) -> tuple[list[dict], dict]:
    from app.cli import main as cli

    cases = bad_input_cases(workdir)
    rows = []
    here = os.getcwd()
    os.chdir(ROOT)  # the cases name shipped configs relative to the repository
    try:
        for group, argv, expected in cases:
            err, out = io.StringIO(), io.StringIO()
            with contextlib.redirect_stderr(err), contextlib.redirect_stdout(out):
                try:
                    code = cli(argv)
                except SystemExit as exc:  # argparse's own errors
                    code = exc.code
                except Exception as exc:  # noqa: BLE001 - a traceback is what the count is for
                    code = f"{type(exc).__name__}: {exc}"
            text = err.getvalue().strip()
            clean = (code == 2 and "\n" not in text and "Traceback" not in text and text.startswith("lrm-robot")
                     and expected in text)
            rows.append({"group": group, "argv": argv, "exit": code, "clean": clean,
                         **({} if clean else {"stderr": text[-500:]})})
    finally:
        os.chdir(here)
    groups: dict[str, list[int]] = {}
    for row in rows:
        tried_clean = groups.setdefault(row["group"], [0, 0])
        tried_clean[0] += 1
        tried_clean[1] += row["clean"]
    return rows, {group: {"tried": t, "handled_cleanly": c} for group, (t, c) in groups.items()}


# ---------------------------------------------------------------------------------------------- main
def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--kills", type=int, default=6, help="SIGKILLs in all, taking demos, improve and ppo in turn")
    p.add_argument("--seed", type=int, default=0, help="seed of the kill moments")
    p.add_argument("--out", default=None, help="write the results as JSON here")
    p.add_argument("--skip", nargs="*", default=[], choices=["kills", "damage", "bad-inputs"], help="parts to leave out")
    args = p.parse_args()
    t0 = time.perf_counter()
    rng = random.Random(args.seed)
    report: dict = {"benchmark": "reliability",
                    "command": shlex.join([".venv/bin/python", "benchmarks/reliability.py", *sys.argv[1:]]),
                    "kills": {}, "damage": {}, "bad_inputs": {}}
    with tempfile.TemporaryDirectory(prefix="reliability_") as tmp:
        workdir = Path(tmp)
        if "kills" not in args.skip:
            rows, reference_s = kill_benchmark(args.kills, rng, workdir / "kills")
            report["kills"] = {
                "reference_seconds": reference_s,
                "totals": {
                    "kills": len(rows), "landed": sum(r["landed"] for r in rows),
                    "survived": sum(r["survived"] for r in rows),
                    "episodes_lost": sum(r["lost"] for r in rows if r["command"] != "ppo"),
                    "duplicates": sum(r["duplicates"] for r in rows if r["command"] != "ppo"),
                    "ppo_iterations_lost": sum(r["lost"] for r in rows if r["command"] == "ppo"),
                    "ppo_iterations_duplicated": sum(r["duplicates"] for r in rows if r["command"] == "ppo"),
                    "stores_unreadable": sum(not r["readable"] for r in rows),
                    "same_as_uninterrupted": sum(r["same_result"] for r in rows),
                },
                "runs": rows,
            }
        if "damage" not in args.skip:
            sys.path.insert(0, str(ROOT / "benchmarks"))
            import store_damage
            from tests.support import store_damage as matrix

            logging.disable(logging.WARNING)
            cases = []
            for case in matrix.CASES:
                with tempfile.TemporaryDirectory(prefix="store_damage_", dir=tmp) as one:
                    cases.append(store_damage.run_case(case, Path(one), export=False))
            logging.disable(logging.NOTSET)
            report["damage"] = {"totals": {
                "cases": len(cases), "verify_named_the_damage": sum(r["found_expected"] for r in cases),
                "appends_ok": sum(r["append_ok"] for r in cases),
                "intact_episodes": sum(r["intact"] for r in cases),
                "intact_episodes_kept": sum(r["survived"] for r in cases),
                "intact_episodes_lost": sum(len(r["lost_intact"]) for r in cases)}, "cases": cases}
        if "bad-inputs" not in args.skip:
            logging.disable(logging.WARNING)
            rows, groups = bad_input_benchmark(workdir / "bad")
            logging.disable(logging.NOTSET)
            report["bad_inputs"] = {"totals": {"tried": len(rows), "handled_cleanly": sum(r["clean"] for r in rows)},
                                    "groups": groups, "not_clean": [r for r in rows if not r["clean"]]}
    report["seconds"] = round(time.perf_counter() - t0, 1)
    print_table(report)
    if args.out:
        out = Path(args.out)
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(json.dumps(report, indent=2, default=str) + "\n")
        print(f"wrote {out}")


def print_table(report: dict) -> None:
    print(f"\n{report['command']}")
    if report["kills"]:
        print(f"{'kill':>4s} {'command':8s} {'after s':>7s} {'landed':>6s} {'resume':>6s} {'lost':>4s} {'dup':>3s} "
              f"{'readable':>8s} {'same':>5s}")
        for r in report["kills"]["runs"]:
            print(f"{r['kill']:>4d} {r['command']:8s} {r['after_s']:>7.1f} {str(r['landed']):>6s} "
                  f"{r['resumed_exit']:>6d} {r['lost']:>4d} {r['duplicates']:>3d} {str(r['readable']):>8s} "
                  f"{str(r['same_result']):>5s}")
        t = report["kills"]["totals"]
        print(f"kills: {t['kills']} ({t['landed']} landed mid-run), survived {t['survived']}, episodes lost "
              f"{t['episodes_lost']}, duplicates {t['duplicates']}, ppo iterations lost {t['ppo_iterations_lost']} / "
              f"duplicated {t['ppo_iterations_duplicated']}, stores unreadable {t['stores_unreadable']}, "
              f"same as uninterrupted {t['same_as_uninterrupted']}")
    if report["damage"]:
        t = report["damage"]["totals"]
        print(f"damage matrix: {t['cases']} ways of damage, verify named it in {t['verify_named_the_damage']}, "
              f"{t['appends_ok']} next appends ok, {t['intact_episodes_kept']} of {t['intact_episodes']} intact "
              f"episodes kept, {t['intact_episodes_lost']} lost")
    if report["bad_inputs"]:
        b = report["bad_inputs"]
        print(f"bad inputs: {b['totals']['tried']} tried, {b['totals']['handled_cleanly']} handled cleanly "
              f"(exit 2, one line, no traceback): "
              + ", ".join(f"{g} {v['handled_cleanly']}/{v['tried']}" for g, v in b["groups"].items()))
    print(f"{report['seconds']} s")


if __name__ == "__main__":
    main()
