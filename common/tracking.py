"""Experiment tracking: where a run's metrics go, as `--report-to` (or a config's `report_to`) says.

- `jsonl` (the default): OUTPUT/metrics.jsonl, one JSON object per logged step,
  `{"step": ..., <metrics>, "wall_time": <Unix seconds>}` (NaN written as null);
- `tensorboard`: event files in OUTPUT/tensorboard/ (torch.utils.tensorboard;
  `tensorboard --logdir OUTPUT` shows them);
- `wandb`: a Weights & Biases run (project `$WANDB_PROJECT`, default
  `lrm-robot`), only where `wandb` is installed; its id is kept in
  OUTPUT/wandb-run-id so that a resumed run continues the same W&B run;
- `none`: nothing.

Several may be given (`jsonl tensorboard`, or `jsonl,tensorboard`).
`parse_report_to` checks the names, and that the packages they need import,
before any work starts.

Resuming: a tracker opened with `resume_step=S` (the step the run continues
after) first drops the rows of metrics.jsonl with a step above S, which the
resumed run logs again, so no step appears twice; TensorBoard purges its
events after S the same way. `fresh=True` (a run that always starts over)
empties metrics.jsonl first. Without either, rows are appended.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import math
import numbers
import os
import time
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)

__all__ = ["DEFAULT_REPORT_TO", "REPORTERS", "ReportTo", "Tracker", "make_tracker", "parse_report_to", "read_rows",
           "report_to_field"]

REPORTERS = ("jsonl", "tensorboard", "wandb")
DEFAULT_REPORT_TO = ("jsonl",)
JSONL = "metrics.jsonl"
TENSORBOARD_DIR = "tensorboard"
WANDB_ID = "wandb-run-id"

# A config's `report_to` key: a list of names, or one name or comma list; `parse_report_to` makes it a list.
ReportTo = list[str] | str

_NEEDS = {"tensorboard": ("tensorboard", "tensorboard"), "wandb": ("wandb", "wandb")}  # name -> (module, pip name)


def parse_report_to(values: str | Iterable[str] | None) -> list[str]:
    """The reporters `values` names (each may be a comma list), in order, once each; `none` alone: [].

    ValueError (one line) for an unknown name, or for one whose package does not import
    ("wandb is not installed (pip install wandb)").
    """
    if values is None:
        return list(DEFAULT_REPORT_TO)
    items = [values] if isinstance(values, str) else list(values)
    names: list[str] = []
    for item in items:
        for part in str(item).split(","):
            name = part.strip().lower()
            if name and name not in names:
                names.append(name)
    if "none" in names:
        if len(names) > 1:
            raise ValueError(f"'none' reports nothing; it cannot be combined with {', '.join(n for n in names if n != 'none')}")
        return []
    unknown = [n for n in names if n not in REPORTERS]
    if unknown:
        raise ValueError(f"unknown reporter {unknown[0]!r}; expected some of {', '.join(REPORTERS)} (or none)")
    for name in names:
        if name in _NEEDS:
            module, package = _NEEDS[name]
            if not _importable(module):
                raise ValueError(f"{name} is not installed (pip install {package})")
    return names


def report_to_field() -> Any:
    """The `report_to` field of a config dataclass: `jsonl` by default (normalise it with `parse_report_to`)."""
    return dataclasses.field(default_factory=lambda: list(DEFAULT_REPORT_TO))


def _importable(module: str) -> bool:
    import importlib.util

    try:
        return importlib.util.find_spec(module) is not None
    except (ImportError, ValueError):
        return False


def read_rows(path: str | os.PathLike[str]) -> list[dict[str, Any]]:
    """The rows of a metrics.jsonl (a torn last line, from a killed run, is skipped)."""
    path = Path(path)
    if not path.is_file():
        return []
    rows = []
    for line in path.read_text().splitlines():
        if line.strip():
            try:
                rows.append(json.loads(line))
            except ValueError:
                continue
    return rows


def _torn(path: Path) -> bool:
    """Whether the file's last line was cut short (a run killed mid-write): appending would join it."""
    with path.open("rb") as f:
        f.seek(0, os.SEEK_END)
        if f.tell() == 0:
            return False
        f.seek(-1, os.SEEK_END)
        return f.read(1) != b"\n"


