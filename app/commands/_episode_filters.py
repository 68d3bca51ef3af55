"""The episode filters `store ls` and `store export` share: one flag per stored field, combined with AND."""

from __future__ import annotations

import argparse
from typing import Any

from recordings.episode import SOURCES

VERDICTS = ("yes", "no", "none")  # none: the field was never set (not judged, no oracle)


def add_episode_filters(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--source", action="append", choices=SOURCES, help="keep these sources (repeatable)")
    parser.add_argument("--task", action="append", help="keep episodes with this task sentence (repeatable)")
    parser.add_argument("--round", action="append", type=int, help="keep episodes of this round (repeatable)")
    parser.add_argument("--accepted", choices=VERDICTS,
                        help="the verdict that counts: the operator's, else the LRM's (none: neither given)")
    parser.add_argument("--oracle-success", choices=VERDICTS, help="the simulator's success flag (none: not known)")


def filter_keywords(args: argparse.Namespace) -> dict[str, Any]:
    """The filters given, as keywords of `EpisodeStore.episodes`."""
    from recordings.selection import UNSET

    verdict = {"yes": True, "no": False, "none": UNSET, None: None}
    return {"source": args.source, "task": args.task, "round": args.round,
            "accepted": verdict[args.accepted], "oracle_success": verdict[args.oracle_success]}
