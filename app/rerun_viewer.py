"""The rerun viewer the app starts (`view --spawn`, the operator's `v` key): local, and checked before it starts.

rerun's own `spawn()` runs `rerun --port 9876` and the viewer's gRPC server
then listens on every interface (`--bind` defaults to 0.0.0.0 in rerun 0.33):
anyone on the network could stream into it or read what it shows. The viewer
is started here instead, with `--bind 127.0.0.1`, and the recording
connects to it as `spawn()` would. A viewer already listening on the port is
reused, as `spawn()` does.

`missing_viewer()` says why no viewer can open here (no display to open a
window on, no `rerun` executable); `check_viewer()` turns that into a
`ViewerError` line naming what to do instead, before any work starts.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import time
from typing import Any

__all__ = ["HOST", "PORT", "ViewerError", "check_viewer", "missing_viewer", "spawn_viewer", "viewer_command",
           "viewer_executable"]

HOST = "127.0.0.1"  # only this machine reaches the viewer
PORT = 9876  # rerun's default, so a viewer the user opened by hand is found too
START_TIMEOUT_S = 20.0


class ViewerError(Exception):
    """The rerun viewer cannot be started here; one line saying why and what to do instead."""


def viewer_executable() -> str | None:
    """The rerun viewer installed beside this Python (the rerun-sdk wheel ships it), else one on PATH.

    The environment's own viewer first: its version matches the SDK that writes the data, and an app
    started as .venv/bin/lrm-robot without an activated venv has no .venv/bin on PATH.
    """
    local = os.path.join(os.path.dirname(sys.executable), "rerun")
    if os.path.isfile(local) and os.access(local, os.X_OK):
        return local
    return shutil.which("rerun")


def missing_viewer(env: dict[str, str] | None = None, platform: str = sys.platform) -> str | None:
    """Why the viewer cannot open here (the start of one line), or None when it can."""
    env = os.environ if env is None else env
    if platform.startswith("linux") and not (env.get("DISPLAY") or env.get("WAYLAND_DISPLAY")):
        return "no display here (DISPLAY and WAYLAND_DISPLAY are unset), so the rerun viewer cannot open"
    if viewer_executable() is None:
        return "the rerun viewer is not installed in this environment (pip install rerun-sdk)"
    return None


def check_viewer(instead: str = "save a recording with --save FILE.rrd") -> None:
    """ViewerError (`reason: instead`) when no viewer can open here; called before any work."""
    reason = missing_viewer()
    if reason:
        raise ViewerError(f"{reason}: {instead}")


def viewer_command(executable: str, port: int = PORT) -> list[str]:
    """The viewer's command line: listening on localhost only."""
    return [executable, "--bind", HOST, "--port", str(port), "--expect-data-soon", "--memory-limit", "75%"]


def _listening(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.settimeout(0.5)
        return sock.connect_ex((HOST, port)) == 0


def spawn_viewer(recording: Any, *, port: int = PORT, executable: str | None = None) -> None:
    """Start the viewer bound to localhost (or reuse one listening on `port`) and stream `recording` to it.

    `executable`: the viewer to start; default `viewer_executable()`.
    """
    check_viewer()
    path = executable or viewer_executable()
    if not _listening(port):
        env = {**os.environ, "RERUN_APP_ONLY": "true"}  # what rerun's spawn() tells the viewer it is
        process = subprocess.Popen(viewer_command(path, port), env=env, stdin=subprocess.DEVNULL,
                                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
        deadline = time.monotonic() + START_TIMEOUT_S
        while not _listening(port):
            if process.poll() is not None:
                raise ViewerError(f"the rerun viewer exited at start (code {process.returncode}); "
                                  "save a recording with --save FILE.rrd instead")
            if time.monotonic() > deadline:
                raise ViewerError(f"the rerun viewer did not listen on {HOST}:{port} within {START_TIMEOUT_S:.0f} s")
            time.sleep(0.1)
    recording.connect_grpc(f"rerun+http://{HOST}:{port}/proxy")
