"""Where a command writes: checked before the work that fills it, and deleted only when the tool made it.

An evaluation of an hour used to end in a traceback when its `--output` was a
folder or unwritable, losing the result; `improve --restart` deleted any
folder it was given. So:

- `check_output_file` / `check_output_dir` run before the work: the path is not
  of the wrong kind, and the nearest folder that exists takes a new file (a real
  write, not a permission guess: root passes every permission check, a
  read-only file system does not);
- `make_output_dir` creates a run or output folder and leaves the marker file
  `MARKER` in it; a folder that already held files is used but not marked, for
  the tool did not make it;
- `remove_output_dir` (what `--restart` and `--overwrite` call) deletes a folder
  only when it holds the marker.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from pathlib import Path

from common.errors import FileError

__all__ = ["MARKER", "check_output_dir", "check_output_file", "is_marked", "make_output_dir", "mark_output_dir",
           "remove_output_dir"]

MARKER = ".lrm-robot-output"


def check_output_file(path: str | os.PathLike[str], what: str) -> Path:
    """`path` can be written as a file: not a folder, and its folder (or the nearest that exists) takes a file.

    `what` names the flag or key in the message (e.g. "--output").
    """
    path = Path(path)
    if path.is_dir():
        raise FileError(f"{what} {path}: is a folder; name a file")
    if path.exists():
        try:
            with open(path, "a"):  # opens for writing without changing it
                pass
        except OSError as exc:
            raise FileError(f"{what} {path}: cannot be written ({_reason(exc)})") from None
        return path
    _check_can_create(path, what)
    return path


def check_output_dir(path: str | os.PathLike[str], what: str) -> Path:
    """`path` can be a folder the command writes into: not a file, and files can be created in it (or where it goes)."""
    path = Path(path)
    if path.exists() and not path.is_dir():
        raise FileError(f"{what} {path}: is a file; name a folder")
    if path.is_dir():
        _probe(path, path, what)
        return path
    _check_can_create(path, what)
    return path


def _check_can_create(path: Path, what: str) -> None:
    """The nearest existing ancestor of `path` is a folder that takes a new file."""
    parent = path.parent
    while not parent.exists() and parent != parent.parent:
        parent = parent.parent
    if not parent.is_dir():
        raise FileError(f"{what} {path}: {parent} is a file, not a folder")
    _probe(parent, path, what)


def _probe(folder: Path, path: Path, what: str) -> None:
    try:
        fd, name = tempfile.mkstemp(prefix=".lrm-robot-probe-", dir=folder)
    except OSError as exc:
        raise FileError(f"{what} {path}: {folder} is not writable ({_reason(exc)})") from None
    os.close(fd)
    os.unlink(name)


def _reason(exc: OSError) -> str:
    return exc.strerror or type(exc).__name__


def mark_output_dir(path: str | os.PathLike[str], kind: str) -> None:
    """Leave the marker in folder `path`: the tool made it, and `remove_output_dir` may delete it."""
    marker = Path(path) / MARKER
    if not marker.is_file():
        marker.write_text(json.dumps({"made_by": "lrm-robot", "kind": kind}) + "\n")


def is_marked(path: str | os.PathLike[str]) -> bool:
    return (Path(path) / MARKER).is_file()


def make_output_dir(path: str | os.PathLike[str], kind: str, what: str = "output_dir") -> Path:
    """Create folder `path` (parents too) marked as the tool's; an existing folder with files keeps no marker.

    Checked as `check_output_dir` does first, so a command calling it before its work fails before it.
    """
    path = check_output_dir(path, what)
    made_by_us = not path.exists() or not any(path.iterdir())
    try:
        path.mkdir(parents=True, exist_ok=True)
        if made_by_us:
            mark_output_dir(path, kind)
    except OSError as exc:
        raise FileError(f"{what} {path}: cannot be created ({_reason(exc)})") from None
    return path


def remove_output_dir(path: str | os.PathLike[str], what: str) -> None:
    """Delete folder `path` if the tool made it (it holds the marker); a missing or empty folder has nothing to lose.

    Anything else is refused with one line naming the folder and the marker: a
    flag deletes only what the tool made.
    """
    path = Path(path)
    if not path.exists() and not path.is_symlink():
        return
    if path.is_symlink():
        raise FileError(f"{what} {path}: is a link; refusing to delete through it")
    if not path.is_dir():
        raise FileError(f"{what} {path}: is a file, not a folder lrm-robot made; refusing to delete it")
    if not any(path.iterdir()):
        return
    if not is_marked(path):
        raise FileError(f"{what} {path}: has no {MARKER}, so lrm-robot did not make it; refusing to delete it "
                        "(delete it yourself or choose another folder)")
    shutil.rmtree(path)
