"""Which episodes are committed, where each one lies, and cutting off what a killed writer left behind.

The commit protocol (see `recordings.arrays`) writes, in this order: the frames
(arrays resized and chunks written past the committed end), the episode JSON,
then `episode_ends` resized by one, then the new end value. Each of those is
an atomic file replace, so a kill leaves one of these tails:

- frame arrays longer than the last committed end (any flush in progress);
- an orphan episode JSON whose end index was never written;
- `episode_ends` one entry longer, that entry reading as the fill value 0;
- `*.partial` temporary files of interrupted atomic writes.

That is the only uncommitted tail there can be, and the only thing a writer
removes (`truncate_tail`). Everything else that does not add up is damage to a
committed episode, and damage is never cut off: `scan` tells which episodes
are committed and which of them are damaged, and the damaged ones are
quarantined (`recordings.integrity`), keeping their index and bytes.

Which episodes are committed: the entries of `episode_ends`, less a last entry
that reads 0 (torn). The protocol leaves at most one episode JSON past them, so
a valid JSON further on proves that end entries were lost, and the episodes up
to it count as committed too.

Where each lies: every boundary between episodes is written three times, as
`episode_ends[i]`, as episode i's JSON "end" and as episode i+1's JSON "start".
A boundary takes the value that a majority of its readable, plausible witnesses
give (the only one if one is left), so one damaged copy, a garbled JSON or a
lost `episode_ends` chunk, loses nothing. An episode whose JSON is unreadable,
or whose range cannot be settled, or whose data arrays stop short, is damaged.
"""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import zarr

from recordings import layout
from recordings.integrity import MISSING_ARRAY

log = logging.getLogger(__name__)

Info = dict[str, Any]


@dataclass
class Scan:
    """The committed episodes of a store as found on disk."""

    committed: int = 0  # episodes whose end was written, damaged ones included; the next index
    ranges: dict[int, tuple[int, int]] = field(default_factory=dict)  # episodes found whole: [start, end)
    infos: dict[int, Info] = field(default_factory=dict)  # their JSONs
    damage: dict[int, tuple[str, str]] = field(default_factory=dict)  # index -> (where, what is wrong)
    ends_fixes: dict[int, int] = field(default_factory=dict)  # episode_ends entries a writer restores
    ends_problems: list[str] = field(default_factory=list)  # what is wrong with episode_ends
    num_frames: int = 0  # end of the committed frames: the next episode starts here


def info_problem(info: Any, index: int) -> str | None:
    """What is wrong with the fields of episode `index`'s JSON that locate it (None: nothing)."""
    if not isinstance(info, dict) or info.get("format") != layout.EPISODE_JSON_TAG:
        return "not an episode JSON of this format"
    for name in ("index", "start", "end", "length"):
        value = info.get(name)
        if isinstance(value, bool) or not isinstance(value, int):
            return f"field {name!r} is {value!r}, expected an integer"
    if info["index"] != index:
        return f"holds episode {info['index']}, not {index}"
    if not 0 <= info["start"] < info["end"] or info["length"] != info["end"] - info["start"]:
        return f"frames {info['start']}..{info['end']} (length {info['length']}) do not add up"
    rewards = info.get("rewards")
    if not isinstance(rewards, list) or not all(isinstance(m, str) for m in rewards):
        return f"field 'rewards' is {rewards!r}, expected a list of names"
    real = info.get("real")  # absent: committed before the real-image mark was kept
    if real is not None and (
        not isinstance(real, dict)
        or not all(isinstance(c, str) and type(n) is int and 0 <= n <= info["length"] for c, n in real.items())
    ):
        return f"field 'real' is {real!r}, expected camera -> count of real frames"
    if not isinstance(info.get("meta"), dict):
        return "field 'meta' is missing"
    return None


def read_ends(root: Path, ends: zarr.Array) -> list[int | None]:
    """The entries of episode_ends; None where a chunk is lost or cannot be decoded.

    An unwritten chunk is normal only where it holds nothing but the last entry
    (a writer killed between growing episode_ends and writing that entry):
    that entry reads as the fill value 0, torn. Anywhere else a missing chunk
    held written ends, so its entries are unknown.
    """
    n = ends.shape[0]
    size = ends.chunks[0]
    values: list[int | None] = []
    for a in range(0, n, size):
        b = min(n, a + size)
        if not layout.chunk_paths(root, ends, a, a + 1)[0].exists():
            values += [0] if a == n - 1 else [None] * (b - a)
            continue
        try:
            values += [int(v) for v in ends[a:b]]
        except Exception as exc:  # a damaged chunk: whatever the decoder raises
            log.debug("%s: episode_ends[%d:%d] cannot be decoded: %s", root, a, b, exc)
            values += [None] * (b - a)
    return values


def committed_by_ends(ends: list[int | None]) -> int:
    """The episodes episode_ends commits: its entries, less a last one that reads 0 (torn)."""
    return len(ends) - 1 if ends and ends[-1] == 0 else len(ends)


