"""`lrm-robot store ls|info|verify|export STORE`: its episodes, what it holds, whether it is intact, export.

`store ls` lives in `_store_ls`; `ls` and `export` share their episode filters (`_episode_filters`).
"""

from __future__ import annotations

import argparse
import json
from collections import Counter

from rich.console import Console
from rich.table import Table

from app.commands._conventions import add_command, add_fresh_option, add_output_dir_option
from app.commands._episode_filters import add_episode_filters, filter_keywords
from app.commands._store_ls import register_ls


ORDER = 20

# `store verify` exit codes: 0 every committed episode intact (or unverified: written before
# checksums were kept), 3 damage found; bad input (not a store) stays 2, as for every command.
EXIT_DAMAGED = 3


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = add_command(subparsers, "store", help="inspect an episode store",
                         description="Inspect an episode store: list its episodes, summarise it, check it, export it.",
                         example="lrm-robot store ls outputs/demos/pickcube")
    actions = parser.add_subparsers(dest="store_command", metavar="ACTION", required=True)
    register_ls(actions)
    info = add_command(
        actions,
        "info",
        help="episodes, frames, cameras, success counts and size on disk",
        description="Print a summary of an episode store: episodes, frames, cameras, success counts, size on disk.",
        example="lrm-robot store info outputs/demos/pickcube --json",
    )
    info.add_argument("store", help="path to the episode store (a Zarr v3 folder)")
    info.add_argument("--json", action="store_true", help="print the summary as JSON instead of a table")
    info.set_defaults(handler=run_info)

    verify = add_command(
        actions,
        "verify",
        help="read every episode and check it against its checksums",
        description=(
            "Read every committed episode and check its bytes against the checksums written when it was "
            "recorded; print which episodes are intact and which are damaged, and where. Damaged episodes "
            "are quarantined (listed in meta/quarantine.json; readers skip them). "
            f"Exit code 0: no damage; {EXIT_DAMAGED}: damage found; 2: not a store."
        ),
        example="lrm-robot store verify outputs/demos/pickcube",
    )
    verify.add_argument("store", help="path to the episode store")
    verify.add_argument("--json", action="store_true", help="print the report as JSON")
    verify.add_argument(
        "--no-record", action="store_true", help="do not write what was found into the quarantine record"
    )
    verify.set_defaults(handler=run_verify)

    export = add_command(
        actions,
        "export",
        help="export selected episodes to a LeRobotDataset",
        description=(
            "Export episodes to a LeRobotDataset through LeRobot's own writer. Images are stored "
            "losslessly (PNG) unless --video; filters combine with AND; aborted episodes are left out "
            "unless --include-aborted. Writes LeRobot's next.reward (the --reward trace, held between "
            "queries), next.done (each episode's last frame) and next.success (the episode's outcome, "
            "at its last frame), and each episode's verdicts as lrm_robot/* columns of meta/episodes. "
            "An export is not continued: --fresh replaces an earlier one."
        ),
        example="lrm-robot store export outputs/demos/pickcube --output-dir outputs/datasets/pickcube "
                "--episodes 0-9 --robot-type panda",
    )
    export.add_argument("store", help="path to the episode store")
    add_output_dir_option(export, "dataset root to create", old=["--out"], required=True)
    export.add_argument("--repo-id", default="local/lrm-robot", help="LeRobot repo id recorded in the dataset")
    add_episode_filters(export)
    export.add_argument("--episodes", type=_index_list, metavar="LIST",
                        help="store episode indices to export, in this order, e.g. 0-4,7 (with the filters: AND)")
    export.add_argument("--include-aborted", action="store_true", help="also export episodes marked aborted")
    export.add_argument("--fps", type=float,
                        help="frame rate; default: inferred from the recorded timestamps (refused when irregular)")
    export.add_argument("--reward", default="auto", metavar="MODALITY",
                        help="reward trace behind next.reward: auto (the simulator's dense_reward, else progress, "
                             "completion, success: the first every episode recorded), a modality name, or none")
    export.add_argument("--success", default="auto", choices=("auto", "oracle", "accepted"),
                        help="next.success at an episode's last frame: the simulator's success (oracle), the "
                             "operator's else the LRM's verdict (accepted), or auto (oracle where recorded)")
    export.add_argument("--rewards", action="store_true",
                        help="also export every reward trace as reward.<modality> (held) and reward_queried.<modality>")
    export.add_argument("--robot-type", help="LeRobot robot_type recorded in info.json (e.g. panda, so100_follower)")
    export.add_argument("--state-names", type=_name_list, metavar="A,B,...", help="names of the state dimensions")
    export.add_argument("--action-names", type=_name_list, metavar="A,B,...", help="names of the action dimensions")
    export.add_argument("--video", action="store_true", help="encode cameras as video (smaller, lossy)")
    add_fresh_option(export, "an earlier export at OUTPUT", old=["--overwrite"])
    export.set_defaults(handler=run_export)


