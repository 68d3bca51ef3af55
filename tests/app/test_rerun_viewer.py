"""The rerun viewer the app starts listens on localhost only.

rerun's own `spawn()` starts `rerun --port 9876`, whose gRPC server binds 0.0.0.0. The app starts
the viewer itself with `--bind 127.0.0.1` (app.rerun_viewer); a stand-in `rerun` executable
records the command line it was given and listens where it was told, so the tests need neither
a display nor a GPU.
"""

from __future__ import annotations

import ast
import json
import os
import pathlib
import signal
import socket
import subprocess
import sys

import pytest

from app.rerun_viewer import HOST, ViewerError, spawn_viewer, viewer_command
from recordings.store import EpisodeStore
from tests.support.demo_store import demo_store

ROOT = pathlib.Path(__file__).resolve().parents[2]

FAKE_VIEWER = """#!{python}
import json, os, socket, sys, time
args = sys.argv[1:]
host, port = args[args.index("--bind") + 1], int(args[args.index("--port") + 1])
server = socket.socket()
server.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
server.bind((host, port))
with open(os.environ["FAKE_VIEWER_LOG"], "w") as f:  # written before listening: the caller waits for that
    json.dump({{"args": args, "pid": os.getpid(), "bound": server.getsockname()[0],
               "app_only": os.environ.get("RERUN_APP_ONLY")}}, f)
server.listen()
time.sleep(60)
"""


class Recording:
    """Stands in for a RecordingStream: remembers where it was told to connect."""

    def __init__(self) -> None:
        self.urls: list[str] = []

    def connect_grpc(self, url: str) -> None:
        self.urls.append(url)


def free_port() -> int:
    with socket.socket() as s:
        s.bind((HOST, 0))
        return s.getsockname()[1]


@pytest.fixture
def fake_viewer(tmp_path, monkeypatch) -> tuple[pathlib.Path, pathlib.Path]:
    exe = tmp_path / "rerun"
    exe.write_text(FAKE_VIEWER.format(python=sys.executable))
    exe.chmod(0o755)
    log = tmp_path / "viewer.json"
    monkeypatch.setenv("FAKE_VIEWER_LOG", str(log))
    monkeypatch.setenv("DISPLAY", ":0")
    yield exe, log
    if log.exists():
        os.kill(json.loads(log.read_text())["pid"], signal.SIGTERM)


def test_the_viewer_command_binds_to_localhost():
    command = viewer_command("rerun", 9876)
    assert command[command.index("--bind") + 1] == "127.0.0.1"
    assert command[command.index("--port") + 1] == "9876"


def test_the_installed_viewer_takes_every_flag_of_the_command():
    """A rerun release that renamed --bind would otherwise fail only on a user's screen."""
    exe = pathlib.Path(sys.executable).with_name("rerun")
    if not exe.exists():
        pytest.skip("no rerun executable beside this Python")
    help_text = subprocess.run([str(exe), "--help"], capture_output=True, text=True, timeout=60).stdout
    flags = [word for word in viewer_command(str(exe)) if word.startswith("--")]
    assert len(flags) == 4
    for flag in flags:
        assert flag in help_text, flag


def test_spawn_starts_a_viewer_listening_on_localhost_only(fake_viewer):
    exe, log = fake_viewer
    port = free_port()
    recording = Recording()
    spawn_viewer(recording, port=port, executable=str(exe))
    started = json.loads(log.read_text())
    assert started["bound"] == "127.0.0.1"
    assert started["args"][:4] == ["--bind", "127.0.0.1", "--port", str(port)]
    assert started["app_only"] == "true"
    assert recording.urls == [f"rerun+http://127.0.0.1:{port}/proxy"]


def test_spawn_reuses_a_viewer_already_listening(fake_viewer):
    exe, log = fake_viewer
    with socket.socket() as running:
        running.bind((HOST, 0))
        running.listen()
        port = running.getsockname()[1]
        recording = Recording()
        spawn_viewer(recording, port=port, executable=str(exe))
    assert not log.exists()  # nothing new was started
    assert recording.urls == [f"rerun+http://127.0.0.1:{port}/proxy"]


def test_a_viewer_that_exits_at_start_is_one_line(tmp_path, monkeypatch):
    exe = tmp_path / "rerun"
    exe.write_text(f"#!{sys.executable}\nimport sys\nsys.exit(3)\n")
    exe.chmod(0o755)
    monkeypatch.setenv("DISPLAY", ":0")
    with pytest.raises(ViewerError, match=r"exited at start \(code 3\)"):
        spawn_viewer(Recording(), port=free_port(), executable=str(exe))


def test_the_operator_viewer_key_goes_through_the_local_viewer(tmp_path, monkeypatch):
    from app.operator import rerun as operator_rerun

    calls = []

    def spawn(recording):
        calls.append(recording)
        raise ViewerError("stop here")

    monkeypatch.setattr("app.rerun_viewer.spawn_viewer", spawn)
    with EpisodeStore.open(demo_store(tmp_path / "store"), mode="r") as store:
        with pytest.raises(ViewerError, match="stop here"):
            operator_rerun.spawn_episode(store, 0)
    assert len(calls) == 1


def test_nothing_in_the_app_calls_reruns_own_spawn():
    """`spawn()`/`serve_grpc()`/`serve_web()` of the SDK listen on every interface."""
    offenders = []
    for path in sorted((ROOT / "app").rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) \
                    and node.func.attr in ("spawn", "serve_grpc", "serve_web", "serve"):
                offenders.append(f"{path.relative_to(ROOT)}:{node.lineno}")
    assert not offenders, offenders
