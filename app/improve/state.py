"""The run's manifest: which steps of `lrm-robot improve` are finished, written atomically.

`OUT/state.json` maps a step name ("demos", "train-0", "rollouts-1", ...) to
what the step produced (counts, paths, seconds). A step is recorded only
once it is complete; a step that was interrupted is simply not there and is
continued from what is on disk (committed episodes in the store, the
trainer's checkpoint). Every write goes to a temporary file that is fsynced
and renamed over the old one, so a SIGKILL or a power loss leaves either
the old or the new manifest, never a torn one.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from app.errors import UsageError
from common.outputs import make_output_dir

__all__ = ["RunState", "in_run", "run_path"]

STATE_FILE = "state.json"
FORMAT = "lrm-robot-improve-state"
# 2: the fingerprint covers only the judge's own backend and is independent of where the project lives
FINGERPRINT_VERSION = 2


def in_run(path: str | Path, run_dir: Path) -> str:
    """`path` as a step records it: relative to the run directory when inside it, so that a run directory
    can be moved or copied whole; a path outside it stays as given."""
    p = Path(path)
    try:
        return str(p.resolve().relative_to(Path(run_dir).resolve()))
    except ValueError:
        return str(p)


def run_path(recorded: str | Path, run_dir: Path) -> Path:
    """A path a step recorded, resolved: relative ones against the run directory; absolute ones (older
    runs wrote those) as they are."""
    p = Path(recorded)
    return p if p.is_absolute() else Path(run_dir) / p


class RunState:
    """Finished steps of one run directory (module doc)."""

    def __init__(self, path: Path, fingerprint: str, steps: dict[str, Any] | None = None) -> None:
        self.path = path
        self.fingerprint = fingerprint
        self.steps: dict[str, Any] = steps or {}

    @classmethod
    def load_or_create(cls, out_dir: Path, fingerprint: str, name: str = STATE_FILE) -> RunState:
        """The run's state in `out_dir / name`; a run directory started with a different config is refused."""
        path = out_dir / name
        if not path.is_file():
            make_output_dir(out_dir, "run")  # marked: `improve --fresh` may delete it
            state = cls(path, fingerprint)
            state.save()
            return state
        try:
            data = json.loads(path.read_text())
        except ValueError as exc:
            raise UsageError(f"{path} is unreadable ({exc}); move the run directory away to start over") from None
        if data.get("format") != FORMAT:
            raise UsageError(f"{path} is not an improve-run state file")
        if data.get("fingerprint_version", 1) != FINGERPRINT_VERSION:
            raise UsageError(f"{out_dir} was started by an earlier lrm-robot whose config fingerprint this version "
                             "computes differently (README, 'Resuming'); start it again with --fresh, or choose "
                             "another output_dir")
        if data.get("fingerprint") != fingerprint:
            raise UsageError(
                f"{out_dir} holds a run started with a different config (only `rounds` may change when "
                "resuming); choose another output_dir"
            )
        return cls(path, fingerprint, dict(data.get("steps") or {}))

    def done(self, step: str) -> bool:
        return step in self.steps

    def get(self, step: str) -> Any:
        return self.steps.get(step)

    def mark(self, step: str, info: Any) -> None:
        self.steps[step] = info
        self.save()

    def save(self) -> None:
        data = {"format": FORMAT, "fingerprint_version": FINGERPRINT_VERSION, "fingerprint": self.fingerprint,
                "steps": self.steps}
        tmp = self.path.with_name(self.path.name + ".tmp")
        with open(tmp, "w") as f:
            f.write(json.dumps(data, indent=2, default=str) + "\n")
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, self.path)
        fd = os.open(self.path.parent, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
