"""`lrm-robot score STORE --episode I --backend CONFIG --modality cont|prog|comp|all --every K`.

Scores one recorded episode the way the RL loop would (interval-hold: a query
every K frames), writes each trace into the store with its provenance, saves a
PNG of the traces against time and a metrics JSON (`lrm.score_store`), and
optionally logs the episode with its new traces to a rerun `.rrd`.

Everything that can be checked cheaply (flags, config, store, episode, camera)
is checked before the model loads, which can take minutes.
"""

from __future__ import annotations

import argparse
import logging
import pathlib

import numpy as np

from app.commands._conventions import add_command, add_output_dir_option
from app.commands._options import add_set_option, load_command_config
from app.errors import UsageError
from common.outputs import check_output_file, make_output_dir

log = logging.getLogger(__name__)


ORDER = 40

def register(subparsers: argparse._SubParsersAction) -> None:
    parser = add_command(
        subparsers,
        "score",
        help="score a recorded episode with a reward model and store the traces",
        description=(
            "Score one episode of a store with a reward backend (configs/lrm/backends/*.yaml) at every K-th "
            "frame, as the RL loop's interval-hold would; write the traces into the store, plot them, "
            "and optionally log them to a rerun .rrd."
        ),
        example="lrm-robot score outputs/demos/pickcube --episode 0 --backend configs/lrm/backends/oracle.yaml "
                "--every 10 --output-dir outputs/score",
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
    add_output_dir_option(parser, "where the PNG and metrics JSON go (default: outputs/score)", old=["--out"])
    parser.add_argument("--rrd", metavar="FILE.rrd", help="also log the episode with its traces to this rerun file")
    add_set_option(parser, help="override a backend config key")
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    from common.progress import progress_bar
    from lrm.backends import RewardBackendConfig, build_reward_backend
    from lrm.evaluation.score_episode import resolve_modalities
    from lrm.evaluation.score_store import EpisodeQueries
    from lrm.types import RequestError

    if args.every < 1:
        raise UsageError(f"--every {args.every}: must be at least 1")
    if args.rrd and not args.rrd.endswith(".rrd"):
        raise UsageError(f"--rrd {args.rrd}: the file name must end in .rrd")
    try:
        wanted = resolve_modalities(args.modality)
    except ValueError as exc:
        raise UsageError(f"--modality: {exc}") from None
    config = load_command_config(args, RewardBackendConfig, path=args.backend)
    output_dir = args.output_dir or "outputs/score"
    make_output_dir(output_dir, "score", "--output-dir")
    if args.rrd:
        check_output_file(args.rrd, "--rrd")
    modalities = tuple(m for m in wanted if m in config.modalities)
    if not modalities:
        raise UsageError(
            f"backend {config.type!r} does not answer {args.modality!r}; it answers {list(config.modalities)}"
        )
    skipped = [m for m in wanted if m not in modalities]
    if skipped:
        log.warning("backend %s does not answer %s; scoring %s", config.type, skipped, list(modalities))
    modalities = _trained_only(config, modalities, explicit=args.modality != "all")

    try:
        queries = EpisodeQueries.read(args.store, args.episode, config, modalities, every=args.every,
                                      camera=args.camera)
        model = build_reward_backend(config)
    except ValueError as exc:
        raise UsageError(str(exc)) from None
    try:
        with progress_bar(queries.total, desc=f"scoring with {config.type}", unit="query", leave=False) as bar:
            scored = queries.score(model, progress=bar.update)
    except RequestError as exc:
        raise UsageError(str(exc)) from None
    png = scored.write(output_dir)
    if args.rrd:
        _log_rrd(args.store, args.episode, pathlib.Path(args.rrd))
    for name, trace in scored.traces.items():
        values = trace[~np.isnan(trace)]
        print(f"{name}: {len(values)} queries, mean {values.mean():.3f}, last {values[-1]:.3f}")
    print(f"wrote {', '.join(scored.traces)} to episode {args.episode} of {args.store}; plot {png}")
    return 0


def _trained_only(config, modalities: tuple[str, ...], *, explicit: bool) -> tuple[str, ...]:
    """The modalities a lite checkpoint was trained for: an untrained head answers noise, not a reward.

    With `--modality all` an untrained head is left out; one named on purpose
    is scored. Either way one line per untrained head says so.
    """
    if config.type != "lite" or not config.lite.checkpoint:
        return modalities
    from lrm.backends.lite import trained_modalities

    trained = trained_modalities(config.lite.checkpoint)
    if trained is None:
        return modalities
    for m in modalities:
        if m not in trained:
            log.warning("the %s head of %s was never trained (trained: %s); %s", m, config.lite.checkpoint,
                        ", ".join(trained) or "none", "scoring it anyway as asked" if explicit else "not scored")
    kept = modalities if explicit else tuple(m for m in modalities if m in trained)
    if not kept:
        raise UsageError(f"{config.lite.checkpoint} was trained for none of {list(modalities)}; "
                         f"it was trained for {list(trained)}")
    return kept


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
