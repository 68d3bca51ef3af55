"""What every command that reads a config shares: `--config FILE`, `--set KEY=VALUE`, flags as overrides.

A command's own flags are shortcuts for config keys: each given flag becomes a
`key=value` override, and `--set` overrides follow, so they win over a flag.
Each override remembers how it was given, so that an error it causes names
`--set KEY=VALUE` or the flag, not the config file.

`--report-to` (the training commands) is such a flag too, for the config key
`report_to` (common.tracking), and is checked before anything else runs.
"""

from __future__ import annotations

import argparse
import pathlib
from collections.abc import Mapping
from typing import Any, TypeVar

from app.commands._conventions import flag_for
from app.errors import UsageError
from common.config import Override, load_config

T = TypeVar("T")


def add_config_option(parser: argparse.ArgumentParser, help: str, *, required: bool = True) -> None:
    parser.add_argument("--config", metavar="FILE", required=required, default=None, help=help)


def add_set_option(parser: argparse.ArgumentParser, help: str = "override any config key") -> None:
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help=help)


def config_overrides(args: argparse.Namespace, flags: Mapping[str, Any] | None = None) -> list[str]:
    """`flags` (config key -> flag value; None: not given) as `key=value`, then every `--set`.

    A flag is shown as written (`--rounds 3`) where the command has a flag whose
    dest is the key's last part, else as `command line KEY=VALUE`.
    """
    given: list[str] = []
    for key, value in (flags or {}).items():
        if value is not None:
            flag = flag_for(args, key)
            given.append(Override(f"{key}={value}", f"{flag} {value}" if flag else f"command line {key}={value}"))
    return given + [Override(text, f"--set {text}") for text in args.set]


def load_command_config(args: argparse.Namespace, cls: type[T], flags: Mapping[str, Any] | None = None, *,
                        path: str | pathlib.Path | None = None) -> T:
    """The `cls` config of `--config` (or `path`) with the flags and `--set` applied."""
    return load_config(path if path is not None else args.config, cls, config_overrides(args, flags))


REPORT_TO_HELP = ("where the metrics go: jsonl (OUTPUT/metrics.jsonl, the default), tensorboard (OUTPUT/tensorboard/), "
                  "wandb (when installed), none; several allowed (--report-to jsonl tensorboard, or jsonl,tensorboard)")


def add_report_to_option(parser: argparse.ArgumentParser, help: str = REPORT_TO_HELP) -> None:
    """`--report-to NAME [NAME ...]` (dest `report_to`): the experiment trackers (common.tracking), config key `report_to`."""
    parser.add_argument("--report-to", nargs="+", metavar="NAME", default=None, help=help)


def report_to_flag(args: argparse.Namespace) -> str | None:
    """`--report-to` as the value of the config key `report_to` (`[jsonl, tensorboard]`); None when not given.

    Checked here, before any work: an unknown name, or a tracker whose package is
    missing, is a UsageError naming the flag ("--report-to wandb: wandb is not
    installed (pip install wandb)").
    """
    from common.tracking import parse_report_to

    values = getattr(args, "report_to", None)
    if values is None:
        return None
    try:
        names = parse_report_to(values)
    except ValueError as exc:
        raise UsageError(f"--report-to {' '.join(values)}: {exc}") from None
    return "[" + ", ".join(names) + "]"
