"""Config text into plain data: what PyYAML's `safe_load` accepts, less what would hide a mistake or hang.

`safe_load` alone lets through four things a hand-written config should never
carry, each found the hard way:

- bytes that are not UTF-8 text (a binary file named by mistake): a
  UnicodeDecodeError traceback;
- a key given twice in one mapping: the last one wins, silently;
- deep nesting: the parser recurses per level and a few thousand levels end
  in a RecursionError;
- anchors and aliases that expand to billions of values ("billion laughs"):
  every later step that walks the data hangs.

Each is a `YamlProblem` here, a single line for `common.config` to prefix
with the file's name.
"""

from __future__ import annotations

import pathlib
from typing import Any

import yaml

__all__ = ["MAX_BYTES", "MAX_DEPTH", "MAX_VALUES", "YamlProblem", "parse_yaml", "read_yaml_file"]

MAX_BYTES = 4 * 1024 * 1024  # the largest shipped config is a few KiB; more is not a config
MAX_DEPTH = 64  # nesting levels; the deepest shipped config has 5
MAX_VALUES = 100_000  # values once aliases are expanded


class YamlProblem(Exception):
    """The text is not a config's YAML; the message is one line without the file name."""


class _StrictLoader(yaml.SafeLoader):
    """SafeLoader that refuses a repeated key and nesting deeper than MAX_DEPTH while it composes."""

    _depth = 0

    def compose_node(self, parent: Any, index: Any) -> Any:
        # the composer recurses once per level: stop at a depth far below Python's recursion limit
        self._depth += 1
        try:
            if self._depth > MAX_DEPTH:
                mark = self.peek_event().start_mark
                raise yaml.composer.ComposerError(None, None, f"nested more than {MAX_DEPTH} levels deep", mark)
            return super().compose_node(parent, index)
        finally:
            self._depth -= 1

    def construct_mapping(self, node: Any, deep: bool = False) -> Any:
        if isinstance(node, yaml.MappingNode):
            _refuse_repeated_keys(self, node)
        return super().construct_mapping(node, deep=deep)


def _refuse_repeated_keys(loader: yaml.SafeLoader, node: yaml.MappingNode) -> None:
    """A key written twice in the same mapping (a merged `<<: *anchor` key may be overridden, as YAML means)."""
    first_line: dict[Any, int] = {}
    for key_node, _ in node.value:
        if key_node.tag == "tag:yaml.org,2002:merge":
            continue
        if not isinstance(key_node, yaml.ScalarNode):
            continue  # a mapping or list as key: the constructor reports it as unhashable
        key = loader.construct_object(key_node)
        if key in first_line:
            raise yaml.constructor.ConstructorError(
                None, None, f"key {key!r} is given twice (first at line {first_line[key]})", key_node.start_mark
            )
        first_line[key] = key_node.start_mark.line + 1


def parse_yaml(text: str) -> Any:
    """The data of YAML `text` (None for an empty document); YamlProblem names the line of a problem."""
    try:
        data = yaml.load(text, Loader=_StrictLoader)  # noqa: S506 - a SafeLoader subclass
    except yaml.YAMLError as exc:
        raise YamlProblem(_describe(exc)) from None
    _check_size(data)
    return data


def read_yaml_file(path: str | pathlib.Path) -> Any:
    """The data of the YAML file `path`; YamlProblem if it is too large, not UTF-8 text, or not a config's YAML."""
    path = pathlib.Path(path)
    size = path.stat().st_size
    if size > MAX_BYTES:
        raise YamlProblem(f"is {size} bytes, more than a config's {MAX_BYTES} (is it the right file?)")
    raw = path.read_bytes()
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise YamlProblem(f"is not UTF-8 text (byte {exc.start} is 0x{raw[exc.start]:02x}); "
                          "a config is a YAML text file") from None
    return parse_yaml(text)


def _describe(exc: yaml.YAMLError) -> str:
    mark = getattr(exc, "problem_mark", None)
    where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
    if isinstance(exc, yaml.reader.ReaderError):  # a control character: no problem_mark, but a position
        return f"invalid YAML at character {exc.position}: {exc.reason} (#x{exc.character:04x})"
    problem = getattr(exc, "problem", None) or type(exc).__name__
    return f"invalid YAML{where}: {problem}"


def _check_size(data: Any) -> None:
    """Walk the data as later steps will (aliases expanded), without recursion, stopping at the first excess."""
    stack = [(data, 1)]
    values = 0
    while stack:
        node, depth = stack.pop()
        values += 1
        if values > MAX_VALUES:
            raise YamlProblem(f"holds more than {MAX_VALUES} values once its aliases are expanded")
        if depth > MAX_DEPTH:
            raise YamlProblem(f"is nested more than {MAX_DEPTH} levels deep once its aliases are expanded")
        if isinstance(node, dict):
            stack.extend((v, depth + 1) for v in node.values())
        elif isinstance(node, list):
            stack.extend((v, depth + 1) for v in node)
