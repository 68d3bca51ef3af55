"""Which episodes of a store to use: filters, the improve round's selection, train/validation splits.

Storage apart from sampling (as in Diffusion Policy's replay buffer): the
store keeps episodes and answers `store.episodes(*filters)`; what a training
run takes from it is decided here.

A selection is a list of `EpisodeFilter` clauses, their union taken (e.g.
"the demonstrations, plus sim/robot rollouts the LRM or the operator
accepted"). The improve loop's rule (`SelectionConfig`) becomes such clauses
per round (`selection_for_round`):
- `demos`: every demonstration (source "demo");
- `rollouts`: "accepted" keeps rollouts whose verdict that counts is True
  (the operator's if given, else the LRM's: `EpisodeMeta.accepted`);
  "oracle" keeps the simulator's successes (an upper bound that shows what a
  perfect judge would give; never the default); "all" keeps every rollout
  (plain BC on everything, an ablation); "none" keeps none;
- `rounds`: rollouts of the last n rounds up to this one; None = all of them.
Aborted episodes are never selected. Calibration episodes (round 0) never
match a rollout clause: rounds start at 1.

Train/validation splits are by episode (frames of one episode are strongly
correlated; a frame-level split would make validation meaningless). There
are two, kept apart because runs already on disk depend on each: policy
training's `shuffled_split` (its split.json is reused on resume) and the
reward model's `hashed_split`, stratified by outcome.
"""

from __future__ import annotations

import dataclasses
import hashlib
from collections.abc import Collection, Sequence
from dataclasses import dataclass
from typing import Any, Literal, TYPE_CHECKING

import numpy as np

from recordings.episode import EpisodeMeta

if TYPE_CHECKING:
    from recordings.episode import EpisodeSource

__all__ = [
    "ROLLOUT_SOURCES",
    "UNSET",
    "EpisodeFilter",
    "SelectionConfig",
    "default_selection",
    "hash_rank",
    "hashed_split",
    "select_for_round",
    "selection_for_round",
    "shuffled_split",
]

ROLLOUT_SOURCES = ["sim", "robot"]


class _Unset:
    """Filter value matching episodes whose field is None (e.g. no operator verdict yet)."""

    def __repr__(self) -> str:
        return "UNSET"


UNSET: Any = _Unset()


def _matches(value: Any, wanted: Any) -> bool:
    if wanted is None:
        return True
    if wanted is UNSET:
        return value is None
    if isinstance(wanted, Collection) and not isinstance(wanted, str):
        return value in wanted
    return bool(value == wanted)


@dataclass
class EpisodeFilter:
    """One clause of a selection: every field given must match (None = any; UNSET = field is None).

    `source`, `task` and `round` take lists of allowed values; `accepted` is
    the operator's verdict if given, else the LRM's (EpisodeMeta.accepted).
    """

    source: list[str] | None = None
    task: list[str] | None = None
    round: list[int] | None = None
    accepted: bool | None = None
    oracle_success: bool | None = None
    lrm_verdict: bool | None = None
    operator_verdict: bool | None = None
    aborted: bool | None = False  # aborted episodes are left out unless asked for

    def matches(self, meta: EpisodeMeta) -> bool:
        return all(_matches(getattr(meta, f.name), getattr(self, f.name)) for f in dataclasses.fields(self))


def default_selection() -> list[EpisodeFilter]:
    """The demonstrations, plus rollouts (sim or robot) that the LRM or the operator accepted."""
    return [EpisodeFilter(source=["demo"]), EpisodeFilter(source=list(ROLLOUT_SOURCES), accepted=True)]


