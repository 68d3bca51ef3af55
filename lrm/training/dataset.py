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
(`recordings.selection.hashed_split` ranks episodes by a hash of (seed, index)).

Rewound segments (`rewind_segments_per_episode`, off by default): a
successful episode played forward to a turn frame k and then backwards to an
earlier frame m, i.e. the displayed video 0, 1, ..., k, k-1, ..., m. Keyframes
are sampled over the *displayed* video, and every pair (earlier displayed,
later displayed) whose later frame lies in the rewound part becomes a
contrastive example in displayed order, kind "rewound": label -1 when the
later-displayed frame is the earlier (less complete) one in real time, +1
when the rewind has not yet gone back past the other frame. For a backend
that sees two frames these are reversed pairs at frames off the eleven
keyframes; they teach that "later on screen" does not mean "more done".

Rationales (`rationale`): "none" leaves `Example.rationale` empty;
"template" fills progress and contrastive examples from the task sentence and
the label (see `template_rationale`: it states the answer in words, so it
teaches the answer format, not visual reasoning); "stored" uses an episode's
own annotations, `EpisodeMeta.extra["rationales"]` = {frame index (as a
string): text}, and falls back to the template where a frame has none.
Completion never gets one (the LRM answers it directly). A `rationale`
callable passed to `build_dataset` overrides all of this.

Sources: an episode store, a LeRobotDataset on disk, or several of them
(`lrm.training.lerobot_source.open_sources`): anything with the store's reading API.
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any, Literal, TYPE_CHECKING

import numpy as np

from common.numbers import Fraction, Seed
from lrm.types import MODALITIES, RewardRequest, resize_image
from recordings.selection import hashed_split

if TYPE_CHECKING:
    from recordings.episode import EpisodeSource

log = logging.getLogger(__name__)

__all__ = [
    "PROGRESS_LEVELS",
    "DatasetConfig",
    "Example",
    "RewardDataset",
    "build_dataset",
    "episode_outcome",
    "keyframe_indices",
    "rewind_order",
    "template_rationale",
]

PROGRESS_LEVELS: tuple[float, ...] = tuple(round(i / 10, 1) for i in range(11))
RATIONALE_MODES = ("none", "template", "stored")


@dataclass
class DatasetConfig:
    """What to sample from a store; YAML-friendly (module doc)."""

    camera: str | None = None  # None: the store's first camera
    num_keyframes: int = 11
    modalities: list[str] = field(default_factory=lambda: list(MODALITIES))
    val_fraction: Fraction = 0.2
    seed: Seed = 0
    clip_fractions: list[float] = field(default_factory=lambda: [0.5])  # clipped-early negatives
    contrastive_min_gap: int = 1  # in keyframes
    contrastive_pairs_per_episode: int | None = None  # None: every pair (each in both orders)
    contrastive_anchor: bool = True  # show the first frame with contrastive pairs
    tasks: list[str] | None = None  # only these tasks; None: all
    sources: list[str] | None = None  # only these EpisodeMeta sources; None: all
    min_length: int = 2  # shorter episodes are skipped
    rewind_segments_per_episode: int = 0  # rewound contrastive segments per successful episode (module doc)
    rationale: Literal["none", "template", "stored"] = "none"  # module doc

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
        if self.rewind_segments_per_episode < 0:
            raise ValueError(f"rewind_segments_per_episode must be >= 0, got {self.rewind_segments_per_episode}")
        if self.rationale not in RATIONALE_MODES:
            raise ValueError(f"rationale must be one of {RATIONALE_MODES}, got {self.rationale!r}")


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


