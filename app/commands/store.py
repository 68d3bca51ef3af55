"""`lrm-robot store info|verify|export STORE`: what an episode store holds, whether it is intact, export."""

from __future__ import annotations

import argparse
import json
from collections import Counter

from rich.console import Console
from rich.table import Table


ORDER = 20

# `store verify` exit codes: 0 every committed episode intact (or unverified: written before
# checksums were kept), 3 damage found; bad input (not a store) stays 2, as for every command.
EXIT_DAMAGED = 3


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser("store", help="inspect an episode store", description="Inspect an episode store.")
    actions = parser.add_subparsers(dest="store_command", metavar="ACTION", required=True)
    info = actions.add_parser(
        "info",
        help="episodes, frames, cameras, success counts and size on disk",
        description="Print a summary of an episode store: episodes, frames, cameras, success counts, size on disk.",
    )
    info.add_argument("store", help="path to the episode store (a Zarr v3 folder)")
    info.add_argument("--json", action="store_true", help="print the summary as JSON instead of a table")
    info.set_defaults(handler=run_info)

    verify = actions.add_parser(
        "verify",
        help="read every episode and check it against its checksums",
        description=(
            "Read every committed episode and check its bytes against the checksums written when it was "
            "recorded; print which episodes are intact and which are damaged, and where. Damaged episodes "
            "are quarantined (listed in meta/quarantine.json; readers skip them). "
            f"Exit code 0: no damage; {EXIT_DAMAGED}: damage found; 2: not a store."
        ),
    )
    verify.add_argument("store", help="path to the episode store")
    verify.add_argument("--json", action="store_true", help="print the report as JSON")
    verify.add_argument(
        "--no-record", action="store_true", help="do not write what was found into the quarantine record"
    )
    verify.set_defaults(handler=run_verify)

    export = actions.add_parser(
        "export",
        help="export selected episodes to a LeRobotDataset",
        description=(
            "Export episodes to a LeRobotDataset through LeRobot's own writer. Images are stored "
            "losslessly (PNG) unless --video; filters combine with AND."
        ),
    )
    export.add_argument("store", help="path to the episode store")
    export.add_argument("--out", required=True, metavar="DIR", help="dataset root to create")
    export.add_argument("--repo-id", default="local/lrm-robot", help="LeRobot repo id recorded in the dataset")
    export.add_argument("--source", action="append", choices=("sim", "robot", "demo"), help="keep these sources")
    export.add_argument("--task", action="append", help="keep episodes with this task sentence")
    export.add_argument("--round", action="append", type=int, help="keep episodes of this round")
    export.add_argument("--accepted", choices=("yes", "no"), help="operator verdict, else the LRM's")
    export.add_argument("--oracle-success", choices=("yes", "no"), help="simulator's success flag")
    export.add_argument("--fps", type=float, help="frame rate, for a store that does not record one")
    export.add_argument("--rewards", action="store_true", help="also export reward traces as reward.<modality>")
    export.add_argument("--video", action="store_true", help="encode cameras as video (smaller, lossy)")
    export.add_argument("--overwrite", action="store_true",
                        help="replace an earlier export at --out (only one lrm-robot made: it holds .lrm-robot-output)")
    export.set_defaults(handler=run_export)


def summarize(store) -> dict:
    """Counts a person asks about first; the same dict backs the table and --json."""
    records = store.episodes()

    def count(predicate) -> int:
        return sum(1 for r in records if predicate(r.meta))

    return {
        "path": str(store.path),
        "episodes": len(records),
        "frames": sum(r.length for r in records),
        "fps": store.fps,
        "cameras": {name: list(shape) for name, shape in store.cameras.items()},
        "state_dim": store.state_dim,
        "action_dim": store.action_dim,
        "by_source": dict(Counter(r.meta.source for r in records)),
        "tasks": dict(Counter(r.meta.task for r in records)),
        "oracle_success": count(lambda m: m.oracle_success is True),
        "oracle_failure": count(lambda m: m.oracle_success is False),
        "lrm_accepted": count(lambda m: m.lrm_verdict is True),
        "lrm_rejected": count(lambda m: m.lrm_verdict is False),
        "operator_accepted": count(lambda m: m.operator_verdict is True),
        "operator_rejected": count(lambda m: m.operator_verdict is False),
        "aborted": count(lambda m: m.aborted),
        "size_bytes": store.size_bytes(),
        "committed": store.num_episodes,
        "damaged": [{"index": d.index, "where": d.where, "why": d.why} for d in store.damaged.values()],
        "index_problems": store.index_problems,
    }


def _human_bytes(n: int) -> str:
    size = float(n)
    for unit in ("B", "KiB", "MiB", "GiB"):
        if size < 1024 or unit == "GiB":
            return f"{size:.1f} {unit}" if unit != "B" else f"{int(size)} B"
        size /= 1024
    raise AssertionError("unreachable")


