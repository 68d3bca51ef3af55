"""Bounds of a config's numbers, declared on the field and checked by `common.config` as the number is parsed.

A number in a config decides hours of work: a NaN learning rate used to
surface as a NaN loss minutes into training, `rollouts_per_round: 1e23` as a
run that never ends, `seed: -1` as a simulator error mid-run. So every number
is checked where it is read:

- every float must be finite (no `.nan`, `.inf`) and every int fit in 32 bits,
  unless the field declares its own `Range`;
- a field declares its bounds with `Annotated`:

      seed: Seed = 0
      rollouts_per_round: Count = 60
      lr: LearningRate = 3e-4
      threshold: Annotated[float, Range(0, 1)] = 0.5

The aliases below are the bounds most fields share; their upper bounds are far
above any real run and far below a typo's.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Annotated

__all__ = ["Count", "Fraction", "LearningRate", "NonNegative", "NonNegativeFloat", "Pixels", "Positive",
           "PositiveFloat", "Range", "Seed", "Steps", "Threads", "default_range"]

INT32_MAX = 2**31 - 1


@dataclasses.dataclass(frozen=True)
class Range:
    """Bounds of an int or float field: `Annotated[int, Range(1, 1000)]` (it replaces the default bounds)."""

    low: float | None = None
    high: float | None = None
    low_open: bool = False  # `low` itself is excluded (a learning rate is more than 0)
    finite: bool = True  # False: .inf and .nan are accepted (a field where .inf means "no limit")

    def problem(self, value: int | float) -> str | None:
        """What is wrong with `value` (one line), or None when it is in range."""
        if isinstance(value, float) and not math.isfinite(value):
            return f"must be a finite number, got {value}" if self.finite else None
        if self.low is not None and (value < self.low or (self.low_open and value == self.low)):
            return f"must be {'more than' if self.low_open else 'at least'} {_number(self.low)}, got {_number(value)}"
        if self.high is not None and value > self.high:
            return f"must be at most {_number(self.high)}, got {_number(value)}"
        return None


def _number(value: int | float) -> str:
    if isinstance(value, float) and value.is_integer() and abs(value) < 1e16:
        return str(int(value))
    return f"{value:g}" if isinstance(value, float) else str(value)


def default_range(tp: type) -> Range:
    """The bounds of a field that declares none: finite floats; ints that fit 32 bits (no overflow downstream)."""
    return Range(-INT32_MAX - 1, INT32_MAX) if tp is int else Range()


Seed = Annotated[int, Range(0, INT32_MAX)]  # numpy, torch and ManiSkill take any of these; none takes -1
Count = Annotated[int, Range(1, 1_000_000)]  # episodes, rounds, rollouts, envs, batch items
Steps = Annotated[int, Range(1, 1_000_000_000)]  # optimiser or env steps
Positive = Annotated[int, Range(1, INT32_MAX)]
NonNegative = Annotated[int, Range(0, INT32_MAX)]
Pixels = Annotated[int, Range(1, 4096)]
Threads = Annotated[int, Range(1, 1024)]  # a camera or model image side; 99999 would hang the renderer
PositiveFloat = Annotated[float, Range(0, low_open=True)]
NonNegativeFloat = Annotated[float, Range(0)]
LearningRate = Annotated[float, Range(0, 1, low_open=True)]
Fraction = Annotated[float, Range(0, 1)]
