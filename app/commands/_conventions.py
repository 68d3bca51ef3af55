"""What every `lrm-robot` command spells the same way: its help's example, `--output-dir`, `--fresh`.

- `add_command` makes a subcommand's parser; its `--help` ends with an
  `Example:` section (one real invocation, printed as written).
- `add_output_dir_option`: where a command writes a folder or a store is
  `--output-dir`; an earlier spelling (`--out`, `--output`) still works,
  hidden from `--help`, with one warning line.
- `add_fresh_option`: a command that builds a run folder continues the run
  already there; `--fresh` starts over, deleting the folder first, only if
  lrm-robot made it (`common.outputs`). `--restart`, `--no-resume`,
  `--overwrite` still work as `--fresh`, `--resume` as the default, each with
  one warning line.
"""

from __future__ import annotations

import argparse
import os
from collections.abc import Sequence

from common.deprecation import warn_deprecated
from common.outputs import MARKER, remove_output_dir

FRESH_HELP = f"start over: delete %s first (only a folder lrm-robot made: it holds {MARKER})"


class HelpFormatter(argparse.RawDescriptionHelpFormatter):
    """Descriptions wrapped to the terminal; the `Example:` epilog kept as written, so it can be copied."""

    def _fill_text(self, text: str, width: int, indent: str) -> str:
        if text.startswith("Example:"):
            return super()._fill_text(text, width, indent)
        return argparse.HelpFormatter._fill_text(self, text, width, indent)


def example_epilog(*commands: str) -> str:
    return "Example:\n" + "\n".join(f"  {command}" for command in commands)


def add_command(subparsers: argparse._SubParsersAction, name: str, *, help: str, description: str,
                example: str | Sequence[str]) -> argparse.ArgumentParser:
    """A subcommand's parser whose `--help` ends with `example` (one or more real invocations)."""
    examples = [example] if isinstance(example, str) else list(example)
    parser = subparsers.add_parser(name, help=help, description=description, epilog=example_epilog(*examples),
                                   formatter_class=HelpFormatter)
    parser.set_defaults(command_parser=parser)  # `flag_for` finds the flag that stands for a config key
    return parser


class DeprecatedAlias(argparse.Action):
    """An earlier spelling of a flag: sets the new flag's value, hidden from `--help`, one warning line when used."""

    def __init__(self, option_strings: list[str], dest: str, *, advice: str, nargs: int | str | None = None,
                 const: object = None, **kwargs: object) -> None:
        super().__init__(option_strings, dest, nargs=nargs, const=const, help=argparse.SUPPRESS, **kwargs)
        self.advice = advice

    def __call__(self, parser: argparse.ArgumentParser, namespace: argparse.Namespace, values: object,
                 option_string: str | None = None) -> None:
        warn_deprecated(f"{option_string} is deprecated; {self.advice}")
        setattr(namespace, self.dest, self.const if self.nargs == 0 else values)


def add_output_dir_option(parser: argparse.ArgumentParser, help: str, *, old: Sequence[str] = (),
                          metavar: str = "DIR", required: bool = False) -> None:
    """`--output-dir` (dest `output_dir`), with each earlier spelling in `old` as a deprecated alias.

    They are one mutually exclusive group, so giving two is an error, and a
    required one names only `--output-dir`.
    """
    group = parser.add_mutually_exclusive_group(required=required)
    group.add_argument("--output-dir", metavar=metavar, help=help)
    for spelling in old:
        group.add_argument(spelling, dest="output_dir", metavar=metavar, action=DeprecatedAlias,
                           advice="use --output-dir")


def add_fresh_option(parser: argparse.ArgumentParser, what: str = "the output folder", *,
                     old: Sequence[str] = (), resume: str | None = None) -> None:
    """`--fresh` (dest `fresh`): start over in `what`; `old` are earlier flags meaning the same.

    `resume` names an earlier flag that asked to continue, now the default: it
    still works and changes nothing but a warning line.
    """
    parser.add_argument("--fresh", action="store_true", help=FRESH_HELP % what)
    for spelling in old:
        parser.add_argument(spelling, dest="fresh", action=DeprecatedAlias, advice="use --fresh", nargs=0,
                            const=True)
    if resume:
        parser.add_argument(resume, dest="fresh", action=DeprecatedAlias, nargs=0, const=False,
                            advice="continuing is the default (--fresh starts over)")


def start_fresh(path: str | os.PathLike[str]) -> None:
    """What `--fresh` does: delete the output folder, only if lrm-robot made it (FileError naming it otherwise)."""
    remove_output_dir(path, "--fresh: output_dir")


def flag_for(args: argparse.Namespace, key: str) -> str | None:
    """The flag of this command that stands for config key `key` (the last part of the key is its dest), or None."""
    parser = getattr(args, "command_parser", None)
    leaf = key.rsplit(".", 1)[-1]
    for action in getattr(parser, "_actions", ()):
        if action.dest == leaf and action.option_strings and action.help != argparse.SUPPRESS:
            return max(action.option_strings, key=len)
    return None