@dataclass
class RewardDataset:
    """Examples of a store, split by episode; `load_frames` reads their images."""

    store: EpisodeSource
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
    store: EpisodeSource,
    config: DatasetConfig | None = None,
    *,
    rationale: RationaleFn | None = None,
) -> RewardDataset:
    """Sample the examples of every usable episode of `store` and split them by episode.

    `store`: an EpisodeStore or any source with its reading API
    (`lrm.training.lerobot_source`). `rationale(example, episode_meta)` may return a
    reasoning text for an example (kept in `Example.rationale`); it overrides
    `config.rationale`.
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
    train_eps, val_eps = hashed_split(
        [r.index for r in usable], config.val_fraction, config.seed, groups=outcomes
    )
    val_set = set(val_eps)
    train: list[Example] = []
    val: list[Example] = []
    for rec, success in zip(usable, outcomes, strict=True):
        examples = _episode_examples(rec.index, rec.length, rec.meta.task, success, config)
        if rationale is not None:
            examples = [dataclasses.replace(ex, rationale=rationale(ex, rec.meta)) for ex in examples]
        elif config.rationale != "none":
            stored = _stored_rationales(rec.meta) if config.rationale == "stored" else {}
            examples = [dataclasses.replace(ex, rationale=_rationale(ex, stored)) for ex in examples]
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
        for r in range(config.rewind_segments_per_episode):
            out.extend(_rewound_examples(episode, length, task, config, r))
    return out


def rewind_order(length: int, turn: int, back_to: int) -> list[int]:
    """Displayed frame order of a rewound segment: 0, 1, ..., turn, turn-1, ..., back_to."""
    if not 0 <= back_to < turn < length:
        raise ValueError(f"need 0 <= back_to < turn < length, got back_to={back_to}, turn={turn}, length={length}")
    return list(range(turn + 1)) + list(range(turn - 1, back_to - 1, -1))


def _rewound_examples(episode: int, length: int, task: str, config: DatasetConfig, r: int) -> list[Example]:
    """Contrastive pairs of one rewound segment, in displayed order (module doc)."""
    if length < 3:
        return []
    rng = np.random.default_rng([config.seed, episode, r, 1])  # 1: this sampler's own stream
    turn = int(rng.integers(max(1, length // 3), length))  # far enough in that rewinding shows something
    back_to = int(rng.integers(0, turn))
    shown = rewind_order(length, turn, back_to)
    positions = keyframe_indices(len(shown), config.num_keyframes)
    real = [shown[p] for p in positions]
    pairs = [
        (i, j)
        for i in range(len(positions))
        for j in range(i + config.contrastive_min_gap, len(positions))
        if positions[j] > turn and real[i] != real[j]
    ]
    if config.contrastive_pairs_per_episode is not None and len(pairs) > config.contrastive_pairs_per_episode:
        chosen = rng.choice(len(pairs), size=config.contrastive_pairs_per_episode, replace=False)
        pairs = [pairs[c] for c in sorted(chosen)]
    out = []
    for i, j in pairs:
        frames = {"previous": real[i], "current": real[j]}
        if config.contrastive_anchor:
            frames["first"] = 0
        label = 1.0 if real[j] > real[i] else -1.0
        out.append(Example("contrastive", episode, frames, task, label, "rewound", True))
    return out


def template_rationale(example: Example) -> str | None:
    """A reasoning text built from the task sentence and the label alone (None for completion).

    It says the answer in words, so it teaches the answer format, not how to
    see progress; use real annotations ("stored") when there are any.
    """
    task = example.task.rstrip(".")
    if example.modality == "progress":
        p = example.label
        if p <= 0.0:
            state = "nothing of the task is done yet; the scene looks as in the first frame"
        elif p >= 1.0:
            state = "the task looks finished"
        else:
            state = f"the task looks about {round(p * 100)}% done"
        return f"The task is: {task}. Compared with the first frame, {state}."
    if example.modality == "contrastive":
        more, less = ("2", "1") if example.label > 0 else ("1", "2")
        return f"The task is: {task}. Image {more} shows the task further along than image {less}."
    return None


def _stored_rationales(meta: Any) -> dict[int, str]:
    raw = (getattr(meta, "extra", None) or {}).get("rationales") or {}
    if not isinstance(raw, dict):
        log.warning("episode meta extra['rationales'] is a %s, not {frame: text}; ignored", type(raw).__name__)
        return {}
    out = {}
    for key, text in raw.items():
        try:
            out[int(key)] = str(text)
        except (TypeError, ValueError):
            log.warning("episode meta extra['rationales'] key %r is not a frame index; ignored", key)
    return out


def _rationale(example: Example, stored: dict[int, str]) -> str | None:
    """The episode's own text for the example's frame(s) where it has one, else the template."""
    if example.modality == "progress" and example.frames["current"] in stored:
        return stored[example.frames["current"]]
    if example.modality == "contrastive":
        prev, cur = stored.get(example.frames["previous"]), stored.get(example.frames["current"])
        if prev is not None and cur is not None:
            more = "2" if example.label > 0 else "1"
            return f"Image 1: {prev} Image 2: {cur} So image {more} is further along."
    return template_rationale(example)
