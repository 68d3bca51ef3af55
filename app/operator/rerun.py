"""One episode of the store into rerun (app.rerun_log): a saved .rrd or a spawned viewer.

The camera frames and the reward traces go on the same `frame` and `time`
timelines, so a reward curve lines up with the image it was computed from.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any, TYPE_CHECKING

from app.rerun_viewer import missing_viewer, viewer_executable

if TYPE_CHECKING:
    from recordings.store import EpisodeStore

__all__ = ["save_episode", "spawn_episode", "viewer_executable", "viewer_problem"]


def viewer_problem(env: dict[str, str] | None = None, platform: str = sys.platform) -> str | None:
    """One line saying why the viewer cannot open here and what the operator can do instead, or None."""
    reason = missing_viewer(env, platform)
    if reason is None:
        return None
    return f"{reason}: press w to save the episode as .rrd and open it with `rerun FILE.rrd` where there is a display"


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
    """Start the rerun viewer (on localhost) and stream episode `index` to it; returns the number of frames logged."""
    from app.rerun_log import log_episode
    from app.rerun_viewer import spawn_viewer

    recording = _recording(store, index)
    spawn_viewer(recording)  # bound to localhost, unlike rerun's own spawn()
    try:
        return log_episode(recording, store, index)
    finally:
        recording.flush()
        recording.disconnect()
