"""YAML files into typed dataclasses, strictly.

Every command takes its settings from a YAML file parsed into the command's
config dataclass. A config is often written by hand before hours of robot
time, so anything suspicious is an error before work starts: an unknown key
(a typo would otherwise silently fall back to a default), a wrong type, a
missing required key, a missing file. Each error is one line that names the
file and the dotted key.
"""

from __future__ import annotations

import dataclasses
import difflib
import enum
import pathlib
import re
import types
import typing
from typing import Any, Literal, TypeVar, Union, get_args, get_origin, get_type_hints

import yaml

_SCIENTIFIC = re.compile(r"[-+]?(\d+\.?\d*|\.\d+)[eE][-+]?\d+")

T = TypeVar("T")


class ConfigError(Exception):
    """A config could not be loaded; the message is a single line naming file and key."""


def load_config(path: str | pathlib.Path | None, cls: type[T], overrides: list[str] | None = None) -> T:
    """Read `path` and build a `cls` from it; `overrides` are 'dotted.key=yaml_value' strings.

    With no path, the config is built from the dataclass defaults and the overrides alone
    (a command run with flags only); errors then name the command line as their source.
    """
    if path is None:
        data: Any = {}
        for override in overrides or []:
            data = _apply_override(data, override, "command line")
        return from_dict(cls, data, source="command line")
    path = pathlib.Path(path)
    if not path.is_file():
        raise ConfigError(f"{path}: config file not found")
    try:
        data = yaml.safe_load(path.read_text())
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        problem = getattr(exc, "problem", None) or type(exc).__name__
        raise ConfigError(f"{path}: invalid YAML{where}: {problem}") from None
    if data is None:
        data = {}
    for override in overrides or []:
        data = _apply_override(data, override, str(path))
    return from_dict(cls, data, source=str(path))


def from_dict(cls: type[T], data: Any, *, source: str = "<config>") -> T:
    """Build dataclass `cls` from plain data, with the same strict checks as load_config."""
    return _convert(data, cls, source, key="")


def config_to_dict(config: Any) -> Any:
    """The inverse of from_dict, YAML-safe (paths as strings, enums as values)."""
    if dataclasses.is_dataclass(config):
        return {f.name: config_to_dict(getattr(config, f.name)) for f in dataclasses.fields(config)}
    if isinstance(config, dict):
        return {k: config_to_dict(v) for k, v in config.items()}
    if isinstance(config, (list, tuple)):
        return [config_to_dict(v) for v in config]
    if isinstance(config, pathlib.PurePath):
        return str(config)
    if isinstance(config, enum.Enum):
        return config.value
    return config


def _apply_override(data: Any, override: str, source: str) -> Any:
    if "=" not in override:
        raise ConfigError(f"{source}: override {override!r} is not of the form key=value")
    dotted, raw = override.split("=", 1)
    try:
        value = yaml.safe_load(raw)
    except yaml.YAMLError:
        value = raw
    if not isinstance(data, dict):
        raise ConfigError(f"{source}: top level must be a mapping, got {_type_name(data)}")
    node = data
    parts = dotted.strip().split(".")
    for part in parts[:-1]:
        node = node.setdefault(part, {})
        if not isinstance(node, dict):
            raise ConfigError(f"{source}: override {dotted!r}: '{part}' is not a mapping")
    node[parts[-1]] = value
    return data


def _join(key: str, part: str | int) -> str:
    if isinstance(part, int):
        return f"{key}[{part}]"
    return f"{key}.{part}" if key else part


def _type_name(value: Any) -> str:
    return "null" if value is None else type(value).__name__


def _fail(source: str, key: str, message: str) -> typing.NoReturn:
    raise ConfigError(f"{source}: key '{key or '<top level>'}': {message}")


def _convert(value: Any, tp: Any, source: str, key: str) -> Any:
    if tp is Any:
        return value
    if dataclasses.is_dataclass(tp) and isinstance(tp, type):
        return _convert_dataclass(value, tp, source, key)
    origin = get_origin(tp)
    if origin in (Union, types.UnionType):
        return _convert_union(value, get_args(tp), source, key)
    if origin is Literal:
        allowed = get_args(tp)
        if value not in allowed:
            _fail(source, key, f"expected one of {', '.join(repr(a) for a in allowed)}, got {value!r}")
        return value
    if origin in (list, tuple, dict):
        return _convert_container(value, tp, origin, source, key)
    if isinstance(tp, type) and issubclass(tp, enum.Enum):
        try:
            return tp(value)
        except ValueError:
            allowed = ", ".join(repr(m.value) for m in tp)
            _fail(source, key, f"expected one of {allowed}, got {value!r}")
    return _convert_scalar(value, tp, source, key)


