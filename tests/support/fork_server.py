"""A fork server for tests that SIGKILL real processes: the imports once, then one forked child per run.

A fresh interpreter per killed run pays for its imports every time: ~0.7 s for zarr and the store, ~7 s for
torch and ManiSkill on two cores. A worker script calls `serve(run)` after its imports instead: it reads one
run a line of stdin (a JSON list of arguments), forks a child that calls `run(arguments)`, prints `pid PID`,
and when the child is gone `exit CODE` (-9: killed by SIGKILL; 1: `run` raised, its traceback on stderr;
else what `run` returned, 0 for None). The server must only have imported before it forks: no store
open, no scene built, no torch computation run. A test talks to it through `ForkServer`.
"""

from __future__ import annotations

import contextlib
import json
import os
import queue
import signal
import subprocess
import sys
import threading
import traceback
from collections.abc import Callable
from pathlib import Path

__all__ = ["Child", "ForkServer", "say", "serve"]


def say(line: str) -> None:
    """One line to stdout in one write: a server and its child share the pipe, and print() may split a line."""
    os.write(sys.stdout.fileno(), f"{line}\n".encode())


def serve(run: Callable[[list[str]], int | None]) -> None:
    """The server loop, in the worker script (see the module's docstring)."""
    for line in sys.stdin:
        argv = json.loads(line)
        pid = os.fork()
        if pid == 0:
            code = 1
            try:
                code = run(argv) or 0
            except SystemExit as exc:
                code = exc.code if isinstance(exc.code, int) else 1
            except BaseException:
                traceback.print_exc()
            finally:
                sys.stdout.flush()
                sys.stderr.flush()
                os._exit(code)
        say(f"pid {pid}")
        _, status = os.waitpid(pid, 0)
        say(f"exit {os.waitstatus_to_exitcode(status)}")


class Child:
    """One run, in a process forked by the server; what it printed, its pid and, once gone, its exit code."""

    def __init__(self, server: ForkServer) -> None:
        self.server = server
        self.pid: int | None = None
        self.returncode: int | None = None
        self.printed: list[str] = []

    def expect(self, line: str, timeout: float) -> None:
        """Wait until the child prints `line`."""
        while line not in self.printed:
            assert self.returncode is None, \
                f"exit {self.returncode} before {line!r}: {self.printed} {self.server.errors()}"
            self._read(timeout)

    def send_signal(self, sig: int) -> None:
        while self.pid is None:
            self._read(timeout=30)
        with contextlib.suppress(ProcessLookupError):  # already gone: its exit code says how
            os.kill(self.pid, sig)

    def kill(self) -> None:
        self.send_signal(signal.SIGKILL)

    def poll(self) -> int | None:
        while self.returncode is None and not self.server.lines.empty():
            self._read(timeout=0)
        return self.returncode

    def wait(self, timeout: float) -> int:
        while self.returncode is None:
            self._read(timeout)
        return self.returncode

    def _read(self, timeout: float) -> None:
        line = self.server.next_line(timeout)
        if line.startswith("pid "):
            self.pid = int(line.split()[1])
        elif line.startswith("exit "):
            self.returncode = int(line.split()[1])
        else:
            self.printed.append(line)


class ForkServer:
    """The test's end: starts `python SCRIPT` (whose stderr goes to `log`) and runs children one at a time."""

    def __init__(self, script: Path, log: Path, cwd: Path) -> None:
        self.log = log
        with log.open("w") as err:
            self.proc = subprocess.Popen([sys.executable, str(script)], cwd=cwd, stdin=subprocess.PIPE,
                                         stdout=subprocess.PIPE, stderr=err, text=True)
        self.lines: queue.Queue[str | None] = queue.Queue()
        threading.Thread(target=self._read_all, daemon=True).start()

    def run(self, *args: str) -> Child:
        """Start a child with these arguments (the last one must have ended)."""
        assert self.proc.stdin is not None
        self.proc.stdin.write(json.dumps(list(args)) + "\n")
        self.proc.stdin.flush()
        return Child(self)

    def next_line(self, timeout: float) -> str:
        try:
            line = self.lines.get(timeout=timeout)
        except queue.Empty:
            raise TimeoutError(f"no word from the fork server in {timeout} s") from None
        assert line is not None, f"the fork server ended (exit {self.proc.poll()}): {self.errors()}"
        return line

    def errors(self) -> str:
        """The end of the server's and its children's stderr."""
        return self.log.read_text()[-3000:]

    def close(self) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.close()
        try:
            self.proc.wait(timeout=60)
        except subprocess.TimeoutExpired:
            self.proc.kill()

    def _read_all(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self.lines.put(line.rstrip("\n"))
        self.lines.put(None)  # the server is gone
