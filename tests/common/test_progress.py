"""Progress bars and log lines share a terminal: a line logged while a bar is drawn goes above the bar (issue 17)."""

from __future__ import annotations

import fcntl
import os
import struct
import subprocess
import sys
import termios
import textwrap
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]

# a command whose bar is drawn (stderr is a terminal) and which logs a line half-way
CHILD = textwrap.dedent("""
    import argparse, logging
    from app.cli import run_handler
    from common.progress import progress_bar

    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")

    def handler(args):
        with progress_bar(4, desc="training", mininterval=0) as bar:
            for step in range(4):
                if step == 2:
                    logging.getLogger("lrm").info("checkpoint saved")
                bar.update(1)
        return 0

    raise SystemExit(run_handler(argparse.Namespace(handler=handler)))
""")


def test_a_line_logged_during_a_bar_is_printed_whole_above_it() -> None:
    controller, terminal = os.openpty()  # the child's stderr is a terminal, so the bar is drawn
    fcntl.ioctl(terminal, termios.TIOCSWINSZ, struct.pack("HHHH", 24, 100, 0, 0))  # 100 columns wide
    try:
        child = subprocess.run([sys.executable, "-c", CHILD], cwd=ROOT, stdin=subprocess.DEVNULL,
                               stdout=subprocess.DEVNULL, stderr=terminal, timeout=120)
        os.close(terminal)
        written = b""
        try:
            while chunk := os.read(controller, 65536):
                written += chunk
        except OSError:  # the terminal's other end is closed: everything is read
            pass
    finally:
        os.close(controller)
    assert child.returncode == 0
    pieces = [p.strip() for p in written.decode().replace("\r", "\n").split("\n")]
    assert "INFO lrm: checkpoint saved" in pieces  # a piece of its own, not glued to the bar
    assert any(p.startswith("training: 100%") for p in pieces), pieces  # and the bar was drawn