def _convert_dataclass(value: Any, cls: type, source: str, key: str) -> Any:
    if not isinstance(value, dict):
        _fail(source, key, f"expected a mapping for {cls.__name__}, got {_type_name(value)}")
    hints = get_type_hints(cls)
    fields = {f.name: f for f in dataclasses.fields(cls) if f.init}
    for name in value:
        if name not in fields:
            close = difflib.get_close_matches(str(name), fields, n=1)
            hint = f" (did you mean '{close[0]}'?)" if close else ""
            raise ConfigError(f"{source}: unknown key '{_join(key, str(name))}'{hint}")
    kwargs = {}
    for name, field in fields.items():
        if name in value:
            kwargs[name] = _convert(value[name], hints[name], source, _join(key, name))
        elif field.default is dataclasses.MISSING and field.default_factory is dataclasses.MISSING:
            raise ConfigError(f"{source}: missing required key '{_join(key, name)}'")
    try:
        return cls(**kwargs)
    except (ValueError, TypeError) as exc:
        # __post_init__ validation: keep it one line and attributable.
        _fail(source, key, str(exc).splitlines()[0] if str(exc) else type(exc).__name__)


def _convert_union(value: Any, options: tuple, source: str, key: str) -> Any:
    if value is None:
        if type(None) in options:
            return None
        _fail(source, key, f"must not be null (expected {_describe_union(options)})")
    errors = []
    for option in options:
        if option is type(None):
            continue
        try:
            return _convert(value, option, source, key)
        except ConfigError as exc:
            errors.append(exc)
    if len(errors) == 1:
        raise errors[0]
    _fail(source, key, f"expected {_describe_union(options)}, got {_type_name(value)} {value!r}")


def _describe_union(options: tuple) -> str:
    return " or ".join(getattr(o, "__name__", str(o)) for o in options if o is not type(None))


def _convert_container(value: Any, tp: Any, origin: type, source: str, key: str) -> Any:
    args = get_args(tp)
    if origin is dict:
        if not isinstance(value, dict):
            _fail(source, key, f"expected a mapping, got {_type_name(value)}")
        key_tp, val_tp = args or (Any, Any)
        return {
            _convert(k, key_tp, source, _join(key, str(k))): _convert(v, val_tp, source, _join(key, str(k)))
            for k, v in value.items()
        }
    if not isinstance(value, list):
        _fail(source, key, f"expected a list, got {_type_name(value)}")
    if origin is tuple:
        if len(args) == 2 and args[1] is Ellipsis:
            return tuple(_convert(v, args[0], source, _join(key, i)) for i, v in enumerate(value))
        if args and len(args) != len(value):
            _fail(source, key, f"expected a list of {len(args)} items, got {len(value)}")
        return tuple(_convert(v, a, source, _join(key, i)) for i, (v, a) in enumerate(zip(value, args)))
    item_tp = args[0] if args else Any
    return [_convert(v, item_tp, source, _join(key, i)) for i, v in enumerate(value)]


def _convert_scalar(value: Any, tp: Any, source: str, key: str) -> Any:
    if tp is bool:
        if isinstance(value, bool):
            return value
    elif tp is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
    elif tp is float:
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return float(value)
        # PyYAML (YAML 1.1) reads `3e-4` (no dot) as a string; a float field takes it as the number meant
        if isinstance(value, str) and _SCIENTIFIC.fullmatch(value.strip()):
            return float(value)
    elif tp is str:
        if isinstance(value, str):
            return value
    elif isinstance(tp, type) and issubclass(tp, pathlib.PurePath):
        if isinstance(value, str) and value:
            return tp(value)
    else:
        raise TypeError(f"config type {tp!r} at '{key}' is not supported by the loader")
    _fail(source, key, f"expected {tp.__name__}, got {_type_name(value)} {value!r}")