def _index_list(text: str) -> list[int]:
    """'0-4,7' -> [0, 1, 2, 3, 4, 7], in the order written."""
    out: list[int] = []
    try:
        for part in text.split(","):
            first, dash, last = part.strip().partition("-")
            a = int(first)
            b = int(last) if dash else a
            if a < 0 or b < a:
                raise ValueError
            out.extend(range(a, b + 1))
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a list of episode indices like 0-4,7") from None
    return out


def _name_list(text: str) -> list[str]:
    names = [n.strip() for n in text.split(",")]
    if not all(names):
        raise argparse.ArgumentTypeError(f"{text!r} has an empty name")
    return names


def summarize(store) -> dict:
    """Counts a person asks about first; the same dict backs the table and --json."""
    records = store.episodes()

    def count(predicate) -> int:
        return sum(1 for r in records if predicate(r.meta))

    return {
        "path": str(store.path),
        "episodes": len(records),
        "frames": sum(r.length for r in records),
        # per camera, frames holding a rendered image (the rest are black placeholders); episodes
        # recorded before the mark was kept are counted apart, as unknown
        "real_frames": {c: sum(r.real_frames.get(c, r.length) for r in records if r.real_frames is not None)
                        for c in store.cameras},
        "unmarked_frames": sum(r.length for r in records if r.real_frames is None),
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


def _real_frames_line(summary: dict) -> str:
    """Rendered frames per camera: e.g. 'base 3/75' (the rest hold black placeholders)."""
    marked = summary["frames"] - summary["unmarked_frames"]
    line = ", ".join(f"{c} {n}/{marked}" for c, n in summary["real_frames"].items()) or "-"
    if summary["unmarked_frames"]:
        line += f" ({summary['unmarked_frames']} frames recorded without the mark, unknown)"
    return line


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
    table.add_row("real frames", _real_frames_line(summary))
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
    check_output_dir(args.output_dir, "--output-dir")
    store = EpisodeStore.open(args.store, mode="r")
    records = store.episodes(**filter_keywords(args))
    if args.episodes is not None:
        by_index = {r.index: r for r in records}
        beyond = [i for i in args.episodes if i >= store.num_episodes]
        if beyond:
            raise UsageError(f"{args.store} has episodes 0-{store.num_episodes - 1}; --episodes names {beyond[0]}")
        records = [by_index[i] for i in dict.fromkeys(args.episodes) if i in by_index]
    if not args.include_aborted:
        aborted = [r for r in records if r.meta.aborted]
        records = [r for r in records if not r.meta.aborted]
        if aborted and not records:
            raise UsageError(f"every matching episode of {args.store} is aborted; --include-aborted exports them")
        if aborted:
            print(f"leaving out {len(aborted)} aborted episodes (--include-aborted keeps them)")
    if not records:
        raise UsageError(f"no episode of {args.store} matches the selection")
    out = store.export_lerobot(
        args.output_dir,
        repo_id=args.repo_id,
        episodes=records,
        video=args.video,
        overwrite=args.fresh,
        reward=None if args.reward == "none" else args.reward,
        success=args.success,
        rewards=args.rewards,
        include_aborted=args.include_aborted,
        fps=args.fps,
        robot_type=args.robot_type,
        state_names=args.state_names,
        action_names=args.action_names,
    )
    frames = sum(r.length for r in records)
    print(f"exported {len(records)} episodes ({frames} frames) to the LeRobotDataset at {out}")
    return 0
