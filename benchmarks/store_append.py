"""Benchmark: sustained streaming append into the episode store.

Records episodes frame by frame through `EpisodeStore.begin_episode` /
`add_frame` / `commit`, as a rollout loop does, for a fixed wall-clock time,
and reports the achieved frame rate as a multiple of real time plus the CPU
share (process CPU time / wall time, all threads), with and without the
durability sync. A third, paced run records at exactly the control rate to
show what recording in real time costs the machine.

Image content: each camera shows a smooth sinusoidal colour gradient that
moves a few pixels per frame, plus Gaussian sensor noise (sigma 2 by default),
from a pool of distinct pre-generated frames cycled through, so compression
is neither trivial (all zeros) nor impossible (pure noise).

Example:
    .venv/bin/python benchmarks/store_append.py --seconds 20 --cameras 3 --height 480 --width 640 \
        --fps 30 --out benchmarks/results/store_append.json
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from recordings.episode import EpisodeMeta, Frame  # noqa: E402
from recordings.layout import Compression  # noqa: E402
from recordings.store import EpisodeStore  # noqa: E402

POOL = 32  # distinct frames per camera


def make_pool(cameras: int, height: int, width: int, noise: float, seed: int = 0) -> list[list[np.ndarray]]:
    """Moving smooth gradients + Gaussian noise, POOL frames per camera."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:height, 0:width].astype(np.float32)
    pool = []
    for cam in range(cameras):
        frames = []
        for t in range(POOL):
            base = 128 + 60 * np.sin((xx + 3 * t + 40 * cam) / 90.0) + 50 * np.cos((yy - 2 * t) / 70.0)
            img = np.stack([base, 0.8 * base + 20, 255 - base], axis=-1)
            img += rng.normal(0.0, noise, img.shape).astype(np.float32)
            frames.append(np.clip(img, 0, 255).astype(np.uint8))
        pool.append(frames)
    return pool


