"""One episode of the store into rerun (app.rerun_log): a saved .rrd or a spawned viewer.

The camera frames and the reward traces go on the same `frame` and `time`
timelines, so a reward curve lines up with the image it was computed from.
"""

from __future__ import annotations

import os
import shutil
import sys
from pathlib import Path
from typing import Any, TYPE_CHECKING

if TYPE_CHECKING:
    from recordings.store import EpisodeStore

__all__ = ["save_episode", "spawn_episode", "viewer_executable", "viewer_problem"]


def viewer_executable() -> str | None:
    """The rerun viewer installed beside this Python (the rerun-sdk wheel ships it), else one on PATH.

    The environment's own viewer first: its version matches the SDK that writes the data, and an app
    started as .venv/bin/lrm-robot without an activated venv has no .venv/bin on PATH.
    """
    local = Path(sys.executable).parent / "rerun"
    if local.is_file() and os.access(local, os.X_OK):
        return str(local)
    return shutil.which("rerun")


def viewer_problem(env: dict[str, str] | None = None, platform: str = sys.platform) -> str | None:
    """One line saying why the viewer cannot open here, or None when it can."""
    env = os.environ if env is None else env
    if platform.startswith("linux") and not (env.get("DISPLAY") or env.get("WAYLAND_DISPLAY")):
        return ("no display here (DISPLAY and WAYLAND_DISPLAY are unset), so the rerun viewer cannot open: "
                "press w to save the episode as .rrd and open it with `rerun FILE.rrd` where there is one")
    if viewer_executable() is None:
        return "the rerun viewer is not installed in this environment (pip install rerun-sdk); press w to save a .rrd"
    return None


def _recording(store: EpisodeStore, index: int) -> Any:
    import rerun as rr

    return rr.RecordingStream("lrm-robot", recording_id=f"{Path(store.path).name}-episode-{index}")


def save_episode(store: EpisodeStore, index: int, path: Path) -> int:
    """Write episode `index` to `path` (.rrd); returns the number of frames logged."""
    from app.rerun_log import log_episode

    path = Path(path)
    if path.suffix != ".rrd":
        raise ValueError(f"{path}: a rerun recording's name must end in .rrd")
    path.parent.mkdir(parents=True, exist_ok=True)
    recording = _recording(store, index)
    recording.save(str(path))
    try:
        return log_episode(recording, store, index)
    finally:
        recording.flush()
        recording.disconnect()


def spawn_episode(store: EpisodeStore, index: int) -> int:
    """Start the rerun viewer and stream episode `index` to it; returns the number of frames logged."""
    from app.rerun_log import log_episode

    import rerun as rr

    recording = _recording(store, index)
    rr.spawn(executable_path=viewer_executable(), recording=recording)
    try:
        return log_episode(recording, store, index)
    finally:
        recording.flush()
        recording.disconnect()
