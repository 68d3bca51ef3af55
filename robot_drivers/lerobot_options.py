"""`options` of an arm or camera: fields of a LeRobot config class, checked as strictly as our own keys.

The options pass through to LeRobot unchanged, so their types are LeRobot's
declarations: a key that is not a field of the class is an error (with a
"did you mean"), and so is a value of the wrong type, when the config
loads, not when the robot connects after the run has started.
"""

from __future__ import annotations

import dataclasses
import difflib
import typing
from collections.abc import Iterable, Mapping
from typing import Any

from common.config import ConfigError, check_value

__all__ = ["check_options"]


def check_options(options: Mapping[str, Any], cls: type, *, reserved: Iterable[str] = (),
                  reserved_hint: Mapping[str, str] | None = None) -> None:
    """ValueError (one line, "options.KEY: ...") for an unknown, reserved or mistyped option of LeRobot's `cls`."""
    names = {f.name for f in dataclasses.fields(cls) if f.init}
    try:
        hints = typing.get_type_hints(cls)
    except Exception:  # noqa: BLE001 - a LeRobot annotation that does not resolve here: keys are still checked
        hints = {}
    for key, value in options.items():
        if key in reserved:
            where = (reserved_hint or {}).get(key, f"its own key ({key})")
            raise ValueError(f"options.{key}: set it as {where}, not in options")
        if key not in names:
            close = difflib.get_close_matches(str(key), sorted(names), n=1)
            hint = f" (did you mean '{close[0]}'?)" if close else ""
            raise ValueError(f"options.{key}: not a field of LeRobot's {cls.__name__}{hint}")
        if key in hints:
            _check_type(value, hints[key], key)


def _check_type(value: Any, tp: Any, key: str) -> None:
    try:
        check_value(value, tp, source="options", key=key)
    except TypeError:
        return  # a type our loader does not model (LeRobot's own classes): LeRobot checks it when building
    except ConfigError as exc:
        message = str(exc).split(f"key '{key}': ", 1)[-1]
        raise ValueError(f"options.{key}: {message}") from None
