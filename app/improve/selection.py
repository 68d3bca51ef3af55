"""Which episodes a round fine-tunes on: the demonstrations plus the kept rollouts, by a config rule.

The rule (`SelectionConfig`) becomes filter clauses of `policies.actor_critic.bc_train`
(their union is the training set):
- `demos`: every demonstration (source "demo");
- `rollouts`: "accepted" keeps rollouts whose verdict that counts is True
  (the operator's if given, else the LRM's: `EpisodeMeta.accepted`);
  "oracle" keeps the simulator's successes (an upper bound that shows what a
  perfect judge would give; never the default); "all" keeps every rollout
  (plain BC on everything, an ablation); "none" keeps none;
- `rounds`: rollouts of the last n rounds up to this one; None = all of them.
Aborted episodes are never selected. Calibration episodes (round 0) never
match a rollout clause: rounds start at 1.
"""

from __future__ import annotations

from typing import Any

from app.improve.config import SelectionConfig
from policies.actor_critic.bc_train import EpisodeFilter, select_episodes

__all__ = ["select_for_round", "selection_clauses"]

ROLLOUT_SOURCES = ["sim", "robot"]


def selection_clauses(config: SelectionConfig, round_: int) -> list[EpisodeFilter]:
    """The filter clauses of round `round_` (>= 1) under `config`."""
    if round_ < 1:
        raise ValueError(f"rounds start at 1, got {round_}")
    clauses = []
    if config.demos:
        clauses.append(EpisodeFilter(source=["demo"]))
    if config.rollouts != "none":
        first = 1 if config.rounds is None else max(1, round_ - config.rounds + 1)
        clause = EpisodeFilter(source=list(ROLLOUT_SOURCES), round=list(range(first, round_ + 1)))
        if config.rollouts == "accepted":
            clause.accepted = True
        elif config.rollouts == "oracle":
            clause.oracle_success = True
        clauses.append(clause)
    return clauses


def select_for_round(store: Any, config: SelectionConfig, round_: int) -> tuple[list[int], dict[str, int]]:
    """(store indices, counts by kind) of round `round_`'s training set."""
    indices = select_episodes(store, selection_clauses(config, round_))
    demos = {r.index for r in store.episodes(source="demo")}
    counts = {"demos": sum(i in demos for i in indices), "rollouts": sum(i not in demos for i in indices)}
    return indices, counts