def run_info(args: argparse.Namespace) -> int:
    from recordings.store import EpisodeStore

    store = EpisodeStore.open(args.store, mode="r")
    summary = summarize(store)
    if args.json:
        print(json.dumps(summary, indent=2))
        return 0
    table = Table(title=f"episode store {summary['path']}", show_header=False)
    table.add_column("what", style="bold")
    table.add_column("value")
    damaged = summary["damaged"]
    readable = f" readable of {summary['committed']} committed" if damaged else ""
    table.add_row("episodes", f"{summary['episodes']}{readable}")
    if damaged:
        lines = [f"episode {d['index']}: {d['where']}: {d['why']}" for d in damaged]
        table.add_row("[red]damaged (quarantined)[/red]", "\n".join(lines))
    if summary["index_problems"]:
        table.add_row("[red]damaged commit record[/red]", _first_lines(summary["index_problems"]))
    table.add_row("frames", str(summary["frames"]))
    table.add_row("fps", "-" if summary["fps"] is None else f"{summary['fps']:g}")
    cameras = ", ".join(f"{name} {h}x{w}" for name, (h, w) in summary["cameras"].items()) or "-"
    table.add_row("cameras", cameras)
    table.add_row("state / action dims", f"{summary['state_dim']} / {summary['action_dim']}")
    table.add_row("by source", ", ".join(f"{k}: {v}" for k, v in summary["by_source"].items()) or "-")
    table.add_row("tasks", "\n".join(f"{v} x {k}" for k, v in summary["tasks"].items()) or "-")
    table.add_row("oracle success", f"{summary['oracle_success']} succeeded, {summary['oracle_failure']} failed")
    table.add_row("LRM verdict", f"{summary['lrm_accepted']} accepted, {summary['lrm_rejected']} rejected")
    table.add_row(
        "operator verdict", f"{summary['operator_accepted']} accepted, {summary['operator_rejected']} rejected"
    )
    table.add_row("aborted", str(summary["aborted"]))
    table.add_row("size on disk", _human_bytes(summary["size_bytes"]))
    Console().print(table)
    if damaged or summary["index_problems"]:
        print(f"checksums are read by `lrm-robot store verify {summary['path']}`")
    return 0


def _first_lines(lines: list[str], limit: int = 5) -> str:
    more = [f"... and {len(lines) - limit} more"] if len(lines) > limit else []
    return "\n".join(lines[:limit] + more)


def run_verify(args: argparse.Namespace) -> int:
    from recordings.integrity import index_ranges
    from recordings.store import EpisodeStore

    from tqdm.auto import tqdm

    with EpisodeStore.open(args.store, mode="r") as store:
        # disable=None: a bar on a terminal only, so piped output (and --json) stays clean
        with tqdm(total=store.num_frames, unit="frame", desc="verify", disable=None) as bar:
            report = store.verify(record=not args.no_record, progress=bar.update)
    if args.json:
        print(json.dumps(report.to_json(), indent=2))
        return 0 if report.ok else EXIT_DAMAGED
    print(f"{report.path}: {report.committed} committed episodes")
    if report.intact:
        print(f"  intact: {index_ranges(report.intact)}")
    if report.unverified:
        print(f"  unverified (written before checksums were kept; readable): {index_ranges(report.unverified)}")
    for damage in report.damaged.values():
        print(f"  DAMAGED {damage}")
    for problem in _first_lines(report.index_problems).splitlines():
        print(f"  DAMAGED commit record: {problem}")
    if report.index_problems:
        print("  (the episode JSONs hold the same ends; the next writer that opens the store restores them)")
    if report.damaged:
        print(f"  damaged episodes are kept, not deleted; readers skip them ({report.recorded})")
    return 0 if report.ok else EXIT_DAMAGED


def run_export(args: argparse.Namespace) -> int:
    from app.errors import UsageError
    from common.outputs import check_output_dir
    from recordings.store import EpisodeStore

    if args.fps is not None and not 0 < args.fps <= 1000:  # NaN fails this too
        raise UsageError(f"--fps {args.fps}: must be more than 0 and at most 1000")
    check_output_dir(args.out, "--out")
    store = EpisodeStore.open(args.store, mode="r")
    yes_no = {"yes": True, "no": False, None: None}
    records = store.episodes(
        source=args.source,
        task=args.task,
        round=args.round,
        accepted=yes_no[args.accepted],
        oracle_success=yes_no[args.oracle_success],
    )
    if not records:
        raise UsageError(f"no episode of {args.store} matches the filters")
    out = store.export_lerobot(
        args.out,
        repo_id=args.repo_id,
        episodes=records,
        video=args.video,
        overwrite=args.overwrite,
        rewards=args.rewards,
        fps=args.fps,
    )
    frames = sum(r.length for r in records)
    print(f"exported {len(records)} episodes ({frames} frames) to the LeRobotDataset at {out}")
    return 0
