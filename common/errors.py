"""Errors of the files a command reads or writes, shared by every package: the CLI prints them as one line, exit 2."""

from __future__ import annotations


class FileError(Exception):
    """A file or folder cannot be used as asked: a damaged or unsafe checkpoint, an output path that cannot be
    written, a folder the tool did not make and so will not delete. The message is one line naming the path."""
