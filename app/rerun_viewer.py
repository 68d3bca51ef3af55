"""The rerun viewer the app starts (`view --spawn`, the operator's `v` key): local, and checked before it starts.

rerun's own `spawn()` runs `rerun --port 9876` and the viewer's gRPC server
then listens on every interface (`--bind` defaults to 0.0.0.0 in rerun 0.33):
anyone on the network could stream into it or read what it shows. The viewer
is started here instead, with `--bind 127.0.0.1`, and the recording
connects to it as `spawn()` would. A viewer already listening on the port is
reused, as `spawn()` does.

`check_viewer()` runs before any work: no `rerun` executable on the PATH, or
no display to open a window on, is a `ViewerError` line naming what to do
instead (`--save FILE.rrd`).
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import time
from typing import Any

__all__ = ["HOST", "PORT", "ViewerError", "check_viewer", "spawn_viewer", "viewer_command"]

HOST = "127.0.0.1"  # only this machine reaches the viewer
PORT = 9876  # rerun's default, so a viewer the user opened by hand is found too
START_TIMEOUT_S = 20.0


class ViewerError(Exception):
    """The rerun viewer cannot be started here; one line saying why and what to do instead."""


def check_viewer(executable: str = "rerun") -> str:
    """The viewer executable's path; ViewerError if there is none on the PATH or no display for its window.

    The one installed next to this Python (rerun-sdk's console script) counts too: `.venv/bin/lrm-robot`
    is often run without the environment activated.
    """
    beside = os.path.join(os.path.dirname(sys.executable), executable)
    path = shutil.which(executable) or (beside if os.access(beside, os.X_OK) else None)
    if path is None:
        raise ViewerError(f"no rerun viewer ({executable!r}) on the PATH: install rerun-sdk into this environment "
                          "or save a recording with --save FILE.rrd")
    if sys.platform.startswith("linux") and not (os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY")):
        raise ViewerError("no display to open the rerun viewer on (DISPLAY and WAYLAND_DISPLAY are unset): "
                          "save a recording with --save FILE.rrd and open it where there is a screen")
    return path


def viewer_command(executable: str, port: int = PORT) -> list[str]:
    """The viewer's command line: listening on localhost only."""
    return [executable, "--bind", HOST, "--port", str(port), "--expect-data-soon", "--memory-limit", "75%"]


def _listening(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.settimeout(0.5)
        return sock.connect_ex((HOST, port)) == 0


def spawn_viewer(recording: Any, *, port: int = PORT, executable: str = "rerun") -> None:
    """Start the viewer bound to localhost (or reuse one listening on `port`) and stream `recording` to it."""
    path = check_viewer(executable)
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
