"""Integrity of committed episodes: checksums taken at commit, and reading frames to check them.

Why checksums: a missing chunk reads as the fill value, and a flipped bit or a
truncated chunk can decode into other values without any error (blosc does not
check what it decompresses), so only a digest taken when the episode was
written tells intact data from damaged. The writer hashes the rows it writes,
one digest per array per episode (xxh3-128, ~30 GB/s: a few percent of what
lz4 compression of the same bytes costs), and the episode JSON keeps them:

    "checksums": {"algorithm": "xxh3-128", "arrays": {"data/state": "<hex>", ...}}

Per episode rather than per chunk because chunks are shared between episodes
and rewritten when the next one is appended; an episode's rows never change
after its commit (a reward trace written later updates its own digest). An
episode written before checksums were kept reads as "unverified", not damaged.

What is found damaged is quarantined, never deleted (`recordings.quarantine`).
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import xxhash
import zarr
from zarr.core.sync import sync

from recordings import layout
from recordings.episode import utc_now_iso

CHECKSUM_ALGORITHM = "xxh3-128"
MISSING_ARRAY = "the array is missing or its zarr.json is unreadable"


@dataclass(frozen=True)
class Damage:
    """What is wrong with one committed episode: the file or array (`where`) and what was found.

    `kind` "structure": found from the metadata alone, so every open finds it
    again (and stops finding it once a writer has mended it); "data": found by
    reading the frames, so the quarantine record is what remembers it.
    """

    index: int
    where: str
    why: str
    kind: str = "data"
    found: str = field(default_factory=utc_now_iso, compare=False)

    def __str__(self) -> str:
        return f"episode {self.index}: {self.where}: {self.why}"


class RunningDigests:
    """Digests of arrays fed block by block in frame order (the streaming writer's chunks)."""

    def __init__(self) -> None:
        self._hashers: dict[str, xxhash.xxh3_128] = {}

    def __contains__(self, key: str) -> bool:
        return key in self._hashers

    def update(self, key: str, rows: np.ndarray) -> None:
        hasher = self._hashers.get(key)
        if hasher is None:
            hasher = self._hashers[key] = xxhash.xxh3_128()
        hasher.update(np.ascontiguousarray(rows))

    def hexdigest(self, key: str) -> str:
        return self._hashers[key].hexdigest()

    def to_json(self, keys: Iterable[str]) -> dict[str, Any]:
        return {"algorithm": CHECKSUM_ALGORITHM, "arrays": {k: self.hexdigest(k) for k in keys}}


def checksums_json(arrays: Mapping[str, np.ndarray]) -> dict[str, Any]:
    """The checksums entry of an episode JSON for whole arrays held in memory."""
    digests = RunningDigests()
    for key, rows in arrays.items():
        digests.update(key, rows)
    return digests.to_json(arrays)


def expected_digests(info: Mapping[str, Any]) -> dict[str, str] | None:
    """The digests an episode JSON holds, or None (unverified: written without, or by another algorithm)."""
    sums = info.get("checksums")
    if not isinstance(sums, dict) or sums.get("algorithm") != CHECKSUM_ALGORITHM:
        return None
    arrays = sums.get("arrays")
    if not isinstance(arrays, dict) or not all(isinstance(v, str) for v in arrays.values()):
        return None
    return dict(arrays)


def mismatches(data: Mapping[str, np.ndarray], expected: Mapping[str, str]) -> list[str]:
    """Keys of `data` whose digest differs from the one written at commit."""
    return [k for k, rows in data.items() if k in expected and _digest(rows) != expected[k]]


def _digest(rows: np.ndarray) -> str:
    return xxhash.xxh3_128(np.ascontiguousarray(rows)).hexdigest()


def read_rows(arrays: Mapping[str, zarr.Array], start: int, stop: int) -> dict[str, np.ndarray | Exception]:
    """Rows [start, stop) of several arrays, read concurrently; an array that cannot be read gives its error."""

    async def _get() -> list[Any]:
        return await asyncio.gather(
            *(a.async_array.getitem(slice(start, stop)) for a in arrays.values()), return_exceptions=True
        )

    return dict(zip(arrays, sync(_get()), strict=True))


def frames(start: int, stop: int) -> str:
    """Frames [start, stop) for a message."""
    return f"frame {start}" if stop - start == 1 else f"frames {start}-{stop - 1}"


def unreadable(start: int, stop: int, exc: BaseException) -> str:
    """Why rows could not be read, in one line (a damaged chunk's decoder error)."""
    return f"{frames(start, stop)} cannot be decoded ({type(exc).__name__}: {exc})"


def mismatch(start: int, stop: int) -> str:
    return f"{frames(start, stop)} differ from the checksum written at commit"


def check_data(
    root: Path,
    arrays: Mapping[str, zarr.Array | None],
    start: int,
    end: int,
    expected: Mapping[str, str] | None,
    chunk: int,
) -> list[tuple[str, str]]:
    """(array, what is wrong) for episode frames [start, end), read one time-chunk at a time.

    Without `expected` digests only read errors can be found.
    """
    problems = {k: MISSING_ARRAY for k, a in arrays.items() if a is None}
    live = {k: a for k, a in arrays.items() if a is not None}
    digests = RunningDigests()
    a = start
    while a < end and live:
        b = min(end, (a // chunk + 1) * chunk)
        for key, rows in read_rows(live, a, b).items():
            if isinstance(rows, Exception):
                problems[key] = unreadable(a, b, rows)
                del live[key]
            else:
                digests.update(key, rows)
        a = b
    for key, want in (expected or {}).items():
        if key in live and key in digests and digests.hexdigest(key) != want:
            array = live[key]
            missing = [p.name for p in layout.chunk_paths(root, array, start, end) if not p.exists()]
            hint = f" (chunk files missing: {', '.join(missing)})" if missing else ""
            problems[key] = mismatch(start, end) + hint
    return sorted(problems.items())


@dataclass
class VerifyReport:
    """What `EpisodeStore.verify` found: every committed episode is intact, unverified or damaged."""

    path: str
    committed: int
    intact: list[int] = field(default_factory=list)  # checksums match
    unverified: list[int] = field(default_factory=list)  # readable, but written without checksums
    damaged: dict[int, Damage] = field(default_factory=dict)
    index_problems: list[str] = field(default_factory=list)  # episode_ends entries a writer restores
    recorded: str = ""  # what happened to the quarantine record

    @property
    def ok(self) -> bool:
        return not self.damaged and not self.index_problems

    def to_json(self) -> dict[str, Any]:
        return {
            "path": self.path,
            "committed": self.committed,
            "intact": self.intact,
            "unverified": self.unverified,
            "damaged": [{"index": d.index, "where": d.where, "why": d.why} for d in self.damaged.values()],
            "index_problems": self.index_problems,
            "recorded": self.recorded,
        }


def index_ranges(indices: Iterable[int]) -> str:
    """[0, 1, 2, 5, 7, 8] -> '0-2, 5, 7-8': episode lists stay one line."""
    out: list[str] = []
    run: list[int] = []
    for i in sorted(indices):
        if run and i == run[-1] + 1:
            run.append(i)
            continue
        if run:
            out.append(f"{run[0]}-{run[-1]}" if len(run) > 1 else str(run[0]))
        run = [i]
    if run:
        out.append(f"{run[0]}-{run[-1]}" if len(run) > 1 else str(run[0]))
    return ", ".join(out)
