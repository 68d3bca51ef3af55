"""Running `lrm-robot` in-process from a test, and a free local port for servers a test starts."""

from __future__ import annotations

import socket

from app.cli import main


def run(capsys, argv: list[str]) -> tuple[int, str, str]:
    """`lrm-robot ARGV` in-process: exit code, stdout, stderr (argparse's exits included)."""
    capsys.readouterr()
    try:
        code = main(argv)
    except SystemExit as exc:
        code = exc.code
    out, err = capsys.readouterr()
    return code, out, err


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]
