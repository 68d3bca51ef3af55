"""YAML files into typed dataclasses, strictly.

Every command takes its settings from a YAML file parsed into the command's
config dataclass. A config is often written by hand before hours of robot
time, so anything suspicious is an error before work starts: an unknown key
(a typo would otherwise silently fall back to a default), a wrong type, a
missing required key, a missing file. Each error is one line that names the
file and the dotted key.

A key may name another config file (a reward backend, a robot): declared with
`config_file(cls)`, its value is a `ConfigFile`, read and checked when the config
naming it is, so that a broken file fails before any work starts too.
"""

from __future__ import annotations

import dataclasses
import difflib
import enum
import pathlib
import re
import types
import typing
from collections.abc import Callable, Mapping, Sequence
from typing import Any, Generic, Literal, TypeVar, Union, get_args, get_origin, get_type_hints

import yaml

_SCIENTIFIC = re.compile(r"[-+]?(\d+\.?\d*|\.\d+)[eE][-+]?\d+")

T = TypeVar("T")


class ConfigError(Exception):
    """A config could not be loaded; the message is a single line naming file and key."""


class ConfigFile(Generic[T]):
    """The value of a key that names another config file: the path as written, and that file loaded.

    The loader reads a file named in the config (or by an override) when it reads the
    config (see `config_file`); a default path, and a ConfigFile built in code, are read
    at the first use of `config`. An empty path names no file (false in a condition),
    for the holder's own check to report.
    As a path (str(), os.fspath, `config_to_dict`) it is the path as written, so what
    a run records of its config is the same as when the key held a plain string.
    """

    def __init__(self, path: str, cls: type[T] | Callable[[], type[T]], overrides: Sequence[str] = ()) -> None:
        self.path = path
        self.overrides = tuple(overrides)
        # a function returning the class stands for a class whose package is imported only when needed
        self._cls = cls
        self._config: T | None = None

    @property
    def config_class(self) -> type[T]:
        return self._cls if isinstance(self._cls, type) else self._cls()

    @property
    def config(self) -> T:
        """The file, strictly loaded with `overrides` applied (ConfigError naming the file and key)."""
        if self._config is None:
            if not self.path:
                raise ValueError("no config file is named")
            self._config = load_config(self.path, self.config_class, list(self.overrides))
        return self._config

    def load(self) -> ConfigFile[T]:
        """Read the file now (if not read yet); the same ConfigFile."""
        self.config  # noqa: B018
        return self

    def __str__(self) -> str:
        return self.path

    def __fspath__(self) -> str:
        return self.path

    def __bool__(self) -> bool:
        return bool(self.path)

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, ConfigFile):
            return NotImplemented
        return (self.path, self.overrides) == (other.path, other.overrides)

    def __hash__(self) -> int:
        return hash((self.path, self.overrides))

    def __repr__(self) -> str:
        return f"ConfigFile({self.path!r})"


@dataclasses.dataclass(frozen=True)
class _FileKey:
    cls: Any
    overrides: str | None


_FILE_KEY = "common.config.file"


def config_file(cls: type[T] | Callable[[], type[T]], default: str | None = "", *, overrides: str | None = None) -> Any:
    """A dataclass field holding a `ConfigFile` of `cls`: annotate it `ConfigFile[cls]` (`| None` where null is allowed).

    `default` is the path when the key is not given (read at its first use; "" names
    no file; None: the field is None). `overrides` names a list[str] field of the same
    dataclass whose 'dotted.key=value' strings are applied to the file.
    """
    if default is None:
        factory: Callable[[], Any] = lambda: None  # noqa: E731
    else:
        factory = lambda: ConfigFile(default, cls)  # noqa: E731
    return dataclasses.field(default_factory=factory, metadata={_FILE_KEY: _FileKey(cls, overrides)})


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
    """The inverse of from_dict, YAML-safe (paths as strings, enums as values, a ConfigFile as its path)."""
    if isinstance(config, ConfigFile):
        return config.path
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
        if _FILE_KEY in field.metadata:
            continue
        if name in value:
            kwargs[name] = _convert(value[name], hints[name], source, _join(key, name))
        elif field.default is dataclasses.MISSING and field.default_factory is dataclasses.MISSING:
            raise ConfigError(f"{source}: missing required key '{_join(key, name)}'")
    for name, field in fields.items():
        if _FILE_KEY in field.metadata:  # after the other keys: a file may take its overrides from one
            kwargs[name] = _load_file(value, field, hints[name], kwargs, fields, source, _join(key, name))
    try:
        return cls(**kwargs)
    except (ValueError, TypeError) as exc:
        # __post_init__ validation: keep it one line and attributable.
        _fail(source, key, _first_line(exc))


def _first_line(exc: BaseException) -> str:
    return str(exc).splitlines()[0] if str(exc) else type(exc).__name__


def _default(field: dataclasses.Field) -> Any:
    if field.default_factory is not dataclasses.MISSING:
        return field.default_factory()
    return field.default


def _load_file(value: dict, field: dataclasses.Field, hint: Any, siblings: dict[str, Any], fields: dict[str, Any],
               source: str, key: str) -> ConfigFile | None:
    """The ConfigFile of a key naming a file: read now if the key is given, at its first use if defaulted.

    A default path names a shipped file relative to where the command runs, which a
    config that does not use it (a PPO run on the env's reward) must not need.
    """
    spec: _FileKey = field.metadata[_FILE_KEY]
    given = field.name in value
    raw = value[field.name] if given else _default(field)
    if isinstance(raw, ConfigFile):
        raw = raw.path
    if raw is None:
        if type(None) in get_args(hint):
            return None
        _fail(source, key, "must not be null (expected the path of a config file)")
    if not isinstance(raw, str):
        _fail(source, key, f"expected the path of a config file, got {_type_name(raw)} {raw!r}")
    overrides: Sequence[str] = ()
    if spec.overrides is not None:
        overrides = siblings[spec.overrides] if spec.overrides in siblings else _default(fields[spec.overrides])
    file = ConfigFile(raw, spec.cls, overrides)
    if not raw or not given:
        return file
    try:
        return file.load()  # a ConfigError names the file and its key, and passes through
    except (ImportError, ValueError) as exc:  # the class could not be imported
        _fail(source, key, _first_line(exc))


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
    mappings = [e for o, e in zip([o for o in options if o is not type(None)], errors) if dataclasses.is_dataclass(o)]
    if isinstance(value, dict) and len(mappings) == 1:
        raise mappings[0]  # a mapping was meant for the one dataclass: its error names the bad key
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


def config_type(path: str | pathlib.Path, default: Any = None) -> Any:
    """The config's `type` key, read before the strict load that needs to know the dataclass.

    `default` when the file has none or cannot be read (load_config then reports the file or YAML problem).
    """
    try:
        data = yaml.safe_load(pathlib.Path(path).read_text())
    except (OSError, yaml.YAMLError):
        return default
    return data.get("type", default) if isinstance(data, dict) else default


def dataclass_from_json(cls: type[T], data: Mapping[str, Any], what: str) -> T:
    """`cls(**data)` for a config saved inside a checkpoint; keys it does not know are a ValueError.

    A checkpoint written by a newer version would otherwise lose settings silently.
    """
    known = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(data) - known)
    if unknown:
        raise ValueError(f"unknown {what} config keys: {', '.join(unknown)}")
    return cls(**dict(data))
