"""Worker processes for the crash and concurrency tests: each appends deterministic episodes.

    python store_crash_worker.py

is a fork server (tests/support/fork_server.py): it imports zarr and the store
once, then forks a worker for each line of stdin, the worker's arguments as a
JSON list (no store is open in the server, zarr's I/O thread has not started):

    STORE [--count N] [--durable] [--sleep S] [--kill-at POINT --kill-after K]

Episode i is `make_episode(i)`; even indices are streamed frame by frame
through the EpisodeWriter (odd multiples of 7 committed with aborted=True),
odd ones appended whole. A worker prints "ready" before it opens the store
(so a kill can land inside the repair too) and then loops until it has
appended `--count` episodes or is killed.

`--kill-at` makes the process SIGKILL itself at a named point of the write
path, after that point has been passed `--kill-after` times:
  zarr-write     before the rename of a zarr key write (leaves a .partial file)
  block          after a block of frames was written to the arrays
  json           after the episode JSON was written (before its end index)
  ends-resized   after episode_ends grew, before the end value is written
  committed      right after the end value is written
  repair-zeroed  during repair, after zeroing stale ends, before shrinking
"""

from __future__ import annotations

import argparse
import os
import signal
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

import zarr  # noqa: E402
import zarr.storage._local as zarr_local  # noqa: E402

from recordings import arrays, layout  # noqa: E402
from recordings.store import EpisodeStore  # noqa: E402
from tests.recordings.store_testdata import make_episode  # noqa: E402
from tests.support.fork_server import say, serve  # noqa: E402


def _die() -> None:
    os.kill(os.getpid(), signal.SIGKILL)


def install_kill_point(point: str, after: int) -> None:
    count = {"n": 0}

    def hit() -> bool:
        count["n"] += 1
        return count["n"] >= after

    if point == "zarr-write":
        real_move = zarr_local._move_with_retry

        def move(tmp, path, mv):  # type: ignore[no-untyped-def]
            if hit():
                _die()
            return real_move(tmp, path, mv)

        zarr_local._move_with_retry = move
    elif point == "block":
        real_block = arrays.write_block

        def block(*a, **k):  # type: ignore[no-untyped-def]
            real_block(*a, **k)
            if hit():
                _die()

        arrays.write_block = block
    elif point == "json":
        real_json = layout.write_json_atomic

        def write_json(*a, **k):  # type: ignore[no-untyped-def]
            real_json(*a, **k)
            if hit():
                _die()

        layout.write_json_atomic = write_json
    elif point in ("ends-resized", "committed"):
        real_commit = arrays._commit_point

        def commit_point(*a, **k):  # type: ignore[no-untyped-def]
            if point == "ends-resized" and hit():
                _die()
            real_commit(*a, **k)
            if point == "committed" and hit():
                _die()

        arrays._commit_point = commit_point
    elif point == "repair-zeroed":
        real_resize = zarr.Array.resize

        def resize(self, new_shape):  # type: ignore[no-untyped-def]
            if self.path == layout.EPISODE_ENDS and tuple(new_shape)[0] < self.shape[0] and hit():
                _die()
            return real_resize(self, new_shape)

        zarr.Array.resize = resize
    else:
        raise SystemExit(f"unknown kill point {point!r}")


def main(argv: list[str]) -> None:
    p = argparse.ArgumentParser()
    p.add_argument("store")
    p.add_argument("--count", type=int, default=10**9)
    p.add_argument("--durable", action="store_true")
    p.add_argument("--sleep", type=float, default=0.0)
    p.add_argument("--chunk-frames", type=int, default=4)
    p.add_argument("--kill-at", default=None)
    p.add_argument("--kill-after", type=int, default=1)
    args = p.parse_args(argv)
    if args.kill_at:
        install_kill_point(args.kill_at, args.kill_after)
    say("ready")
    s = EpisodeStore.open(args.store, mode="a", durable=args.durable, chunk_frames=args.chunk_frames)
    appended = 0
    while appended < args.count:
        i = s.num_episodes
        ep = make_episode(i)
        if i % 2 == 0:
            w = s.begin_episode(ep.meta)
            for t in range(len(ep)):
                w.add_frame(ep.frame(t))
            w.commit(aborted=ep.meta.aborted)
        else:
            s.append(ep)
        appended += 1
        if args.sleep:
            time.sleep(args.sleep)
    s.close()
    say("done")


if __name__ == "__main__":
    serve(main)
