"""`lrm-robot operate --config CONFIG`: the Textual operator app over the self-improvement rounds.

The same app for the simulator and a real arm (the config's `env.kind`).
Everything that can be checked before the screen takes over the terminal is
checked here, so a bad config still ends with one line and exit code 2; log
lines go to OUTPUT/operate.log while the app owns the terminal; `--headless`
shows a progress bar per round instead (app.operator.headless). Started again
on the same OUTPUT, the session continues the rounds recorded there;
`--fresh` deletes OUTPUT first (with the store, when it lies inside).
"""

from __future__ import annotations

import argparse
import logging
import pathlib
import sys

from app.commands._conventions import add_command, add_fresh_option, add_output_dir_option, start_fresh
from app.commands._options import add_config_option, add_set_option, config_overrides
from app.errors import UsageError
from common.config import load_config
from common.outputs import check_output_dir, make_output_dir

ORDER = 6
DEFAULT_CONFIG = pathlib.Path(__file__).resolve().parents[2] / "configs" / "operate" / "pushcube_sim.yaml"


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = add_command(
        subparsers,
        "operate",
        help="supervise rollouts and self-improvement rounds in a terminal app (sim or robot)",
        description=(
            "Run self-improvement rounds under an operator's eye: a live panel per rollout (task, step, time, "
            "camera statistics and thumbnail, a sparkline per reward modality, the LRM's verdict with its "
            "probability), a round dashboard, and keys to mark success or failure (overriding the LRM; both "
            "verdicts are stored), re-record, pause/resume, abort, emergency stop (e or Esc), next, and rerun "
            "(v: viewer, w: save .rrd of the last episode). Started again on the same OUTPUT, it continues the "
            "rounds recorded there; --fresh starts over."
        ),
        example="lrm-robot operate --config configs/operate/pushcube_sim.yaml --output-dir outputs/operate/pushcube_sim",
    )
    add_config_option(parser, "YAML config (default: configs/operate/pushcube_sim.yaml)", required=False)
    add_output_dir_option(parser, "where the report, the log, checkpoints and (by default) the store go")
    add_fresh_option(parser, "OUTPUT")
    parser.add_argument("--rounds", type=int, help="rounds to run")
    parser.add_argument("--rollouts", dest="rollouts_per_round", type=int, metavar="ROLLOUTS",
                        help="rollouts per round")
    parser.add_argument("--rrd", dest="rerun_dir", metavar="DIR",
                        help="save every committed episode as DIR/episode-<i>.rrd")
    parser.add_argument("--auto-next", action="store_true", default=None,
                        help="start the next rollout without waiting for the operator")
    parser.add_argument("--headless", action="store_true",
                        help="no screen: run every round unattended (with --auto-next) and exit when done")
    add_set_option(parser)
    parser.set_defaults(handler=run)


def load_operate_config(path: str | pathlib.Path | None, overrides: list[str]):
    """The config with an improve run's checkpoints filled in, checked enough to fail before the app starts."""
    from app.operator.config import OperateConfig

    config = load_config(path or DEFAULT_CONFIG, OperateConfig, overrides)
    try:
        config = config.resolved()
    except ValueError as exc:
        raise UsageError(str(exc)) from None
    for key, value in (("policy.checkpoint", config.policy.checkpoint),
                       ("judge.backend.lite.checkpoint",
                        config.judge.backend.lite.checkpoint if config.judge.backend.type == "lite" else None)):
        if value is not None and not pathlib.Path(value).exists():
            raise UsageError(f"{key}: {value} does not exist")
    if config.judge.backend.type == "lite" and not config.judge.backend.lite.checkpoint:
        raise UsageError("judge.backend.lite.checkpoint is empty: name a trained lite judge, or set improve_run "
                         "to an `lrm-robot improve` run directory")
    try:
        config.judge.judge_config()
    except ValueError as exc:
        raise UsageError(f"judge: {exc}") from None
    check_output_dir(config.output_dir, "output_dir")
    check_output_dir(config.store_path, "store")
    if config.rerun_dir is not None:
        check_output_dir(config.rerun_dir, "rerun_dir")
    return config


def run(args: argparse.Namespace) -> int:
    flags = {"output_dir": args.output_dir, "rounds": args.rounds, "rollouts_per_round": args.rollouts_per_round,
             "rerun_dir": args.rerun_dir, "auto_next": args.auto_next}
    config = load_operate_config(args.config, config_overrides(args, flags))
    if args.headless and not config.auto_next:
        raise UsageError("--headless has no operator to press `n`: add --auto-next (or auto_next: true)")
    if args.fresh:
        start_fresh(config.output_dir)

    from app.operator.app import OperatorApp
    from app.operator.headless import HeadlessProgress
    from app.operator.session import OperatorSession

    out = make_output_dir(config.output_dir, "operate")
    root = logging.getLogger()
    saved = root.handlers[:]
    handler = logging.FileHandler(out / "operate.log")
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    root.handlers = [handler]  # a stderr handler would scribble over the app's screen
    bars = None
    try:
        session = OperatorSession(config)
        app = OperatorApp(session, exit_when_done=args.headless)
        if args.headless:  # no screen: a bar per round on the terminal the command started on
            bars = HeadlessProgress(session.emit, file=sys.stderr)
            session.emit = bars
        app.run(headless=args.headless)
        session.done.wait(120)  # the session's thread closes the store and the env after the screen has gone
    finally:
        if bars is not None:
            bars.close()
        root.handlers = saved
        handler.close()
    report = out / "operate-report.json"
    # a session that failed before opening its store wrote no report: announce only one that exists
    where = f"report: {report}; " if report.is_file() else "no report (the session ended before it started); "
    print(f"phase: {session.phase}; store: {config.store_path}; {where}log: {out / 'operate.log'}")
    for stats in session.rounds:
        rate = stats.success_rate
        print(f"round {stats.round}: {stats.rollouts} rollouts, success {'-' if rate is None else f'{rate:.0%}'}, "
              f"accepted {stats.accepted}, fine-tune loss {stats.train_loss}")
    return 1 if session.phase in ("error", "stopped") else 0
