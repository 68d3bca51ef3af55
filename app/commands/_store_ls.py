"""`lrm-robot store ls STORE`: one row per episode, read-only.

A row: index, source, round, length, the verdicts the store holds (the
operator's, the LRM's with its score, the simulator's oracle flag), the
frames with a really rendered image per camera (the rest are black
placeholders; `?` for an episode recorded before the store kept that mark),
and whether the episode was aborted. The filters are those of `store
export` (`_episode_filters`). The store is opened read-only: nothing is
written, so a read-only store (or one another process is writing) lists too.
"""

from __future__ import annotations

import argparse
import json
from typing import Any

from app.commands._conventions import add_command
from app.commands._episode_filters import add_episode_filters, filter_keywords


def register_ls(actions: argparse._SubParsersAction) -> None:
    ls = add_command(
        actions,
        "ls",
        help="one row per episode: index, source, round, length, verdicts, real frames",
        description=(
            "List the episodes of a store, one row each: index, source, round, length, the operator's, the LRM's "
            "(with its score) and the oracle's verdicts, and per camera the frames holding a rendered image "
            "(the others are black placeholders; ? where the episode was recorded before the store kept the mark). "
            "Filters combine with AND. Reads only; a read-only store lists too."
        ),
        example="lrm-robot store ls outputs/improve-pushcube-cpu/store --source sim --round 1 --accepted yes",
    )
    ls.add_argument("store", help="path to the episode store")
    add_episode_filters(ls)
    ls.add_argument("--json", action="store_true", help="print the rows as JSON (one object per episode)")
    ls.set_defaults(handler=run_ls)


def episode_row(record: Any) -> dict[str, Any]:
    """One episode as the row `store ls` prints; the same dict backs the table and --json."""
    meta = record.meta
    return {
        "index": record.index,
        "source": meta.source,
        "round": meta.round,
        "length": record.length,
        "task": meta.task,
        "verdicts": {"operator": meta.operator_verdict, "lrm": meta.lrm_verdict, "lrm_score": meta.lrm_score,
                     "oracle": meta.oracle_success, "accepted": meta.accepted},
        "aborted": meta.aborted,
        # camera -> frames with a rendered image; None: recorded before the store kept the mark
        "real_frames": None if record.real_frames is None else dict(record.real_frames),
    }


def _verdict(value: bool | None) -> str:
    return "-" if value is None else ("yes" if value else "no")


def _real_frames(row: dict[str, Any], cameras: list[str]) -> str:
    real = row["real_frames"]
    if real is None:
        return "?"
    counts = [f"{real.get(camera, row['length'])}/{row['length']}" for camera in cameras]
    if len(cameras) == 1:
        return counts[0]
    return ", ".join(f"{camera} {count}" for camera, count in zip(cameras, counts))


def run_ls(args: argparse.Namespace) -> int:
    from rich import box
    from rich.console import Console
    from rich.table import Table

    from recordings.store import EpisodeStore

    with EpisodeStore.open(args.store, mode="r") as store:
        rows = [episode_row(r) for r in store.episodes(**filter_keywords(args))]
        cameras = list(store.cameras)
        damaged = sorted(store.damaged)
    if args.json:
        print(json.dumps({"store": str(args.store), "episodes": rows, "damaged": damaged}, indent=2))
        return 0
    table = Table(title=f"episode store {args.store}", box=box.SIMPLE_HEAD, title_justify="left")
    for name in ("index", "source", "round", "length", "operator", "LRM", "oracle", "real frames", "aborted"):
        table.add_column(name, justify="right" if name in ("index", "round", "length") else "left")
    for row in rows:
        verdicts = row["verdicts"]
        score = "" if verdicts["lrm_score"] is None else f" ({verdicts['lrm_score']:.2f})"
        table.add_row(str(row["index"]), row["source"], str(row["round"]), str(row["length"]),
                      _verdict(verdicts["operator"]), _verdict(verdicts["lrm"]) + score, _verdict(verdicts["oracle"]),
                      _real_frames(row, cameras), "aborted" if row["aborted"] else "")
    console = Console()
    console.width = max(console.width, 100)  # piped, rich assumes 80 columns: too few for the row
    console.print(table)
    print(f"{len(rows)} episodes" + (f"; {len(damaged)} damaged left out (see `lrm-robot store verify`)"
                                     if damaged else ""))
    return 0