def run(args: argparse.Namespace, pool: list[list[np.ndarray]], *, durable: bool, paced: bool, seconds: float) -> dict:
    workdir = Path(tempfile.mkdtemp(prefix="store_append_", dir=args.dir))
    names = [f"cam{i}" for i in range(args.cameras)]
    store = EpisodeStore.create(
        workdir / "store",
        fps=args.fps,
        chunk_frames=args.chunk_frames,
        image_compression=Compression(args.cname, args.clevel, args.shuffle),
        durable=durable,
    )
    ep_frames = int(round(args.episode_seconds * args.fps))
    state = np.random.default_rng(1).random((POOL, 14), dtype=np.float32)
    frames = 0
    episodes = 0
    add_lat: list[float] = []
    commit_lat: list[float] = []
    t0_cpu = os.times()
    t0 = time.perf_counter()
    deadline = t0 + seconds
    while time.perf_counter() < deadline:
        writer = store.begin_episode(EpisodeMeta(task="benchmark", source="sim", round=episodes))
        ep_t0 = time.perf_counter()
        for t in range(ep_frames):
            if paced:
                due = ep_t0 + t / args.fps
                delay = due - time.perf_counter()
                if delay > 0:
                    time.sleep(delay)
            k = (frames + t) % POOL
            frame = Frame(
                images={n: pool[i][k] for i, n in enumerate(names)},
                state=state[k],
                action=state[k, :7],
                timestamp=t / args.fps,
                rewards={"progress": 0.5} if t % 10 == 0 else {},
            )
            a = time.perf_counter()
            writer.add_frame(frame)
            add_lat.append(time.perf_counter() - a)
        a = time.perf_counter()
        writer.commit()
        commit_lat.append(time.perf_counter() - a)
        frames += ep_frames
        episodes += 1
    wall = time.perf_counter() - t0
    t1_cpu = os.times()
    cpu = (t1_cpu.user - t0_cpu.user) + (t1_cpu.system - t0_cpu.system)
    size = store.size_bytes()
    store.close()
    shutil.rmtree(workdir, ignore_errors=True)
    raw = frames * args.cameras * args.height * args.width * 3
    fps_achieved = frames / wall
    add_sorted = sorted(add_lat)
    return {
        "mode": ("paced " if paced else "") + ("durable" if durable else "no-sync"),
        "durable": durable,
        "paced": paced,
        "episodes": episodes,
        "frames": frames,
        "wall_s": round(wall, 3),
        "frames_per_s": round(fps_achieved, 2),
        "x_real_time": round(fps_achieved / args.fps, 2),
        "cpu_s": round(cpu, 3),
        "cpu_share": round(cpu / wall, 3),  # 1.0 = one core busy
        "cpu_s_per_recorded_s": round(cpu / (frames / args.fps), 3),
        "image_MB_per_s": round(raw / wall / 1e6, 1),
        "compression_ratio": round(raw / size, 3),
        "add_frame_p99_ms": round(1e3 * add_sorted[int(0.99 * (len(add_sorted) - 1))], 2),
        "add_frame_max_ms": round(1e3 * add_sorted[-1], 2),
        "commit_mean_ms": round(1e3 * statistics.fmean(commit_lat), 1),
        "commit_max_ms": round(1e3 * max(commit_lat), 1),
    }


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--seconds", type=float, default=20.0, help="wall time per unpaced run")
    p.add_argument("--paced-seconds", type=float, default=10.0, help="wall time of the real-time run (0: skip)")
    p.add_argument("--cameras", type=int, default=3)
    p.add_argument("--height", type=int, default=480)
    p.add_argument("--width", type=int, default=640)
    p.add_argument("--fps", type=float, default=30.0)
    p.add_argument("--episode-seconds", type=float, default=10.0)
    p.add_argument("--chunk-frames", type=int, default=10)
    p.add_argument("--cname", default="lz4")
    p.add_argument("--clevel", type=int, default=1)
    p.add_argument("--shuffle", default="bitshuffle", choices=["noshuffle", "shuffle", "bitshuffle"])
    p.add_argument("--noise", type=float, default=2.0, help="Gaussian pixel noise sigma")
    p.add_argument("--dir", default=None, help="where to put the temporary store (default: system temp)")
    p.add_argument("--out", default=None, help="write results as JSON here")
    args = p.parse_args()

    pool = make_pool(args.cameras, args.height, args.width, args.noise)
    load_before = os.getloadavg()
    results = [
        run(args, pool, durable=False, paced=False, seconds=args.seconds),
        run(args, pool, durable=True, paced=False, seconds=args.seconds),
    ]
    if args.paced_seconds > 0:
        results.append(run(args, pool, durable=True, paced=True, seconds=args.paced_seconds))

    content = (
        f"moving sinusoidal RGB gradient + Gaussian noise sigma {args.noise}, {POOL} distinct frames per camera cycled"
    )
    print(
        f"{args.cameras} cameras x {args.height}x{args.width} RGB at {args.fps:g} fps, "
        f"episodes of {args.episode_seconds:g} s, chunk {args.chunk_frames} frames, "
        f"blosc {args.cname} level {args.clevel} {args.shuffle}; {os.cpu_count()} CPUs"
    )
    load_after = os.getloadavg()
    print(f"image content: {content}")
    print(
        f"load average (1 min) before/after: {load_before[0]:.2f} / {load_after[0]:.2f} "
        "(other processes on this machine compete for the same cores)"
    )
    cols = [
        ("mode", "mode", 16),
        ("frames/s", "frames_per_s", 9),
        ("x real", "x_real_time", 7),
        ("CPU share", "cpu_share", 9),
        ("CPU s/rec s", "cpu_s_per_recorded_s", 11),
        ("MB/s", "image_MB_per_s", 7),
        ("ratio", "compression_ratio", 6),
        ("add p99 ms", "add_frame_p99_ms", 10),
        ("commit ms", "commit_mean_ms", 9),
    ]
    print("  ".join(f"{h:>{w}}" for h, _, w in cols))
    for r in results:
        print("  ".join(f"{str(r[k]):>{w}}" for _, k, w in cols))
    print(
        "CPU share = process CPU time / wall time (1.0 = one core busy); "
        "CPU s/rec s = CPU seconds per second of recording"
    )
    if args.out:
        out = Path(args.out)
        out.parent.mkdir(parents=True, exist_ok=True)
        payload = {
            "benchmark": "store_append",
            "config": vars(args),
            "image_content": content,
            "machine": {
                "cpus": os.cpu_count(),
                "platform": platform.platform(),
                "python": platform.python_version(),
                "loadavg_1min_before_after": [round(load_before[0], 2), round(load_after[0], 2)],
            },
            "results": results,
        }
        out.write_text(json.dumps(payload, indent=2) + "\n")
        print(f"wrote {out}")


if __name__ == "__main__":
    main()
