"""Which episodes are committed, and cutting off what a killed writer left behind.

The commit protocol (see `recordings.arrays`) writes, in this order: the frames
(arrays resized and chunks written past the committed end), the episode JSON,
then `episode_ends` resized by one, then the new end value. Each of those is
an atomic file replace, so a kill leaves one of these tails:

- frame arrays longer than the last committed end (any flush in progress);
- an orphan episode JSON whose end index was never written;
- `episode_ends` one entry longer, that entry reading as the fill value 0;
- `*.partial` temporary files of interrupted atomic writes.

An episode counts as committed only if its end is strictly greater than the
previous one, within every frame array, and its JSON agrees on start and end.
Readers stop at the first entry that fails, so nothing past the valid prefix
is ever trusted; a writer opening the store truncates everything past it.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import numpy as np
import zarr

from recordings import layout

log = logging.getLogger(__name__)


def committed_prefix(
    ends: np.ndarray,
    data_len: int,
    reward_lens: Mapping[str, int],
    get_info: Callable[[int], dict[str, Any] | None],
) -> tuple[list[dict[str, Any]], str | None]:
    """The episode JSONs of the valid prefix of `ends`, and why the scan stopped (None: it did not)."""
    infos: list[dict[str, Any]] = []
    prev = 0
    for i, end in enumerate(ends.tolist()):
        if end <= prev:
            return infos, f"episode_ends[{i}] = {end} is not after {prev}"
        if end > data_len:
            return infos, f"episode_ends[{i}] = {end} is past the frame arrays ({data_len} frames)"
        info = get_info(i)
        if info is None:
            return infos, f"episode {i} has no readable JSON"
        if info.get("index") != i or info.get("start") != prev or info.get("end") != end:
            return infos, f"episode {i} JSON disagrees with episode_ends"
        short = [m for m in info.get("rewards", []) if reward_lens.get(m, -1) < end]
        if short:
            return infos, f"episode {i} reward array {short[0]!r} is missing or short"
        infos.append(info)
        prev = end
    return infos, None


def truncate_tail(
    *,
    root: Path,
    ends_array: zarr.Array,
    frame_arrays: Mapping[str, zarr.Array],
    n_episodes: int,
    n_frames: int,
    durable: bool,
    sweep_partials: bool,
) -> list[str]:
    """Cut the store back to its first `n_episodes` episodes ending at frame `n_frames`.

    Returns what was done, one short phrase per action, for the log.
    """
    done: list[str] = []
    synced: list[Path] = []
    old = ends_array.shape[0]
    if old > n_episodes:
        # Zero the removed entries before shrinking: a later resize must never
        # expose a stale end that still looks valid.
        ends_array[n_episodes:old] = 0
        if durable:
            layout.fsync_paths(layout.chunk_paths(root, ends_array, n_episodes, old))
        ends_array.resize((n_episodes,))
        synced.append(root / ends_array.path / "zarr.json")
        done.append(f"episode_ends {old} -> {n_episodes} entries")
    for key, arr in frame_arrays.items():
        if arr.shape[0] != n_frames:
            done.append(f"{key} {arr.shape[0]} -> {n_frames} frames")
            arr.resize((n_frames, *arr.shape[1:]))
            synced.append(root / arr.path / "zarr.json")
    episodes_dir = root / layout.EPISODES_DIR
    for name in sorted(_listdir(episodes_dir)):
        index = layout.episode_json_index(name)
        if index is not None and index >= n_episodes:
            (episodes_dir / name).unlink(missing_ok=True)
            done.append(f"removed orphan {layout.EPISODES_DIR}/{name}")
    if sweep_partials:
        for path in layout.partial_files(root):
            path.unlink(missing_ok=True)
            done.append(f"removed {path.relative_to(root)}")
    if durable and done:
        layout.fsync_paths(synced)
        layout.fsync_dir(episodes_dir)
    return done


def _listdir(path: Path) -> list[str]:
    try:
        return [p.name for p in path.iterdir()]
    except FileNotFoundError:
        return []
