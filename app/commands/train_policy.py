"""`lrm-robot train-policy`: behaviour cloning of the small actor-critic from an episode store.

The config (configs/policies/bc_pickcube.yaml) names the store, the episode
selection, the policy architecture and the optimisation; flags and `--set`
override it. Progress and losses show on a progress bar; the checkpoint,
split and metrics land in the config's output_dir.
"""

from __future__ import annotations

import argparse

from app.config_loader import load_config
from app.errors import UsageError


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "train-policy",
        help="behaviour-clone a policy on episodes of a store",
        description=(
            "Select episodes of an episode store (demonstrations plus accepted rollouts, by the config's "
            "filter), hold some out for validation, and behaviour-clone the small actor-critic on the rest. "
            "Writes OUTPUT/checkpoints/last (config, weights, normalisation statistics, optimiser state), "
            "OUTPUT/split.json and OUTPUT/metrics.json; --resume continues from the checkpoint."
        ),
    )
    parser.add_argument("--config", metavar="FILE", required=True, help="YAML config (see configs/policies/)")
    parser.add_argument("--store", metavar="STORE", help="episode store to train on")
    parser.add_argument("--output-dir", metavar="DIR", help="where checkpoints and metrics go")
    parser.add_argument("--steps", type=int, help="optimiser steps in total")
    parser.add_argument("--resume", action="store_true", default=None, help="continue from OUTPUT/checkpoints/last")
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="override any config key")
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    from policies.errors import PolicyError
    from policies.train import BCTrainConfig, train_bc

    flags = {"store": args.store, "output_dir": args.output_dir, "steps": args.steps, "resume": args.resume}
    overrides = [f"{k}={v}" for k, v in flags.items() if v is not None] + args.set
    config = load_config(args.config, BCTrainConfig, overrides)
    try:
        result = train_bc(config)
    except PolicyError as exc:
        raise UsageError(str(exc)) from None
    print(result.summary())
    return 0
