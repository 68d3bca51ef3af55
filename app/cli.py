"""The `lrm-robot` command line: builds objects from configs and flags, nothing else.

Every expected failure (a bad config, a bad store, bad flags, a file that
cannot be used) ends as one line on stderr and exit code 2; a traceback means
a bug. argparse's own errors are one line too (`OneLineParser`): a script
reading stderr, or a person scanning a log, finds one line per failure.

A command runs inside tqdm's `logging_redirect_tqdm`: its log lines are
printed above the progress bars (common.progress) instead of through them.
"""

from __future__ import annotations

import argparse
import importlib
import importlib.metadata
import logging
import pathlib
import pkgutil
import re
import sys
import typing
from types import ModuleType

import app.commands
from app.commands._conventions import HelpFormatter, example_epilog
from app.errors import UsageError
from common.config import ConfigError
from common.errors import FileError

MAX_MESSAGE = 1000  # characters of an error line; a longer message names too much to read anyway


class OneLineParser(argparse.ArgumentParser):
    """argparse's errors as one line ("lrm-robot demos: error: ...; see --help"), exit code 2.

    argparse prints the usage (several lines for most commands) and then the
    error; the usage is one `--help` away.
    """

    def error(self, message: str) -> typing.NoReturn:
        # a required flag with hidden earlier spellings is a required group of one visible flag
        message = re.sub(r"^one of the arguments (\S+) is required$", r"the following arguments are required: \1",
                         message)
        self.exit(2, one_line(f"{self.prog}: error: {message} (see {self.prog} --help)") + "\n")


def one_line(text: str) -> str:
    """`text` on one line: line breaks become '; ', and a very long text is cut."""
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    joined = "; ".join(lines)
    return joined if len(joined) <= MAX_MESSAGE else joined[: MAX_MESSAGE - 3] + "..."


def discover_commands() -> list[ModuleType]:
    """Every module in `app.commands` with a `register(subparsers)` is a subcommand.

    Adding a command means adding a module, never editing this file; `ORDER`
    (default 100) places a command in `--help`, ties broken by name.
    """
    modules = [
        importlib.import_module(f"app.commands.{info.name}")
        for info in pkgutil.iter_modules(app.commands.__path__)
        if not info.name.startswith("_")
    ]
    commands = [m for m in modules if callable(getattr(m, "register", None))]
    return sorted(commands, key=lambda m: (getattr(m, "ORDER", 100), m.__name__))


def package_version() -> str:
    """The installed package's version; in a checkout that is not installed, pyproject.toml's."""
    try:
        return importlib.metadata.version("lrm-robot")
    except importlib.metadata.PackageNotFoundError:
        pyproject = pathlib.Path(__file__).resolve().parents[1] / "pyproject.toml"
        match = re.search(r'^version\s*=\s*"([^"]+)"', pyproject.read_text(), re.MULTILINE)
        return match.group(1) if match else "unknown"


def build_parser() -> argparse.ArgumentParser:
    parser = OneLineParser(
        prog="lrm-robot",
        description="Make robot policies better with Large Reward Models, in ManiSkill3 or on a real arm.",
        epilog=example_epilog("lrm-robot improve --config configs/improve/pushcube_cpu.yaml"),
        formatter_class=HelpFormatter,
    )
    parser.add_argument("--version", action="version", version=f"lrm-robot {package_version()}")
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for command in discover_commands():
        command.register(subparsers)
    return parser


def _expected_errors() -> tuple[type[BaseException], ...]:
    from recordings.errors import StoreError

    errors: list[type[BaseException]] = [ConfigError, UsageError, StoreError, FileError]
    for command in discover_commands():
        # a command may declare the domain errors it expects (e.g. a driver fault)
        errors.extend(getattr(command, "EXPECTED_ERRORS", ()))
    try:
        from sim.errors import SimError
    except ImportError:  # pragma: no cover - sim is optional at import time
        pass
    else:
        errors.append(SimError)
    return tuple(errors)


def _command_name(args: argparse.Namespace) -> str:
    action = getattr(args, "store_command", None)
    return f"{args.command} {action}" if action else args.command


def run_handler(args: argparse.Namespace) -> int:
    """The command's handler, with every log line printed above the progress bars instead of through them."""
    from tqdm.contrib.logging import logging_redirect_tqdm

    with logging_redirect_tqdm():
        return int(args.handler(args) or 0)


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        datefmt="%H:%M:%S",
    )
    try:
        return run_handler(args)
    except _expected_errors() as exc:
        print(one_line(f"lrm-robot {_command_name(args)}: error: {exc}"), file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"lrm-robot {_command_name(args)}: interrupted; committed episodes are kept", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
