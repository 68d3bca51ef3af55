"""`lrm-robot eval-policy`: roll a policy checkpoint out in ManiSkill and report the oracle success rate.

The success rate comes with a 95% Wilson interval; `--output-dir DIR` writes
it as DIR/report.json; `--record STORE` also writes every episode into an
episode store (source "sim", the policy id and the oracle success flag), e.g.
as rollouts for a reward model to judge. An evaluation is not continued: run
again, it evaluates again and writes report.json anew.
"""

from __future__ import annotations

import argparse
import json
import pathlib
from dataclasses import dataclass, field

from app.commands._conventions import DeprecatedAlias, add_command, add_output_dir_option
from app.commands._options import add_config_option, add_set_option, load_command_config
from app.errors import UsageError
from common.numbers import Count, NonNegative, Seed, Steps
from common.outputs import check_output_dir, check_output_file, make_output_dir
from policies.pi05.policy import Pi05Config
from sim.maniskill_env import SimEnvConfig


@dataclass
class EvalPolicyConfig:
    """What to roll out, where, and how often."""

    checkpoint: pathlib.Path | None = None  # a checkpoint directory; None with policy: random
    policy: str = "checkpoint"  # "checkpoint" or "random" (uniform actions: the floor to beat)
    # pi0.5 with an explicit observation mapping (see configs/policies/pi05_pickcube.yaml); a pi0.5
    # checkpoint given as `checkpoint` alone feeds env camera X to observation.images.X.
    pi05: Pi05Config | None = None
    env: SimEnvConfig = field(default_factory=SimEnvConfig)
    episodes: Count = 50
    seed: Seed = 10_000  # env seed of the first episode; keep it apart from the demos' seeds
    max_steps: Steps | None = None  # None = the env's limit (env.max_episode_steps)
    policy_id: str = ""  # recorded with each episode; default: the checkpoint path
    record: pathlib.Path | None = None  # episode store to record into; None = do not record
    round: NonNegative = 0
    output_dir: pathlib.Path | None = None  # write the report as OUTPUT/report.json
    output: pathlib.Path | None = None  # also write the report as JSON to this file (the earlier way)

    def __post_init__(self) -> None:
        if self.policy not in ("checkpoint", "random"):
            raise ValueError(f"policy must be 'checkpoint' or 'random', got {self.policy!r}")
        if self.policy == "checkpoint" and self.checkpoint is None and self.pi05 is None:
            raise ValueError("checkpoint is required (or a pi05 section, or policy: random)")
        if self.episodes <= 0:
            raise ValueError(f"episodes must be positive, got {self.episodes}")


ORDER = 60

def register(subparsers: argparse._SubParsersAction) -> None:
    parser = add_command(
        subparsers,
        "eval-policy",
        help="roll a policy out in ManiSkill; oracle success rate with a 95%% interval",
        description=(
            "Roll a policy checkpoint out in ManiSkill for N episodes (seeds seed, seed+1, ...), report the "
            "simulator's success rate with a 95% Wilson confidence interval, and optionally record the "
            "episodes into an episode store. Writes OUTPUT/report.json with --output-dir."
        ),
        example="lrm-robot eval-policy --config configs/policies/eval_pickcube.yaml "
                "--checkpoint outputs/policies/bc_pickcube/checkpoints/last --episodes 100 "
                "--output-dir outputs/eval/bc_pickcube",
    )
    add_config_option(parser, "YAML config (see configs/policies/eval_pickcube.yaml)", required=False)
    parser.add_argument("--checkpoint", metavar="DIR", help="policy checkpoint directory")
    parser.add_argument("--random", action="store_true", help="evaluate uniform random actions instead")
    parser.add_argument("--episodes", "-n", type=int, metavar="N", help="episodes to roll out")
    parser.add_argument("--seed", type=int, help="env seed of the first episode")
    parser.add_argument("--record", metavar="STORE", help="record the episodes into this store")
    add_output_dir_option(parser, "write the report as OUTPUT/report.json")
    parser.add_argument("--output", metavar="FILE", action=DeprecatedAlias,
                        advice="use --output-dir DIR (writes DIR/report.json)")
    add_set_option(parser)
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    flags = {"checkpoint": args.checkpoint, "episodes": args.episodes, "seed": args.seed,
             "record": args.record, "output_dir": args.output_dir, "output": args.output,
             "policy": "random" if args.random else None}
    config = load_command_config(args, EvalPolicyConfig, flags)
    # before the evaluation: a report that cannot be written afterwards loses it
    if config.output_dir is not None:
        check_output_dir(config.output_dir, "output_dir")
    if config.output is not None:
        check_output_file(config.output, "output")
    if config.record is not None:
        check_output_dir(config.record, "record")

    from app.evaluate import evaluate_in_sim
    from policies.errors import PolicyError
    from policies.factory import load_policy
    from policies.scripted import RandomPolicy

    try:
        if config.policy == "random":
            policy = RandomPolicy(seed=config.seed)  # evaluate_policy gives it the env's action box
            policy_id = config.policy_id or "random"
        else:
            # --checkpoint names the weights; a pi05 section says how the env feeds them
            checkpoint = config.checkpoint or config.pi05.pretrained
            policy = load_policy(checkpoint, runtime=config.pi05)
            policy_id = config.policy_id or str(checkpoint)
        report = evaluate_in_sim(policy, config.env, config.episodes, seed=config.seed, max_steps=config.max_steps,
                                 policy_id=policy_id, record_to=config.record, round=config.round)
    except PolicyError as exc:
        raise UsageError(str(exc)) from None
    print(report.summary())
    if config.record is not None:
        print(f"recorded episodes {report.recorded[0]}-{report.recorded[-1]} into {config.record}")
    text = json.dumps(report.to_json(), indent=2) + "\n"
    if config.output_dir is not None:
        (make_output_dir(config.output_dir, "eval-policy") / "report.json").write_text(text)
        print(f"report: {config.output_dir / 'report.json'}")
    if config.output is not None:
        config.output.parent.mkdir(parents=True, exist_ok=True)
        config.output.write_text(text)
    return 0

