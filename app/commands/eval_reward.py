"""`lrm-robot eval-reward --config CONFIG`: measure a reward backend on held-out episodes with ground truth.

The config (configs/lrm/eval/*.yaml, `lrm.evaluation.reward_eval.RewardEvalConfig`)
names the episode sources, the backend YAML, which episodes (the dataset
builder's seeded held-out split, or all) and what to score; the command
writes OUTPUT/metrics.json (progress, completion, contrastive and
per-trajectory metrics; NaN written as null), OUTPUT/metrics.jsonl (the
summary numbers as one row; `--report-to` adds TensorBoard or W&B) and PNGs
(cumulative accuracy curve, reward vs time per trajectory, ROC), and prints a
short summary. A progress bar counts the scored episodes.
"""

from __future__ import annotations

import argparse
import logging

from app.commands._conventions import add_command, add_output_dir_option
from app.commands._options import (add_config_option, add_report_to_option, add_set_option, load_command_config,
                                   report_to_flag)
from app.errors import UsageError
from common.outputs import make_output_dir
from common.progress import progress_bar

log = logging.getLogger(__name__)

ORDER = 45


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = add_command(
        subparsers,
        "eval-reward",
        help="measure a reward backend on held-out episodes (progress, completion, contrastive, vs oracle)",
        description=(
            "Score held-out episodes of episode stores or LeRobotDatasets with any reward backend "
            "(configs/lrm/backends/*.yaml) and compare with ground truth: time-based progress and the success "
            "verdict (the simulator's oracle in sim). Writes OUTPUT/metrics.json, OUTPUT/metrics.jsonl (the summary "
            "numbers; --report-to adds TensorBoard or W&B) and PNGs (run again, it evaluates again and writes them "
            "anew)."
        ),
        example="lrm-robot eval-reward --config configs/lrm/eval/lite.yaml --set 'sources=[outputs/demos/pickcube]' "
                "--output-dir outputs/eval_reward/lite",
    )
    add_config_option(parser, "YAML config (see configs/lrm/eval/)")
    add_output_dir_option(parser, "where metrics.json and the PNGs go")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")
    add_report_to_option(parser)
    add_set_option(parser)
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    from lrm.evaluation.reward_eval import RewardEvalConfig, run_reward_eval
    from lrm.types import RequestError

    flags = {"output_dir": args.output_dir or None, "report_to": report_to_flag(args)}  # "": the config's
    config = load_command_config(args, RewardEvalConfig, flags)
    make_output_dir(config.output_dir, "eval-reward", "output_dir")
    with progress_bar(desc="eval-reward", unit="episode", enabled=not args.no_progress) as bar:
        def scored(done: int, total: int) -> None:
            bar.total = total
            bar.update(done - bar.n)
            # without a bar (not a terminal, --no-progress) a log line says how far it got
            log.log(logging.DEBUG if not bar.disable else logging.INFO, "scored episode %d/%d", done, total)

        try:
            report, path = run_reward_eval(config, progress=scored)
        except (ValueError, RequestError) as exc:
            raise UsageError(str(exc).splitlines()[0] if str(exc) else type(exc).__name__) from None
    print(_summary(report))
    print(f"metrics: {path}; plots: {', '.join(report['plots']) or 'none'}")
    return 0


def _fmt(value: object) -> str:
    return "n/a" if value is None or (isinstance(value, float) and value != value) else f"{value:.3f}"


def _summary(report: dict) -> str:
    eps = report["episodes"]
    lines = [f"{report['backend']['backend']}: {eps['count']} episodes ({eps['successes']} successes), split {report['split']}"]
    if "progress" in report:
        p = report["progress"]
        lines.append(
            f"  progress    n={p['n']}: exact {_fmt(p['exact_accuracy'])}, within 0.1/0.2/0.3 "
            f"{_fmt(p['accuracy_within_0.1'])}/{_fmt(p['accuracy_within_0.2'])}/{_fmt(p['accuracy_within_0.3'])}, "
            f"MAE {_fmt(p['mae'])}, RMSE {_fmt(p['rmse'])}"
        )
    if "completion" in report:
        c = report["completion"]
        lines.append(
            f"  completion  n={c['n']}: accuracy {_fmt(c['accuracy'])}, precision {_fmt(c['precision'])}, "
            f"recall {_fmt(c['recall'])}, F1 {_fmt(c['f1'])}"
        )
    if "contrastive" in report:
        c = report["contrastive"]
        lines.append(
            f"  contrastive n={c['n']}: direction {_fmt(c['direction_accuracy'])}, "
            f"Kendall tau {_fmt(c['kendall_tau'])}, Spearman rho {_fmt(c['spearman_rho'])}"
        )
    for modality, t in report.get("trajectory", {}).items():
        lines.append(
            f"  trajectory {modality}: ROC-AUC {_fmt(t['roc_auc'])}, pairwise {_fmt(t['pairwise_accuracy'])}, "
            f"Pearson global {_fmt(t['pearson_global'])} / per-trajectory {_fmt(t['pearson_per_trajectory'])}, "
            f"monotonicity {_fmt(t['monotonicity_success'])}, VOC {_fmt(t['voc'])}"
        )
    for modality, section in report.get("openloop_reference", {}).items():
        if isinstance(section, dict) and "metrics" in section:  # the paper's definitions, under its key names
            values = ", ".join(f"{key} {_fmt(value)}" for key, value in section["metrics"].items()) or "none defined"
            lines.append(f"  paper's open-loop {modality} ({section['mode']} mode): {values}")
    return "\n".join(lines)
