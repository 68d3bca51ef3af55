"""`lrm-robot score STORE --episode I --backend CONFIG --modality cont|prog|comp|all --every K`.

Scores one recorded episode the way the RL loop would (interval-hold: a query
every K frames, see `lrm.score_episode`), writes each trace into the store
(`reward/<trace name>`: the value at query frames, NaN in between), records
where it came from in the episode's `extra["reward_traces"]`, saves a PNG of
the traces against time and a metrics JSON, and optionally logs the episode
with its new traces to a rerun `.rrd`.

Everything that can be checked cheaply (flags, config, store, episode, camera)
is checked before the model loads, which can take minutes.
"""

from __future__ import annotations

import argparse
import json
import logging
import pathlib
import time

import numpy as np

from common.config import load_config
from app.errors import UsageError

log = logging.getLogger(__name__)


ORDER = 40

def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "score",
        help="score a recorded episode with a reward model and store the traces",
        description=(
            "Score one episode of a store with a reward backend (configs/lrm/backends/*.yaml) at every K-th "
            "frame, as the RL loop's interval-hold would; write the traces into the store, plot them, "
            "and optionally log them to a rerun .rrd."
        ),
    )
    parser.add_argument("store", help="path to the episode store")
    parser.add_argument("--episode", type=int, required=True, metavar="I", help="episode index (see `store info`)")
    parser.add_argument(
        "--backend", required=True, metavar="CONFIG", help="backend YAML, e.g. configs/lrm/backends/qwen3vl.yaml"
    )
    parser.add_argument(
        "--modality", default="all", metavar="M", help="cont | prog | comp | all (default: all the backend answers)"
    )
    parser.add_argument("--every", type=int, default=10, metavar="K", help="query every K frames (default 10)")
    parser.add_argument("--camera", metavar="NAME", help="camera to score (default: the store's first camera)")
    parser.add_argument("--out", default="outputs/score", metavar="DIR", help="where the PNG and metrics JSON go")
    parser.add_argument("--rrd", metavar="FILE.rrd", help="also log the episode with its traces to this rerun file")
    parser.add_argument(
        "--set", action="append", default=[], metavar="KEY=VALUE", help="override a backend config key"
    )
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    from lrm.backends import RewardBackendConfig
    from lrm.score_episode import query_steps, resolve_modalities
    from recordings.errors import StoreLockedError
    from recordings.store import EpisodeStore

    if args.every < 1:
        raise UsageError(f"--every {args.every}: must be at least 1")
    if args.rrd and not args.rrd.endswith(".rrd"):
        raise UsageError(f"--rrd {args.rrd}: the file name must end in .rrd")
    try:
        wanted = resolve_modalities(args.modality)
    except ValueError as exc:
        raise UsageError(f"--modality: {exc}") from None
    config = load_config(args.backend, RewardBackendConfig, args.set)
    modalities = tuple(m for m in wanted if m in config.modalities)
    if not modalities:
        raise UsageError(
            f"backend {config.type!r} does not answer {args.modality!r}; it answers {list(config.modalities)}"
        )
    skipped = [m for m in wanted if m not in modalities]
    if skipped:
        log.warning("backend %s does not answer %s; scoring %s", config.type, skipped, list(modalities))

    store = EpisodeStore.open(args.store, mode="r")
    if not 0 <= args.episode < store.num_episodes:
        raise UsageError(f"episode {args.episode} does not exist: {args.store} has {store.num_episodes} episodes")
    camera = args.camera or next(iter(store.cameras), None)
    if camera not in store.cameras:
        raise UsageError(f"camera {camera!r} is not in {args.store} (cameras: {', '.join(store.cameras) or 'none'})")
    try:  # fail now, not after minutes of scoring, if a recorder holds the writer lock
        EpisodeStore.open(args.store, mode="a").close()
    except StoreLockedError as exc:
        raise UsageError(f"{exc.args[0].split(';')[0]}; score it when that writer has finished") from None
    record = store.record(args.episode)
    steps = query_steps(record.length, args.every)
    frames, times, stored = _read_episode(store, args.episode, camera, set(steps.tolist()))
    oracle = _oracle_values(config, stored, steps) if config.type == "oracle" else None

    scores, seconds, failures = _score(config, frames, record.meta.task, modalities, steps, oracle)

    traces = {config.trace_name(m): scores.trace(m, record.length) for m in modalities}
    provenance = {
        **config.describe(),
        "every": args.every,
        "camera": camera,
        "queries": len(steps),
        "scored_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }
    with EpisodeStore.open(args.store, mode="a") as writer:
        for name, trace in traces.items():
            writer.write_rewards(args.episode, name, trace)
        extra = dict(writer.record(args.episode).meta.extra)
        extra["reward_traces"] = {**extra.get("reward_traces", {}), **{n: provenance for n in traces}}
        writer.update_meta(args.episode, extra=extra)

    out = pathlib.Path(args.out)
    stem = f"{pathlib.Path(args.store).name}_episode{args.episode}_{config.type}"
    png = _plot(out / f"{stem}.png", scores, modalities, config, times, record.length, args)
    metrics = {
        **provenance,
        "store": str(args.store),
        "episode": args.episode,
        "task": record.meta.task,
        "frames": record.length,
        "seconds": round(seconds, 3),
        "seconds_per_query": round(seconds / max(1, sum(len(scores.rewards[m]) for m in modalities)), 4),
        "traces": {config.trace_name(m): _summary(scores.values(m)) for m in modalities},
        "parse_failures": failures,
    }
    (out / f"{stem}.json").write_text(json.dumps(metrics, indent=1))
    if args.rrd:
        _log_rrd(args.store, args.episode, pathlib.Path(args.rrd))
    for name, trace in traces.items():
        values = trace[~np.isnan(trace)]
        print(f"{name}: {len(values)} queries, mean {values.mean():.3f}, last {values[-1]:.3f}")
    print(f"wrote {', '.join(traces)} to episode {args.episode} of {args.store}; plot {png}")
    return 0


def _read_episode(store, index: int, camera: str, wanted: set[int]):
    """Query frames (copied: iter_frames yields views), all timestamps, all stored reward traces."""
    frames, times, stored = [], [], {}
    for t, frame in enumerate(store.iter_frames(index)):
        if t in wanted:
            frames.append(np.array(frame.images[camera]))
        times.append(frame.timestamp)
        for name, value in frame.rewards.items():
            stored.setdefault(name, []).append(value)
    return frames, np.asarray(times), {k: np.asarray(v) for k, v in stored.items()}


def _oracle_values(config, stored: dict[str, np.ndarray], steps: np.ndarray) -> list[dict[str, float]]:
    """The oracle of a stored episode reads the sim's values recorded as traces `dense_reward` and `success`."""
    if "dense_reward" not in stored:
        raise UsageError(
            "the oracle backend needs the simulator's per-frame values: this episode has no 'dense_reward' "
            "trace (record it in simulation, with 'success' for completion)"
        )
    values = []
    for t in steps:
        entry = {"dense_reward": float(stored["dense_reward"][t])}
        if "success" in stored:
            entry["success"] = float(stored["success"][t])
        values.append({k: v for k, v in entry.items() if not np.isnan(v)})
    return values


def _score(config, frames, task, modalities, steps, oracle):
    from lrm.backends import make_reward_backend
    from lrm.score_episode import score_query_frames
    from lrm.types import RequestError

    try:
        model = make_reward_backend(config)
    except (OSError, ValueError, ImportError) as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise UsageError(f"cannot build the {config.type} backend: {first}") from None
    total = len(steps) * len(modalities)
    started = time.perf_counter()
    try:
        from rich.progress import Progress

        with Progress(transient=True) as bar:
            task_id = bar.add_task(f"scoring with {config.type}", total=total)
            scores = score_query_frames(
                model, frames, task, modalities, steps=steps, oracle=oracle, progress=lambda n: bar.advance(task_id, n)
            )
    except RequestError as exc:
        raise UsageError(str(exc)) from None
    seconds = time.perf_counter() - started
    failures = {config.trace_name(m): scores.failures(m) for m in modalities}
    for name, count in failures.items():
        if count:
            log.warning("%s: %d of %d answers could not be parsed (fallback values used)", name, count, len(steps))
    return scores, seconds, failures


def _plot(path, scores, modalities, config, times, length, args) -> pathlib.Path:
    from lrm.plots import plot_traces

    names = {m: config.trace_name(m) for m in modalities}
    return plot_traces(
        path,
        times,
        {names[m]: scores.held(m, length) for m in modalities},
        times[scores.steps],
        {names[m]: scores.values(m) for m in modalities},
        title=f"{pathlib.Path(args.store).name} episode {args.episode}: {config.type}, every {args.every} frames",
    )


def _summary(values: np.ndarray) -> dict[str, float]:
    return {
        "mean": float(values.mean()),
        "min": float(values.min()),
        "max": float(values.max()),
        "last": float(values[-1]),
    }


def _log_rrd(store_path: str, index: int, out: pathlib.Path) -> None:
    import rerun as rr

    from app.rerun_log import log_episode
    from recordings.store import EpisodeStore

    out.parent.mkdir(parents=True, exist_ok=True)
    name = f"{pathlib.Path(store_path).name}-episode-{index}-score"
    recording = rr.RecordingStream("lrm-robot", recording_id=name)
    recording.save(str(out))
    log_episode(recording, EpisodeStore.open(store_path, mode="r"), index)
    recording.flush()
    recording.disconnect()
    log.info("rerun recording written to %s", out)
