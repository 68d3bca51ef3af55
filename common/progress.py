"""Progress bars for every step that takes more than a few seconds (training, scoring, rollouts).

`progress_bar` is tqdm with the project's defaults: on stderr, only where
stderr is a terminal (a log file or a pipe gets no bar lines), off altogether
with `enabled=False` (the `progress: false` keys, `--no-progress`). The CLI
runs every command inside `logging_redirect_tqdm` (app.cli), so a log line
printed while a bar is drawn goes above the bar instead of breaking it.
"""

from __future__ import annotations

from typing import Any

__all__ = ["progress_bar"]


def progress_bar(total: int | None = None, *, desc: str, unit: str = "it", enabled: bool = True, initial: int = 0,
                 **kwargs: Any) -> Any:
    """A tqdm bar (use as a context manager or close it); a no-op bar when disabled or not on a terminal."""
    from tqdm.auto import tqdm

    return tqdm(total=total, initial=initial, desc=desc, unit=unit, dynamic_ncols=True,
                disable=True if not enabled else None, **kwargs)
