"""`lrm-robot train-policy`: train a policy on episodes of an episode store.

The config names the store, the episode selection, the policy and the
optimisation; flags and `--set` override it. A config with `type: pi05`
(configs/policies/pi05_finetune_pickcube.yaml) fine-tunes pi0.5 with LeRobot's
training pieces; any other (configs/policies/bc_pickcube.yaml) behaviour-clones
the small actor-critic. Progress and losses show on a progress bar; the
checkpoint, split and metrics land in the config's output_dir. Run again on
the same output_dir, training continues from its checkpoint; `--fresh` starts
over.
"""

from __future__ import annotations

import argparse

from app.commands._conventions import add_command, add_fresh_option, add_output_dir_option, start_fresh
from app.commands._options import (add_config_option, add_report_to_option, add_set_option, config_overrides,
                                   report_to_flag)
from app.errors import UsageError
from common.outputs import make_output_dir


ORDER = 50

def register(subparsers: argparse._SubParsersAction) -> None:
    parser = add_command(
        subparsers,
        "train-policy",
        help="behaviour-clone a policy on episodes of a store",
        description=(
            "Select episodes of an episode store (demonstrations plus accepted rollouts, by the config's "
            "filter), hold some out for validation, and train on the rest: pi0.5 through LeRobot for a config with "
            "`type: pi05`, otherwise behaviour cloning of the small actor-critic. "
            "Writes OUTPUT/checkpoints/last (config, weights, normalisation statistics, optimiser state), "
            "OUTPUT/split.json, OUTPUT/metrics.json and OUTPUT/metrics.jsonl (one row per logged step; "
            "--report-to adds TensorBoard or W&B). Run again on the same OUTPUT, training continues from "
            "its checkpoint (up to --steps in total); --fresh starts over."
        ),
        example="lrm-robot train-policy --config configs/policies/bc_pickcube.yaml --store outputs/demos/pickcube "
                "--output-dir outputs/policies/bc_pickcube",
    )
    add_config_option(parser, "YAML config (see configs/policies/)")
    parser.add_argument("--store", metavar="STORE", help="episode store to train on")
    add_output_dir_option(parser, "where checkpoints and metrics go (continued if it holds a checkpoint)")
    parser.add_argument("--steps", type=int, help="optimiser steps in total")
    add_fresh_option(parser, "OUTPUT", resume="--resume")
    add_report_to_option(parser)
    add_set_option(parser)
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    from policies.errors import PolicyError
    from policies.factory import load_train_config, train_policy

    # continuing is the CLI's convention; `--set resume=false` (after the flags) still refuses to train over a run
    flags = {"store": args.store, "output_dir": args.output_dir, "steps": args.steps, "resume": "true",
             "report_to": report_to_flag(args)}
    config = load_train_config(args.config, config_overrides(args, flags))
    if args.fresh:
        start_fresh(config.output_dir)
    make_output_dir(config.output_dir, "train-policy", "output_dir")
    try:
        result = train_policy(config)
    except PolicyError as exc:
        raise UsageError(str(exc)) from None
    print(result.summary())
    return 0