def scan(
    ends: list[int | None],
    data_lens: Mapping[str, int | None],
    reward_lens: Mapping[str, int | None],
    get_info: Callable[[int], tuple[Info | None, str]],
    json_indices: Iterable[int],
    real_lens: Mapping[str, int | None] | None = None,
) -> Scan:
    """Committed episodes, their ranges and their damage; see the module docstring.

    `data_lens`: length of each frame array every frame fills (None: missing or
    unreadable); `reward_lens` likewise per modality, `real_lens` per camera
    (the real-image marks); `get_info(i)`: episode i's
    JSON if valid, else (None, why); `json_indices`: indices of the episode
    JSON files present.
    """
    found = Scan()
    committed = committed_by_ends(ends)
    whys: dict[int, str] = {}
    for i in sorted((j for j in json_indices if j > committed), reverse=True):
        info, why = get_info(i)
        if info is not None:
            committed = i + 1  # at most one JSON lies past the committed episodes: entries were lost
            break
    for i in range(committed):
        info, whys[i] = get_info(i)
        if info is not None:
            found.infos[i] = info
    found.committed = committed
    limit = max((n for n in data_lens.values() if n is not None), default=0)
    bounds = _boundaries(ends, found.infos, committed, limit)
    for i in range(committed):
        value = ends[i] if i < len(ends) else None
        if bounds[i + 1] is not None and value != bounds[i + 1]:
            shown = "missing" if i >= len(ends) else "unreadable" if value is None else value
            found.ends_problems.append(f"{layout.EPISODE_ENDS}[{i}] is {shown}, the episode JSONs say {bounds[i + 1]}")
            if i < len(ends):
                found.ends_fixes[i] = bounds[i + 1]  # type: ignore[assignment]
        problem = _episode_problem(
            i, found.infos.get(i), whys[i], bounds[i], bounds[i + 1], data_lens, reward_lens, real_lens or {}
        )
        if problem is None:
            found.ranges[i] = (bounds[i], bounds[i + 1])  # type: ignore[assignment]
        else:
            found.damage[i] = problem
    last = bounds[committed]
    # An unsettled last boundary: keep every frame that may be committed (never cut into an episode).
    found.num_frames = last if last is not None else limit
    return found


def _boundaries(ends: list[int | None], infos: Mapping[int, Info], committed: int, limit: int) -> list[int | None]:
    """bounds[i] = first frame of episode i (bounds[committed]: end of the last); None where unsettled."""
    bounds: list[int | None] = [0]
    last_known = 0
    for j in range(1, committed + 1):
        witnesses = []
        if j - 1 < len(ends) and ends[j - 1] is not None:
            witnesses.append(ends[j - 1])
        if j - 1 in infos:
            witnesses.append(infos[j - 1]["end"])
        if j < committed and j in infos:
            witnesses.append(infos[j]["start"])
        # Ends are strictly increasing and within the frames written: anything else is a damaged copy.
        value = _majority([w for w in witnesses if last_known < w <= limit])  # type: ignore[operator]
        bounds.append(value)
        if value is not None:
            last_known = value
    return bounds


def _majority(values: list[int]) -> int | None:
    counts = Counter(values).most_common(2)
    if not counts or (len(counts) == 2 and counts[0][1] == counts[1][1]):
        return None
    return counts[0][0]


def _episode_problem(
    index: int,
    info: Info | None,
    why: str,
    start: int | None,
    end: int | None,
    data_lens: Mapping[str, int | None],
    reward_lens: Mapping[str, int | None],
    real_lens: Mapping[str, int | None],
) -> tuple[str, str] | None:
    """(where, what) is wrong with committed episode `index`, found without reading its frames."""
    json_path = f"{layout.EPISODES_DIR}/{layout.episode_json_name(index)}"
    if info is None:
        return json_path, why
    if start is None or end is None:
        return layout.EPISODE_ENDS, f"the frame range of episode {index} is unknown (its copies disagree)"
    if (info["start"], info["end"]) != (start, end):
        return json_path, f"says frames {info['start']}-{info['end'] - 1}, the other records {start}-{end - 1}"
    arrays = {**data_lens, **{layout.reward_key(m): reward_lens.get(m) for m in info["rewards"]}}
    arrays.update({layout.real_key(c): real_lens.get(c) for c in info.get("real") or {}})
    for key, n in arrays.items():
        if n is None:
            return key, MISSING_ARRAY
        if n < end:
            return key, f"has {n} frames, the episode needs frames {start}-{end - 1}"
    return None


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

    Only ever called with the committed counts of `scan`, so what goes is the
    uncommitted tail and nothing else: a torn end entry, frames and chunk files
    past the committed frames, orphan JSONs, temporary files. Returns what was
    done, one short phrase per action, for the log.
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
        if arr.shape[0] > n_frames:
            done.append(f"{key} {arr.shape[0]} -> {n_frames} frames")
            arr.resize((n_frames, *arr.shape[1:]))
            synced.append(root / arr.path / "zarr.json")
        # Chunk files wholly past the committed frames (a stray or leftover file) would be
        # read back, or fail to decode, when the next episode grows the array over them.
        for path in layout.chunk_files_from(root, arr, n_frames):
            path.unlink(missing_ok=True)
            done.append(f"removed {path.relative_to(root)} past the committed frames")
    episodes_dir = root / layout.EPISODES_DIR
    for name in sorted(_listdir(episodes_dir)):
        index = layout.episode_json_index(name)
        if index is not None and index >= n_episodes:
            (episodes_dir / name).unlink(missing_ok=True)
            done.append(f"removed orphan {layout.EPISODES_DIR}/{name}")
    if sweep_partials:
        for path in layout.partial_files(root):
            layout.remove(path)
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
