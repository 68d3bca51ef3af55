"""`lrm-robot ppo --config CONFIG`: improve a policy online with PPO on reward-model rewards in ManiSkill.

The config (configs/ppo/*.yaml) names the starting checkpoint, the envs,
the reward (a reward-model backend through interval-hold, the env's own
reward, or a mix) and the PPO hyper-parameters; `--set` overrides any key.
Running the same command again after a kill resumes from the last
checkpoint in the output directory.
"""

from __future__ import annotations

import argparse

from app.commands._conventions import add_command, add_fresh_option, add_output_dir_option, start_fresh
from app.commands._options import (add_config_option, add_report_to_option, add_set_option, load_command_config,
                                   report_to_flag)
from app.errors import UsageError

ORDER = 70


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = add_command(
        subparsers,
        "ppo",
        help="PPO in ManiSkill with reward-model rewards (interval-hold), from a policy checkpoint",
        description=(
            "Run PPO + GAE on vectorised ManiSkill envs (AsyncVectorEnv workers on a CPU, the GPU backend "
            "where CUDA exists), starting from a policy checkpoint, with the reward of any reward-model backend "
            "queried every K steps and held in between (only the envs due for a query render), optionally mixed "
            "with the env's dense reward, or the env reward alone (the oracle arm). Writes OUTPUT/metrics.jsonl, "
            "OUTPUT/metrics.rrd, OUTPUT/learning_curve.png, OUTPUT/checkpoints/last and the final OUTPUT/policy "
            "(--report-to tensorboard or wandb: the same rows there too); "
            "the same command continues a killed run from OUTPUT/checkpoints/last; --fresh starts over."
        ),
        example="lrm-robot ppo --config configs/ppo/pickcube_oracle.yaml --output-dir outputs/ppo/pickcube_oracle",
    )
    add_config_option(parser, "YAML config (see configs/ppo/)")
    add_output_dir_option(parser, "where metrics and checkpoints go (continued if it holds a checkpoint)")
    parser.add_argument("--checkpoint", metavar="DIR", help="the policy checkpoint to start from")
    parser.add_argument("--iterations", type=int, help="PPO iterations in total")
    add_fresh_option(parser, "OUTPUT", old=["--no-resume"])
    add_report_to_option(parser, "also send the per-iteration metrics to: tensorboard (OUTPUT/tensorboard/), wandb "
                                 "(when installed); OUTPUT/metrics.jsonl is always written (jsonl, none: it alone)")
    add_set_option(parser)
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    from app.ppo.config import PPOConfig
    from app.ppo.loop import PPOSetupError, train_ppo
    from policies.errors import PolicyError

    flags = {"output_dir": args.output_dir, "policy.checkpoint": args.checkpoint, "iterations": args.iterations,
             "report_to": report_to_flag(args)}
    config = load_command_config(args, PPOConfig, flags)
    if args.fresh:
        start_fresh(config.output_dir)
    try:
        result = train_ppo(config)
    except (PPOSetupError, PolicyError) as exc:
        raise UsageError(str(exc)) from None
    print(result.summary())
    return 0
