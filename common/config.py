"""YAML files into typed dataclasses, strictly.

Every command takes its settings from a YAML file parsed into the command's
config dataclass. A config is often written by hand before hours of robot
time, so anything suspicious is an error before work starts: an unknown key
(a typo would otherwise silently fall back to a default), a wrong type, a
missing required key, a missing file. Each error is one line that names the
file and the dotted key.

Numbers are checked for range as they are read (`common.numbers`: finite
floats, 32-bit ints, and a field's own `Range`), and the text itself for what
`safe_load` lets through (`common.yaml_text`: non-UTF-8 bytes, a repeated key,
deep nesting).

A key may name another config file (a reward backend, a robot): declared with
`config_file(cls)`, its value is a `ConfigFile`, read and checked when the config
naming it is, so that a broken file fails before any work starts too.

An error caused by an override names the override as the user wrote it (an
`Override` remembers that: `--set train.lr=abc`, `--rounds -1`), not the file
it was applied to. A key renamed in a dataclass's `RENAMED_KEYS` (old -> new)
still works in a file and an override, with one warning line.
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
from typing import Annotated, Any, Generic, Literal, TypeVar, Union, get_args, get_origin, get_type_hints

from common.deprecation import warn_deprecated
from common.numbers import Range, default_range
from common.yaml_text import YamlProblem, parse_yaml, read_yaml_file

_SCIENTIFIC = re.compile(r"[-+]?(\d+\.?\d*|\.\d+)[eE][-+]?\d+")

T = TypeVar("T")


class ConfigError(Exception):
    """A config could not be loaded; the message is a single line naming file and key."""

    def __init__(self, message: str, *, source: str | None = None, key: str | None = None,
                 problem: str | None = None, whole: bool = False) -> None:
        # a key or value from the file may hold a line break; the message stays one line
        super().__init__(message.replace("\r", "\\r").replace("\n", "\\n"))
        self.source, self.key, self.problem = source, key, problem  # set for a value's error (`_fail`)
        self.whole = whole  # about the mapping at `key` as a whole (its dataclass's own check), not one value


class Override(str):
    """A 'dotted.key=value' override that remembers how it was given (`shown`), for the errors it causes.

    The CLI makes one per `--set KEY=VALUE` (shown as `--set KEY=VALUE`) and per
    flag that stands for a config key (shown as `--rounds 3`); a plain string is
    shown as an override of the file it applies to.
    """

    shown: str

    def __new__(cls, text: str, shown: str) -> Override:
        override = super().__new__(cls, text)
        override.shown = shown
        return override


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
    source = "command line" if path is None else str(path)
    data: Any = {} if path is None else _read(pathlib.Path(path))
    if data is None:
        data = {}
    data = _rename_old_keys(data, cls, source)
    overrides = [_renamed_override(cls, override, source) for override in overrides or []]
    for override in overrides:
        try:
            data = _apply_override(data, override)
        except ConfigError as exc:
            raise ConfigError(f"{_shown(override, source)}: {exc}") from None
    try:
        return from_dict(cls, data, source=source)
    except ConfigError as exc:
        raise _blame_override(exc, source, overrides) from None


def _shown(override: str, source: str) -> str:
    """How an override is named in a message: as given on the command line, else as an override of `source`."""
    return getattr(override, "shown", None) or f"{source}: override {override}"


def _blame_override(exc: ConfigError, source: str, overrides: list[str]) -> ConfigError:
    """The error of a value that an override (a flag, `--set`) put there names the override, not the file.

    An override is to blame when the refused key is the one it set, lies inside
    what it set, or is an unknown key it named; for a dataclass's own check of
    its keys together, when that check's message names the override's key.
    """
    if exc.source != source or exc.key is None:
        return exc  # another file's error, or not about one key
    for override in reversed(overrides):  # the last override of a key is the one that counts
        dotted = override.split("=", 1)[0].strip()
        inside = exc.key.startswith((dotted + ".", dotted + "["))
        under = exc.key == "" or dotted == exc.key or dotted.startswith((exc.key + ".", exc.key + "["))
        leaf = re.split(r"[.\[]", dotted)[-1]
        if (inside or (under and not exc.whole) or
                (under and exc.whole and re.search(rf"\b{re.escape(leaf)}\b", exc.problem or ""))):
            detail = str(exc).removeprefix(f"{source}: ")
            return ConfigError(f"{_shown(override, source)}: {detail}", source=source, key=exc.key,
                               problem=exc.problem, whole=exc.whole)
    return exc


def _rename_old_keys(data: Any, tp: Any, source: str, key: str = "") -> Any:
    """`data` with every old key name (a dataclass's RENAMED_KEYS) replaced by the new one, warning once each."""
    cls = _dataclass_of(tp)
    if cls is None or not isinstance(data, dict):
        return data
    data = dict(data)
    for old, new in getattr(cls, "RENAMED_KEYS", {}).items():
        if old in data:
            if new in data:
                raise ConfigError(f"{source}: keys '{_join(key, old)}' and '{_join(key, new)}' are the same key "
                                  f"(the first is its old name); keep '{_join(key, new)}'")
            warn_deprecated(f"{source}: key '{_join(key, old)}' is deprecated; use '{_join(key, new)}'")
            data[new] = data.pop(old)
    hints = get_type_hints(cls, include_extras=True)
    return {name: _rename_old_keys(value, hints[name], source, _join(key, name)) if name in hints else value
            for name, value in data.items()}


def _renamed_override(cls: type, override: str, source: str) -> str:
    """`override` with an old key name on its path replaced by the new one (one warning line naming it)."""
    if "=" not in override:
        return override  # refused as such when applied
    dotted, value = override.split("=", 1)
    parts, tp = dotted.strip().split("."), cls
    for i, part in enumerate(parts):
        current = _dataclass_of(tp)
        if current is None:
            break
        new = getattr(current, "RENAMED_KEYS", {}).get(part)
        if new is not None:
            warn_deprecated(f"{_shown(override, source)}: key '{'.'.join(parts[:i + 1])}' is deprecated; "
                            f"use '{'.'.join([*parts[:i], new])}'")
            parts[i] = part = new
        tp = get_type_hints(current, include_extras=True).get(part)
    text = f"{'.'.join(parts)}={value}"
    return Override(text, _shown(override, source)) if text != override else override


def _dataclass_of(tp: Any) -> type | None:
    """The dataclass a field of type `tp` holds (through Annotated and `| None`), or None."""
    while get_origin(tp) is Annotated:
        tp = get_args(tp)[0]
    if get_origin(tp) in (Union, types.UnionType):
        options = [a for a in get_args(tp) if a is not type(None)]
        tp = options[0] if len(options) == 1 else None
    return tp if isinstance(tp, type) and dataclasses.is_dataclass(tp) else None


def _read(path: pathlib.Path) -> Any:
    if not path.exists():
        raise ConfigError(f"{path}: config file not found")
    if not path.is_file():
        raise ConfigError(f"{path}: is not a file (a config is a YAML file)")
    try:
        return read_yaml_file(path)
    except YamlProblem as exc:
        raise ConfigError(f"{path}: {exc}") from None
    except OSError as exc:
        raise ConfigError(f"{path}: cannot be read ({exc.strerror or type(exc).__name__})") from None


def from_dict(cls: type[T], data: Any, *, source: str = "<config>") -> T:
    """Build dataclass `cls` from plain data, with the same strict checks as load_config."""
    return _convert(data, cls, source, key="")


def check_value(value: Any, tp: Any, *, source: str, key: str) -> Any:
    """`value` checked and converted as a config field of type `tp` would be (ConfigError naming source and key).

    For keys whose type is declared elsewhere (a LeRobot config's fields passed through as `options`);
    TypeError when `tp` is a type the loader does not handle.
    """
    return _convert(value, tp, source, key)


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


def _apply_override(data: Any, override: str) -> Any:
    """`data` with `override` applied; a ConfigError saying what is wrong with it (the caller names it)."""
    if "=" not in override:
        raise ConfigError("is not of the form key=value")
    dotted, raw = override.split("=", 1)
    try:
        value = parse_yaml(raw)
    except YamlProblem:
        value = raw  # not YAML: the text itself, for a str key (a key of another type reports it)
    if not isinstance(data, dict):
        raise ConfigError(f"the config's top level must be a mapping, got {_type_name(data)}")
    node = data
    parts = dotted.strip().split(".")
    for part in parts[:-1]:
        node = node.setdefault(part, {})
        if not isinstance(node, dict):
            raise ConfigError(f"'{part}' is not a mapping")
    node[parts[-1]] = value
    return data


def _join(key: str, part: str | int) -> str:
    if isinstance(part, int):
        return f"{key}[{part}]"
    return f"{key}.{part}" if key else part


def _type_name(value: Any) -> str:
    return "null" if value is None else type(value).__name__


def _show(value: Any, limit: int = 80) -> str:
    """`repr(value)`, cut short: an error line names a value, it does not reprint a megabyte of it."""
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _fail(source: str, key: str, message: str, *, whole: bool = False) -> typing.NoReturn:
    raise ConfigError(f"{source}: key '{key or '<top level>'}': {message}", source=source, key=key, problem=message,
                      whole=whole)


def _convert(value: Any, tp: Any, source: str, key: str) -> Any:
    if tp is Any:
        return value
    if dataclasses.is_dataclass(tp) and isinstance(tp, type):
        return _convert_dataclass(value, tp, source, key)
    origin = get_origin(tp)
    if origin in (Union, types.UnionType):
        return _convert_union(value, get_args(tp), source, key)
    if origin is Annotated:
        return _convert_annotated(value, tp, source, key)
    if origin is Literal:
        allowed = get_args(tp)
        if value not in allowed:
            _fail(source, key, f"expected one of {', '.join(repr(a) for a in allowed)}, got {_show(value)}")
        return value
    if origin in (list, tuple, dict):
        return _convert_container(value, tp, origin, source, key)
    if isinstance(tp, type) and issubclass(tp, enum.Enum):
        try:
            return tp(value)
        except ValueError:
            allowed = ", ".join(repr(m.value) for m in tp)
            _fail(source, key, f"expected one of {allowed}, got {_show(value)}")
    if tp in (int, float):
        return _check_range(_convert_scalar(value, tp, source, key), default_range(tp), source, key)
    return _convert_scalar(value, tp, source, key)


def _convert_annotated(value: Any, tp: Any, source: str, key: str) -> Any:
    """`Annotated[int | float, Range(...)]`: the number, checked against the field's own bounds."""
    base, *extras = get_args(tp)
    ranges = [extra for extra in extras if isinstance(extra, Range)]
    if not ranges:
        return _convert(value, base, source, key)
    if base not in (int, float):
        raise TypeError(f"a Range at '{key}' bounds a {base!r}; only int and float fields take one")
    number = _convert_scalar(value, base, source, key)
    for bounds in ranges:
        _check_range(number, bounds, source, key)
    return number


def _check_range(number: Any, bounds: Range, source: str, key: str) -> Any:
    problem = bounds.problem(number)
    if problem:
        _fail(source, key, problem)
    return number


def _convert_dataclass(value: Any, cls: type, source: str, key: str) -> Any:
    if not isinstance(value, dict):
        _fail(source, key, f"expected a mapping for {cls.__name__}, got {_type_name(value)}")
    hints = get_type_hints(cls, include_extras=True)
    fields = {f.name: f for f in dataclasses.fields(cls) if f.init}
    for name in value:
        if name not in fields:
            close = difflib.get_close_matches(str(name), fields, n=1)
            hint = f" (did you mean '{close[0]}'?)" if close else ""
            unknown = _join(key, str(name))
            raise ConfigError(f"{source}: unknown key '{unknown}'{hint}", source=source, key=unknown,
                              problem=f"unknown key '{unknown}'{hint}")
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
        _fail(source, key, _first_line(exc), whole=True)


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
        _fail(source, key, f"expected the path of a config file, got {_type_name(raw)} {_show(raw)}")
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
    # the one option that took the value's type and refused it for another reason (out of range, a bad
    # list item, an unknown key inside) names the real problem; the others only say "expected <type>"
    mismatch = f"{source}: key '{key or '<top level>'}': expected "
    specific = [e for e in errors if not str(e).startswith(mismatch)]
    if len(specific) == 1:
        raise specific[0]
    mappings = [e for o, e in zip([o for o in options if o is not type(None)], errors) if dataclasses.is_dataclass(o)]
    if isinstance(value, dict) and len(mappings) == 1:
        raise mappings[0]  # a mapping was meant for the one dataclass: its error names the bad key
    _fail(source, key, f"expected {_describe_union(options)}, got {_type_name(value)} {_show(value)}")


def _describe_union(options: tuple) -> str:
    def name(option: Any) -> str:
        if get_origin(option) is Annotated:
            option = get_args(option)[0]
        return getattr(option, "__name__", str(option))

    return " or ".join(name(o) for o in options if o is not type(None))


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
        if isinstance(value, str) and _SCIENTIFIC.fullmatch(value.strip()):  # `1e23`: a number, not text
            _fail(source, key, f"expected int, got {value} (write a whole number without an exponent)")
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
    _fail(source, key, f"expected {tp.__name__}, got {_type_name(value)} {_show(value)}")


def config_type(path: str | pathlib.Path, default: Any = None) -> Any:
    """The config's `type` key, read before the strict load that needs to know the dataclass.

    `default` when the file has none or cannot be read (load_config then reports the file or YAML problem).
    """
    try:
        data = read_yaml_file(path)
    except (OSError, YamlProblem):
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
