"""Reward-model training examples from store episodes (temporal progression sampling).

The LRM recipe trains on eleven keyframes per episode at normalised time
p = 0.0, 0.1, ..., 1.0 (frame index round(p * (T - 1))), each shown with the
episode's first frame as anchor and the task sentence. From them this module
builds the examples of the three modalities:

- progress: every keyframe of a *successful* episode, label p (a failed
  episode's time says nothing about how far it got, so it gives none);
- completion: the final frame of a successful episode -> 1; negatives -> 0:
  its non-final keyframes, every keyframe of a failed episode (final frame
  included), and the last frame of the episode clipped early
  (`clip_fractions`: the prefix ending at that fraction of a successful
  episode);
- contrastive: pairs of keyframes (i < j) of a successful episode, in both
  orders ("previous" = image 1, "current" = image 2), label +1 when the current
  frame is the later (more complete) one, -1 otherwise, so both answers occur.

An episode is successful when `oracle_success` or the accepted verdict
(`EpisodeMeta.accepted`: operator, else LRM) is True; failed when neither is
True and one of them is False; episodes with no verdict at all are skipped.

Examples are light: they reference frames by (episode index, frame index) and
`RewardDataset.load_frames` materialises the images, reading each episode
once. The split is by episode (no episode's frames in both), deterministic
and seeded, stratified by success, and stable when episodes are added
(episodes are ranked by a hash of (seed, episode index)).

Sources: the episode store. LeRobotDatasets on disk are a later addition
(issue 5).
"""

from __future__ import annotations

import dataclasses
import hashlib
import logging
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from lrm.types import MODALITIES, RewardRequest, resize_image

log = logging.getLogger(__name__)

__all__ = [
    "PROGRESS_LEVELS",
    "DatasetConfig",
    "Example",
    "RewardDataset",
    "build_dataset",
    "episode_outcome",
    "keyframe_indices",
    "split_episodes",
]

PROGRESS_LEVELS: tuple[float, ...] = tuple(round(i / 10, 1) for i in range(11))


@dataclass
class DatasetConfig:
    """What to sample from a store; YAML-friendly (module doc)."""

    camera: str | None = None  # None: the store's first camera
    num_keyframes: int = 11
    modalities: list[str] = field(default_factory=lambda: list(MODALITIES))
    val_fraction: float = 0.2
    seed: int = 0
    clip_fractions: list[float] = field(default_factory=lambda: [0.5])  # clipped-early negatives
    contrastive_min_gap: int = 1  # in keyframes
    contrastive_pairs_per_episode: int | None = None  # None: every pair (each in both orders)
    contrastive_anchor: bool = True  # show the first frame with contrastive pairs
    tasks: list[str] | None = None  # only these tasks; None: all
    sources: list[str] | None = None  # only these EpisodeMeta sources; None: all
    min_length: int = 2  # shorter episodes are skipped

    def __post_init__(self) -> None:
        if self.num_keyframes < 2:
            raise ValueError(f"num_keyframes must be at least 2, got {self.num_keyframes}")
        unknown = [m for m in self.modalities if m not in MODALITIES]
        if unknown:
            raise ValueError(f"unknown modalities {unknown}, expected some of {MODALITIES}")
        if not 0.0 <= self.val_fraction < 1.0:
            raise ValueError(f"val_fraction must be in [0, 1), got {self.val_fraction}")
        if any(not 0.0 < c < 1.0 for c in self.clip_fractions):
            raise ValueError(f"clip_fractions must lie strictly between 0 and 1, got {self.clip_fractions}")
        if self.contrastive_min_gap < 1:
            raise ValueError(f"contrastive_min_gap must be at least 1, got {self.contrastive_min_gap}")
        if self.contrastive_pairs_per_episode is not None and self.contrastive_pairs_per_episode < 1:
            raise ValueError("contrastive_pairs_per_episode must be positive or None")
        if self.min_length < 2:
            raise ValueError(f"min_length must be at least 2, got {self.min_length}")


@dataclass(frozen=True)
class Example:
    """One training example; frames are (key -> frame index within the episode), not images.

    `label`: progress p in [0, 1]; completion 1.0 / 0.0; contrastive +1.0 when
    "current" is more complete than "previous", else -1.0 (the Reward values).
    `kind` says where a completion negative came from (final, non_final,
    failed, clipped) or names the modality's positive sample ("keyframe", "pair").
    """

    modality: str
    episode: int
    frames: dict[str, int]
    task: str
    label: float
    kind: str = ""
    success: bool = True
    rationale: str | None = None

    @property
    def answer(self) -> str:
        """The answer option's name as in `Reward.probs` ("0.3", "yes"/"no", "2"/"1")."""
        if self.modality == "progress":
            return f"{self.label:.1f}"
        if self.modality == "completion":
            return "yes" if self.label >= 0.5 else "no"
        return "2" if self.label > 0 else "1"