@dataclass
class SelectionConfig:
    """Which episodes each round fine-tunes on (the union of demos and kept rollouts)."""

    demos: bool = True
    rollouts: Literal["accepted", "oracle", "all", "none"] = "accepted"  # accepted: operator verdict, else LRM
    rounds: int | None = None  # rollouts of the last n rounds (1 = this round only); None = this and every earlier

    def __post_init__(self) -> None:
        if self.rollouts not in ("accepted", "oracle", "all", "none"):
            raise ValueError(f"selection.rollouts must be accepted, oracle, all or none, got {self.rollouts!r}")
        if self.rounds is not None and self.rounds < 1:
            raise ValueError(f"selection.rounds must be at least 1 or null, got {self.rounds}")
        if not self.demos and self.rollouts == "none":
            raise ValueError("selection selects nothing (demos: false and rollouts: none)")


def selection_for_round(config: SelectionConfig, round_: int, skip_rounds: Collection[int] = ()) -> list[EpisodeFilter]:
    """The filter clauses of round `round_` (>= 1) under `config`; no rollout of a round in `skip_rounds`."""
    if round_ < 1:
        raise ValueError(f"rounds start at 1, got {round_}")
    clauses = []
    if config.demos:
        clauses.append(EpisodeFilter(source=["demo"]))
    if config.rollouts != "none":
        first = 1 if config.rounds is None else max(1, round_ - config.rounds + 1)
        rounds = [r for r in range(first, round_ + 1) if r not in skip_rounds]
        clause = EpisodeFilter(source=list(ROLLOUT_SOURCES), round=rounds)
        if config.rollouts == "accepted":
            clause.accepted = True
        elif config.rollouts == "oracle":
            clause.oracle_success = True
        clauses.append(clause)
    return clauses


def select_for_round(store: EpisodeSource, config: SelectionConfig, round_: int,
                     skip_rounds: Collection[int] = ()) -> tuple[list[int], dict[str, int]]:
    """(store indices, counts by kind) of round `round_`'s training set; `store` is an EpisodeStore."""
    indices = [r.index for r in store.episodes(*selection_for_round(config, round_, skip_rounds))]
    demos = {r.index for r in store.episodes(source="demo")}
    counts = {"demos": sum(i in demos for i in indices), "rollouts": sum(i not in demos for i in indices)}
    return indices, counts


def shuffled_split(indices: Sequence[int], val_fraction: float, seed: int) -> tuple[list[int], list[int]]:
    """(train, val), both sorted: a seeded shuffle; val gets >= 1 episode when there are >= 2."""
    order = list(indices)
    if val_fraction <= 0 or len(order) < 2:
        return sorted(order), []
    rng = np.random.default_rng(seed)
    rng.shuffle(order)
    n_val = min(len(order) - 1, max(1, round(val_fraction * len(order))))
    return sorted(order[n_val:]), sorted(order[:n_val])


def hash_rank(seed: int, index: int) -> int:
    """A seeded pseudo-random rank of an episode, independent of which other episodes there are."""
    digest = hashlib.sha256(f"{seed}:{index}".encode()).digest()
    return int.from_bytes(digest[:8], "big")


def hashed_split(
    episodes: Sequence[int], val_fraction: float, seed: int, groups: Sequence[Any] | None = None
) -> tuple[list[int], list[int]]:
    """(train in the given order, val sorted); per group the lowest `hash_rank` round(fraction * n) go to val.

    Grouping by outcome keeps successes and failures in both splits. A group
    with at least two episodes and a positive fraction gives val at least one
    and keeps at least one for training.
    """
    groups = list(groups) if groups is not None else [None] * len(episodes)
    by_group: dict[Any, list[int]] = {}
    for ep, g in zip(episodes, groups, strict=True):
        by_group.setdefault(g, []).append(int(ep))
    val: set[int] = set()
    for members in by_group.values():
        n = len(members)
        k = int(round(val_fraction * n))
        if val_fraction > 0 and n >= 2:
            k = min(max(k, 1), n - 1)
        elif n < 2:
            k = 0
        val.update(sorted(members, key=lambda e: hash_rank(seed, e))[:k])
    train = [int(e) for e in episodes if int(e) not in val]
    return train, sorted(val)
