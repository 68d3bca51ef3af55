"""`lrm-robot view STORE --episode I`: one episode in rerun (saved .rrd or a live viewer)."""

from __future__ import annotations

import argparse
import logging
import pathlib

from app.commands._conventions import add_command
from app.errors import UsageError

log = logging.getLogger(__name__)


ORDER = 30

def register(subparsers: argparse._SubParsersAction) -> None:
    parser = add_command(
        subparsers,
        "view",
        help="show one episode in rerun, or save it as a .rrd recording",
        description=(
            "Log one episode of a store to rerun: camera frames, state, action and reward traces "
            "on the 'frame' and 'time' timelines."
        ),
        example="lrm-robot view outputs/demos/pickcube --episode 0 --save episode-0.rrd",
    )
    parser.add_argument("store", help="path to the episode store")
    parser.add_argument("--episode", type=int, required=True, metavar="I", help="episode index (see `store info`)")
    target = parser.add_mutually_exclusive_group(required=True)
    target.add_argument("--save", metavar="FILE.rrd", help="write a rerun recording to this file")
    target.add_argument("--spawn", action="store_true",
                        help="open the rerun viewer (listening on localhost only) and stream the episode to it")
    parser.set_defaults(handler=run)


def _expected_errors() -> tuple[type[BaseException], ...]:
    from app.rerun_viewer import ViewerError

    return (ViewerError,)


EXPECTED_ERRORS = _expected_errors()


def run(args: argparse.Namespace) -> int:
    import rerun as rr

    from app.rerun_log import log_episode
    from app.rerun_viewer import check_viewer, spawn_viewer
    from common.outputs import check_output_file
    from recordings.store import EpisodeStore

    # where the episode goes is checked before the store is read
    if args.save:
        out = pathlib.Path(args.save)
        if out.suffix != ".rrd":
            raise UsageError(f"--save {args.save}: the file name must end in .rrd")
        check_output_file(out, "--save")
    else:
        check_viewer()
    store = EpisodeStore.open(args.store, mode="r")
    if not 0 <= args.episode < store.num_episodes:
        raise UsageError(f"episode {args.episode} does not exist: {args.store} has {store.num_episodes} episodes")
    # Check the bytes first: damage would otherwise show only after its frames were logged.
    store.verify([args.episode], record=False)
    store.record(args.episode)  # one line, exit 2, if the episode is damaged
    if args.save:
        out.parent.mkdir(parents=True, exist_ok=True)
    recording = rr.RecordingStream("lrm-robot", recording_id=f"{pathlib.Path(args.store).name}-episode-{args.episode}")
    if args.save:
        recording.save(str(out))
    else:
        spawn_viewer(recording)  # bound to localhost, unlike rerun's own spawn()
    frames = log_episode(recording, store, args.episode)
    recording.flush()
    recording.disconnect()
    where = str(out) if args.save else "the rerun viewer"
    print(f"logged episode {args.episode} ({frames} frames) to {where}")
    return 0
