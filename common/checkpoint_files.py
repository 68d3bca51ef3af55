"""Reading a run or checkpoint folder without running anything it holds.

A run folder may come from elsewhere (a colleague's run, a download), and
`torch.load(..., weights_only=False)` unpickles any object, so a planted
file could run any code on `--resume`. Training state is read with
`weights_only=True`: tensors, numbers, strings and containers only; a file
asking for anything else is refused, naming the file and what it asked for.
Weights are safetensors (never code), but a truncated or garbled file raises
safetensors' own error type with a message of its own; both come out here as
one `FileError` line naming the file.
"""

from __future__ import annotations

import os
import pickle
import re
from pathlib import Path
from typing import Any

from common.errors import FileError

__all__ = ["check_tensors", "load_tensors", "load_training_state"]

_UNSUPPORTED = re.compile(r"Unsupported global: GLOBAL ([\w.]+)|Unsupported operand (\d+)")


def load_training_state(path: str | os.PathLike[str]) -> dict[str, Any]:
    """The dict `torch.save` wrote to `path`, read with `weights_only=True`; FileError if unsafe or damaged."""
    import torch

    path = Path(path)
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as exc:
        found = _UNSUPPORTED.search(str(exc))
        asked = (found.group(1) or f"pickle operation {found.group(2)}") if found else "an object, not plain data"
        raise FileError(f"{path}: refused: loading it would call {asked}; a training state holds only tensors and "
                        "plain values (was it planted or made by another program?)") from None
    except (RuntimeError, EOFError, ValueError, OSError) as exc:
        raise FileError(f"{path}: damaged training state ({_first_line(exc)})") from None
    if not isinstance(state, dict):
        raise FileError(f"{path}: not a training state (holds a {type(state).__name__}, not a dict)")
    return state


def load_tensors(path: str | os.PathLike[str], device: str = "cpu") -> dict[str, Any]:
    """The tensors of the safetensors file `path`; FileError if it is truncated or garbled."""
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    path = Path(path)
    try:
        return load_file(str(path), device=str(device))
    except (SafetensorError, OSError, ValueError, RuntimeError) as exc:
        raise FileError(f"{path}: damaged weights file ({_first_line(exc)})") from None


def check_tensors(path: str | os.PathLike[str]) -> None:
    """FileError if the safetensors file `path` is truncated or garbled (its header and size are read, not its data).

    For weights another library loads (LeRobot's `from_pretrained`), whose error would be a traceback.
    """
    from safetensors import SafetensorError, safe_open

    try:
        with safe_open(str(path), framework="pt"):
            pass
    except (SafetensorError, OSError, ValueError, RuntimeError) as exc:
        raise FileError(f"{path}: damaged weights file ({_first_line(exc)})") from None


def _first_line(exc: BaseException) -> str:
    """The first sentence of the library's message (torch adds a paragraph of advice after it)."""
    text = str(exc).strip()
    if not text:
        return type(exc).__name__
    return text.splitlines()[0].split(". ")[0]