def keyframe_indices(length: int, num_keyframes: int = 11) -> list[int]:
    """Frame index round(p * (T - 1)) for p = 0, 1/(n-1), ..., 1 (round half to even, as numpy)."""
    ps = np.linspace(0.0, 1.0, num_keyframes)
    return [int(i) for i in np.round(ps * (length - 1)).astype(int)]


def episode_outcome(meta: Any) -> bool | None:
    """True (success), False (failure) or None (no verdict) from an EpisodeMeta."""
    oracle = getattr(meta, "oracle_success", None)
    accepted = getattr(meta, "accepted", None)
    if oracle is True or accepted is True:
        return True
    if oracle is False or accepted is False:
        return False
    return None


def _rank(seed: int, index: int) -> int:
    digest = hashlib.sha256(f"{seed}:{index}".encode()).digest()
    return int.from_bytes(digest[:8], "big")


def split_episodes(
    episodes: Sequence[int], val_fraction: float, seed: int, groups: Sequence[Any] | None = None
) -> tuple[list[int], list[int]]:
    """(train, val) episode indices; per group the lowest-hash round(fraction * n) go to val.

    A group with at least two episodes and a positive fraction gives val at
    least one and keeps at least one for training.
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
        val.update(sorted(members, key=lambda e: _rank(seed, e))[:k])
    train = [int(e) for e in episodes if int(e) not in val]
    return train, sorted(val)


@dataclass
class RewardDataset:
    """Examples of a store, split by episode; `load_frames` reads their images."""

    store: Any  # recordings.store.EpisodeStore
    camera: str
    train: list[Example]
    val: list[Example]
    train_episodes: list[int]
    val_episodes: list[int]
    config: DatasetConfig

    def counts(self) -> dict[str, dict[str, int]]:
        """Examples per split and modality (completion also by label)."""
        out: dict[str, dict[str, int]] = {}
        for name, examples in (("train", self.train), ("val", self.val)):
            c: dict[str, int] = {}
            for ex in examples:
                c[ex.modality] = c.get(ex.modality, 0) + 1
                if ex.modality == "completion":
                    key = f"completion_{ex.answer}"
                    c[key] = c.get(key, 0) + 1
            out[name] = c
        return out

    def load_frames(
        self, examples: Iterable[Example], size: tuple[int, int] | None = None
    ) -> list[dict[str, np.ndarray]]:
        """Each example's frames as uint8 HxWx3 arrays (resized to `size` = (H, W) if given).

        Examples are grouped by episode so each episode is read once.
        """
        examples = list(examples)
        out: list[dict[str, np.ndarray] | None] = [None] * len(examples)
        by_episode: dict[int, list[int]] = {}
        for i, ex in enumerate(examples):
            by_episode.setdefault(ex.episode, []).append(i)
        for episode, positions in by_episode.items():
            images = self.store.load_episode(episode).images[self.camera]
            cache: dict[int, np.ndarray] = {}
            for i in positions:
                frames = {}
                for key, t in examples[i].frames.items():
                    if t not in cache:
                        cache[t] = resize_image(np.ascontiguousarray(images[t]), size)
                    frames[key] = cache[t]
                out[i] = frames
        return out  # type: ignore[return-value]

    def image_bank(
        self, examples: Iterable[Example], size: tuple[int, int] | None = None
    ) -> tuple[np.ndarray, list[dict[str, int]]]:
        """Every distinct frame the examples use, once: (N, H, W, 3) uint8, and per example key -> row.

        Keyframes are shared by many examples (a frame is in progress, completion
        and up to twenty contrastive pairs), so training holds each image once.
        """
        examples = list(examples)
        rows: dict[tuple[int, int], int] = {}
        refs: list[dict[str, int]] = []
        for ex in examples:
            refs.append({key: rows.setdefault((ex.episode, t), len(rows)) for key, t in ex.frames.items()})
        wanted: dict[int, list[tuple[int, int]]] = {}
        for (episode, t), row in rows.items():
            wanted.setdefault(episode, []).append((t, row))
        bank: np.ndarray | None = None
        for episode, items in wanted.items():
            images = self.store.load_episode(episode).images[self.camera]
            for t, row in items:
                image = resize_image(np.ascontiguousarray(images[t]), size)
                if bank is None:
                    bank = np.empty((len(rows), *image.shape), np.uint8)
                bank[row] = image
        if bank is None:
            h, w = size if size is not None else self.store.cameras[self.camera]
            bank = np.empty((0, h, w, 3), np.uint8)
        return bank, refs

    def requests(self, examples: Iterable[Example], size: tuple[int, int] | None = None) -> list[RewardRequest]:
        """The examples as RewardRequests (for scoring any backend against their labels)."""
        examples = list(examples)
        return [
            RewardRequest(modality=ex.modality, frames=frames, task=ex.task, request_id=i)  # type: ignore[arg-type]
            for i, (ex, frames) in enumerate(zip(examples, self.load_frames(examples, size), strict=True))
        ]


RationaleFn = Callable[[Example, Any], "str | None"]


def build_dataset(
    store: Any,
    config: DatasetConfig | None = None,
    *,
    rationale: RationaleFn | None = None,
) -> RewardDataset:
    """Sample the examples of every usable episode of `store` and split them by episode.

    `rationale(example, episode_meta)` may return a reasoning text for an
    example (kept in `Example.rationale`); None leaves it empty.
    """
    config = config or DatasetConfig()
    cameras = list(store.cameras)
    if not cameras:
        raise ValueError(f"{store.path}: the store has no cameras (or no episodes yet)")
    camera = config.camera or cameras[0]
    if camera not in cameras:
        raise ValueError(f"camera {camera!r} is not in the store (cameras: {', '.join(cameras)})")
    records = store.episodes(task=config.tasks, source=config.sources)
    usable, outcomes = [], []
    for rec in records:
        outcome = episode_outcome(rec.meta)
        if outcome is None:
            log.debug("episode %d has no success verdict; skipped", rec.index)
            continue
        if rec.length < config.min_length:
            log.debug("episode %d has %d frames; skipped", rec.index, rec.length)
            continue
        usable.append(rec)
        outcomes.append(outcome)
    train_eps, val_eps = split_episodes(
        [r.index for r in usable], config.val_fraction, config.seed, groups=outcomes
    )
    val_set = set(val_eps)
    train: list[Example] = []
    val: list[Example] = []
    for rec, success in zip(usable, outcomes, strict=True):
        examples = _episode_examples(rec.index, rec.length, rec.meta.task, success, config)
        if rationale is not None:
            examples = [dataclasses.replace(ex, rationale=rationale(ex, rec.meta)) for ex in examples]
        (val if rec.index in val_set else train).extend(examples)
    log.info(
        "reward dataset: %d train / %d val examples from %d / %d episodes (%d skipped)",
        len(train), len(val), len(train_eps), len(val_eps), len(records) - len(usable),
    )
    return RewardDataset(store, camera, train, val, train_eps, val_eps, config)


def _episode_examples(episode: int, length: int, task: str, success: bool, config: DatasetConfig) -> list[Example]:
    keys = keyframe_indices(length, config.num_keyframes)
    n = len(keys)
    ps = [round(k / (n - 1), 6) for k in range(n)]
    out: list[Example] = []
    if "progress" in config.modalities and success:
        for p, t in zip(ps, keys, strict=True):
            out.append(Example("progress", episode, {"current": t, "first": 0}, task, p, "keyframe", success))
    if "completion" in config.modalities:
        for k, t in enumerate(keys):
            final = k == n - 1
            if success:
                label, kind = (1.0, "final") if final else (0.0, "non_final")
            else:
                label, kind = 0.0, "failed"
            out.append(Example("completion", episode, {"current": t}, task, label, kind, success))
        if success:
            for c in config.clip_fractions:
                t = int(round(c * (length - 1)))
                if t < length - 1:
                    out.append(Example("completion", episode, {"current": t}, task, 0.0, "clipped", success))
    if "contrastive" in config.modalities and success:
        pairs = [(i, j) for i in range(n) for j in range(i + config.contrastive_min_gap, n) if keys[i] != keys[j]]
        if config.contrastive_pairs_per_episode is not None and len(pairs) > config.contrastive_pairs_per_episode:
            rng = np.random.default_rng([config.seed, episode])
            chosen = rng.choice(len(pairs), size=config.contrastive_pairs_per_episode, replace=False)
            pairs = [pairs[c] for c in sorted(chosen)]
        for i, j in pairs:
            for prev, cur, label in ((keys[i], keys[j], 1.0), (keys[j], keys[i], -1.0)):
                frames = {"previous": prev, "current": cur}
                if config.contrastive_anchor:
                    frames["first"] = 0
                out.append(Example("contrastive", episode, frames, task, label, "pair", success))
    return out
