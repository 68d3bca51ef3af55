"""Benchmark: the store damage matrix, counted (the store's part of the reliability benchmark).

Builds the matrix store of `tests/support/store_damage.py` once per case,
damages it one way, then runs what a user would: `store verify`, the next
append, a fresh read of every episode, behaviour cloning's loader and (with
`--export`) a LeRobotDataset export. Counts, per case and in total: the
episodes verify named, whether the append succeeded, intact episodes that came
back byte for byte (content hash) after all of that, and episodes lost. The
test (`tests/recordings/test_store_damage.py`) asserts the same matrix; this
prints it, so a reliability run can report "N ways of damage, M intact
episodes, 0 lost".

Example:
    .venv/bin/python benchmarks/store_damage.py --export --out benchmarks/results/store_damage.json
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import logging
import os
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from app.cli import main as cli  # noqa: E402
from policies.actor_critic.bc_train import load_frames  # noqa: E402
from recordings.episode import Episode  # noqa: E402
from recordings.store import EpisodeStore  # noqa: E402
from tests.support import store_damage as matrix  # noqa: E402


def run_case(case: matrix.Case, workdir: Path, export: bool) -> dict:
    path = workdir / "store"
    before = matrix.build(path)
    case.damage(path)
    with contextlib.redirect_stdout(io.StringIO()):
        exit_code = cli(["store", "verify", str(path)])
    with EpisodeStore.open(path) as store:
        found = sorted(store.verify(record=False).damaged)
    append_error = ""
    try:
        matrix.append_streamed(path, matrix.episode(len(matrix.LENGTHS)))
    except Exception as exc:  # counted, not raised: the benchmark reports every case
        append_error = f"{type(exc).__name__}: {exc}"
    with EpisodeStore.open(path) as store:
        readable = {r.index for r in store.episodes()}
        old = readable & set(range(len(matrix.LENGTHS)))
        kept = {i for i in old if matrix.content_hash(store.load_episode(i)) == matrix.content_hash(before[i])}
        frames = load_frames(store, sorted(readable), cameras=list(store.cameras))
        trained = set()
        for i in kept:
            rows = frames.episode == i
            loaded = Episode(
                meta=before[i].meta,
                images={c: frames.images[c][rows] for c in frames.images},
                state=frames.state[rows],
                action=frames.action[rows],
                timestamp=before[i].timestamp,
            )
            fields = matrix.TRAINED
            if matrix.content_hash(loaded, fields=fields) == matrix.content_hash(before[i], fields=fields):
                trained.add(i)
    exported = kept
    if export:
        out = workdir / "dataset"
        with contextlib.redirect_stdout(io.StringIO()):
            cli(["store", "export", str(path), "--output-dir", str(out), "--fps", str(matrix.FPS)])
        hashes = matrix.exported_hashes(out)
        exported = {i for i in kept if hashes.get(i) == matrix.content_hash(before[i], fields=matrix.TRAINED)}
    survived = kept & trained & exported
    intact_before = set(range(len(matrix.LENGTHS))) - case.lost
    return {
        "case": case.name,
        "verify_exit": exit_code,
        "found": found,
        "found_expected": found == sorted(case.found),
        "append_ok": not append_error,
        "append_error": append_error,
        "intact": len(intact_before),
        "survived": len(survived & intact_before),
        "lost_intact": sorted(intact_before - survived),
        "quarantined": sorted(set(range(len(matrix.LENGTHS))) - readable),
    }


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--export", action="store_true", help="also export to a LeRobotDataset (imports LeRobot: ~20 s)")
    p.add_argument("--out", default=None, help="write the results as JSON here")
    args = p.parse_args()
    logging.disable(logging.WARNING)  # each case logs its damage; the table says it
    t0 = time.perf_counter()
    results = []
    for case in matrix.CASES:
        with tempfile.TemporaryDirectory(prefix="store_damage_") as tmp:
            results.append(run_case(case, Path(tmp), args.export))
    print(f"{'case':30s} {'verify':>6s} {'found':>12s} {'append':>6s} {'intact kept':>11s} {'quarantined':>11s}")
    for r in results:
        print(
            f"{r['case']:30s} {r['verify_exit']:>6d} {','.join(map(str, r['found'])) or '-':>12s} "
            f"{'ok' if r['append_ok'] else 'FAIL':>6s} {r['survived']:>5d} of {r['intact']:<3d} "
            f"{','.join(map(str, r['quarantined'])) or '-':>11s}"
        )
    totals = {
        "cases": len(results),
        "verify_named_the_damage": sum(r["found_expected"] for r in results),
        "appends_ok": sum(r["append_ok"] for r in results),
        "intact_episodes": sum(r["intact"] for r in results),
        "intact_episodes_kept": sum(r["survived"] for r in results),
        "intact_episodes_lost": sum(len(r["lost_intact"]) for r in results),
        "exported": args.export,
        "seconds": round(time.perf_counter() - t0, 1),
    }
    print(
        f"{totals['cases']} ways of damage: verify named the damage in {totals['verify_named_the_damage']}, "
        f"{totals['appends_ok']} next appends succeeded, {totals['intact_episodes_kept']} of "
        f"{totals['intact_episodes']} intact episodes kept byte for byte "
        f"(append, reload, behaviour-cloning load{', export' if args.export else ''}), "
        f"{totals['intact_episodes_lost']} lost"
    )
    if args.out:
        out = Path(args.out)
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(json.dumps({"benchmark": "store_damage", "totals": totals, "cases": results}, indent=2) + "\n")
        print(f"wrote {out}")


if __name__ == "__main__":
    main()