def _clean(value: Any) -> Any:
    """JSON-safe: NaN and infinities as None, numpy scalars as Python numbers, containers recursively."""
    if hasattr(value, "item") and callable(value.item) and getattr(value, "ndim", 1) == 0:
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, Mapping):
        return {str(k): _clean(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_clean(v) for v in value]
    if isinstance(value, os.PathLike):
        return os.fspath(value)
    return value


def _scalars(metrics: Mapping[str, Any], prefix: str = "") -> dict[str, float]:
    """The numbers of `metrics` (nested mappings flattened as `a/b`); what TensorBoard and W&B plot."""
    out: dict[str, float] = {}
    for key, value in metrics.items():
        name = f"{prefix}{key}"
        if isinstance(value, Mapping):
            out.update(_scalars(value, name + "/"))
        elif isinstance(value, bool):
            out[name] = float(value)
        elif isinstance(value, numbers.Real) and math.isfinite(value):
            out[name] = float(value)
    return out


class Tracker:
    """Sends each `log(metrics, step)` to every reporter of `report_to` (module doc); a context manager."""

    def __init__(self, report_to: Iterable[str], output_dir: str | os.PathLike[str], *, run_name: str | None = None,
                 config: Mapping[str, Any] | None = None, resume_step: int | None = None,
                 fresh: bool = False) -> None:
        self.report_to = list(report_to)
        self.output_dir = Path(output_dir)
        self.path = self.output_dir / JSONL
        self.run_name = run_name or self.output_dir.name
        self._tb: Any = None
        self._wandb: Any = None
        if not self.report_to:
            return
        self.output_dir.mkdir(parents=True, exist_ok=True)
        if "jsonl" in self.report_to:
            if fresh:
                self.path.write_text("")
            elif self.path.is_file() and (resume_step is not None or _torn(self.path)):
                kept = [r for r in read_rows(self.path)
                        if resume_step is None or not isinstance(r.get("step"), int) or r["step"] <= resume_step]
                tmp = self.path.with_suffix(".jsonl.tmp")
                tmp.write_text("".join(json.dumps(r) + "\n" for r in kept))
                os.replace(tmp, self.path)
        if "tensorboard" in self.report_to:
            from torch.utils.tensorboard import SummaryWriter

            purge = None if resume_step is None or fresh else resume_step + 1
            self._tb = SummaryWriter(log_dir=str(self.output_dir / TENSORBOARD_DIR), purge_step=purge)
        if "wandb" in self.report_to:
            self._wandb = self._start_wandb(config, fresh)

    def _start_wandb(self, config: Mapping[str, Any] | None, fresh: bool) -> Any:
        import wandb

        id_file = self.output_dir / WANDB_ID
        run_id = None if fresh or not id_file.is_file() else id_file.read_text().strip() or None
        run = wandb.init(project=os.environ.get("WANDB_PROJECT", "lrm-robot"), name=self.run_name,
                         dir=str(self.output_dir), config=_clean(dict(config or {})), id=run_id, resume="allow")
        if getattr(run, "id", None):
            id_file.write_text(str(run.id) + "\n")
        return run

    @property
    def enabled(self) -> bool:
        return bool(self.report_to)

    def log(self, metrics: Mapping[str, Any], step: int) -> None:
        """One step's metrics to every reporter (TensorBoard and W&B get the numbers)."""
        if not self.report_to:
            return
        step = int(step)
        if "jsonl" in self.report_to:
            row = {"step": step, **_clean(dict(metrics)), "wall_time": round(time.time(), 3)}
            with self.path.open("a") as f:
                f.write(json.dumps(row) + "\n")
        plotted = _scalars(metrics) if self._tb is not None or self._wandb is not None else {}
        if self._tb is not None:
            for key, value in plotted.items():
                self._tb.add_scalar(key, value, step)
            self._tb.flush()
        if self._wandb is not None and plotted:
            self._wandb.log(plotted, step=step)

    def close(self) -> None:
        if self._tb is not None:
            self._tb.close()
            self._tb = None
        if self._wandb is not None:
            self._wandb.finish()
            self._wandb = None

    def __enter__(self) -> Tracker:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def make_tracker(report_to: str | Iterable[str] | None, output_dir: str | os.PathLike[str],
                 run_name: str | None = None, **kwargs: Any) -> Tracker:
    """A `Tracker` for `report_to` (names checked by `parse_report_to`) writing into `output_dir`."""
    return Tracker(parse_report_to(report_to), output_dir, run_name=run_name, **kwargs)
