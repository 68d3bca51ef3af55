"""`lrm-robot improve`: the self-improvement rounds, the application's main job.

Roll the policy out N times, judge every terminal frame with the completion
reward model, keep the accepted rollouts, fine-tune on demonstrations plus
kept rollouts, evaluate, repeat for R rounds (app.improve.loop). The run
directory holds the store, the checkpoints, state.json, report.json,
success.png and metrics.jsonl (a row per round; `--report-to` adds
TensorBoard or W&B); the same command run again continues an interrupted run.

`--operator` puts a person at the terminal: on a robot they confirm every
scene reset (Enter), and after every rollout, calibration and evaluation
episode they may give its verdict (y / n; Enter leaves it to the judge),
stored as `operator_verdict` next to the LRM's; calibration episodes
recorded earlier without a label are asked about when the run resumes.
"""

from __future__ import annotations

import argparse
import json
import pathlib
import sys
from typing import Any, TextIO

from app.commands._conventions import add_command, add_fresh_option, add_output_dir_option
from app.commands._options import (add_config_option, add_report_to_option, add_set_option, load_command_config,
                                   report_to_flag)
from app.errors import UsageError
from common.outputs import check_output_dir

ORDER = 5
DEFAULT_CONFIG = pathlib.Path(__file__).resolve().parents[2] / "configs" / "improve" / "pushcube_cpu.yaml"


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = add_command(
        subparsers,
        "improve",
        help="self-improvement rounds: roll out, judge, keep the successes, fine-tune, evaluate",
        description=(
            "Run R self-improvement rounds: N rollouts recorded into the run's episode store, the completion "
            "reward model's verdict on each rollout's last frame(s), fine-tuning on the demonstrations plus the "
            "accepted rollouts, and an evaluation per round (the oracle in simulation; on a robot, rollouts judged "
            "by the operator's verdict where given, else the LRM's). The config's env section picks ManiSkill or a "
            "robot. Writes OUTPUT/report.json, OUTPUT/success.png and OUTPUT/metrics.jsonl (a row per round; --report-to "
            "adds TensorBoard or W&B) and prints success per round with the filter's "
            "precision and recall. Run the same command again to continue an interrupted run (a finished one prints "
            "its report again); --fresh starts over."
        ),
        example="lrm-robot improve --config configs/improve/pushcube_cpu.yaml --output-dir outputs/improve-pushcube-cpu",
    )
    add_config_option(parser, "YAML config (default: configs/improve/pushcube_cpu.yaml)", required=False)
    add_output_dir_option(parser, "run directory (continued if it holds a run)")
    parser.add_argument("--rounds", type=int, help="number of rounds (may grow when resuming)")
    parser.add_argument("--seed", type=int, help="the run seed (config key seed): 0, 1, 2 ... repeat the run on other "
                        "demos, rollouts and training seeds, evaluated on the same episodes")
    add_fresh_option(parser, "the run directory", old=["--restart"])
    parser.add_argument("--no-progress", action="store_true", help="no progress bars")
    add_report_to_option(parser)
    parser.add_argument("--operator", action="store_true",
                        help="ask at the terminal: the scene reset before each robot rollout, a verdict after each")
    add_set_option(parser)
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    from app.improve.config import ImproveConfig

    flags = {"output_dir": args.output_dir, "rounds": args.rounds, "seed": args.seed, "progress": False if args.no_progress else None,
             "report_to": report_to_flag(args)}
    config = load_command_config(args, ImproveConfig, flags, path=args.config or DEFAULT_CONFIG)

    from app.improve.loop import ImproveRun, reset_run
    from app.improve.report import format_table
    from lrm.types import RequestError
    from policies.errors import PolicyError

    if args.fresh:
        reset_run(pathlib.Path(config.output_dir))  # only a folder lrm-robot made (it holds the marker)
    check_output_dir(config.output_dir, "output_dir")
    if config.env.is_robot and not args.operator and config.env.robot.config.reset.wait_for_operator:
        raise UsageError(f"{config.env.robot}: the robot's reset phase waits for the operator (reset.wait_for_operator); "
                         "run with --operator to confirm each reset at the terminal")
    operator = TerminalOperator(sys.stdin, sys.stderr) if args.operator else None
    improve = ImproveRun(config) if operator is None else operator.attach(ImproveRun, config)
    try:
        report = improve.run()
    except (PolicyError, RequestError) as exc:
        raise UsageError(str(exc)) from None
    out = pathlib.Path(config.output_dir)
    print()
    print(format_table(report))
    print(f"report: {out / 'report.json'}  plot: {out / 'success.png'}  store: {out / 'store'}")
    print("phases (s): " + json.dumps(report["phases"]))
    return 0


class TerminalOperator:
    """The operator at the terminal (module doc): the robot's reset confirmation and each episode's verdict."""

    def __init__(self, answers: TextIO, prompts: TextIO) -> None:
        self.answers = answers
        self.prompts = prompts
        self.run: Any = None

    def attach(self, run_class: Any, config: Any) -> Any:
        """An ImproveRun (`run_class`) whose robot env asks for each reset and whose episodes get asked about."""
        from app.env_choice import build_env

        self.run = run_class(config, events=self.events,
                             env_factory=lambda section: build_env(section, operator_ready=self.ready))
        return self.run

    def _ask(self, question: str) -> str:
        print(question, end="", file=self.prompts, flush=True)
        line = self.answers.readline()
        if not line:  # end of input: nobody is there to answer
            raise UsageError("--operator: the terminal's input ended; run the same command again to continue")
        return line.strip().lower()

    def ready(self) -> bool:
        """Polled by the robot's reset phase: blocks until the operator presses Enter."""
        self._ask("reset the scene, then press Enter to start the next rollout ")
        return True

    def events(self, name: str, info: dict[str, Any]) -> None:
        if name not in ("rollout-done", "unlabelled") or info.get("index") is None:
            return
        store = self.run.eval_store if info["phase"] == "eval" else self.run.store
        question = (f"{info['phase']} round {info['round']} slot {info['slot']} (episode {info['index']}): "
                    "success? [y/n, Enter: the judge decides] ")
        while (answer := self._ask(question)) not in ("y", "n", ""):
            print("answer y, n or just Enter", file=self.prompts)
        if answer:
            store.update_meta(info["index"], operator_verdict=answer == "y")
