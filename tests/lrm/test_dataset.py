"""The reward dataset builder on a small synthetic store."""

from __future__ import annotations

import types

import numpy as np
import pytest

from lrm.training.dataset import (
    PROGRESS_LEVELS,
    DatasetConfig,
    build_dataset,
    episode_outcome,
    keyframe_indices,
)
from recordings.episode import EpisodeMeta
from tests.support.bar_store import make_bar_store


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    s = make_bar_store(tmp_path_factory.mktemp("bars") / "store", tasks=("fill red", "fill green"), successes=5, failures=3, size=16)
    yield s
    s.close()


def test_keyframe_indices():
    assert keyframe_indices(11) == list(range(11))
    assert keyframe_indices(21) == list(range(0, 21, 2))
    idx = keyframe_indices(30)
    assert len(idx) == 11 and idx[0] == 0 and idx[-1] == 29
    assert idx == [int(round(p * 29)) for p in np.linspace(0, 1, 11)]
    assert keyframe_indices(5, 3) == [0, 2, 4]


def test_episode_outcome():
    assert episode_outcome(EpisodeMeta(task="t", source="sim", oracle_success=True)) is True
    assert episode_outcome(EpisodeMeta(task="t", source="robot", operator_verdict=True)) is True
    assert episode_outcome(EpisodeMeta(task="t", source="robot", lrm_verdict=True)) is True
    assert episode_outcome(EpisodeMeta(task="t", source="sim", oracle_success=False)) is False
    assert episode_outcome(EpisodeMeta(task="t", source="robot", operator_verdict=False, lrm_verdict=True)) is False
    assert episode_outcome(EpisodeMeta(task="t", source="robot")) is None


def test_build_dataset_examples(store):
    ds = build_dataset(store, DatasetConfig(val_fraction=0.25, seed=1, clip_fractions=[0.5]))
    assert ds.camera == "cam"
    assert not set(ds.train_episodes) & set(ds.val_episodes)
    assert sorted(ds.train_episodes + ds.val_episodes) == list(range(16))
    assert {ex.episode for ex in ds.val} == set(ds.val_episodes)
    everything = ds.train + ds.val
    succ = {r.index: r for r in store.episodes(oracle_success=True)}
    # progress: 11 keyframes per successful episode, labels 0.0..1.0, first frame as anchor
    prog = [ex for ex in everything if ex.modality == "progress"]
    assert {ex.episode for ex in prog} == set(succ)
    for ep, rec in succ.items():
        mine = [ex for ex in prog if ex.episode == ep]
        assert [ex.label for ex in mine] == pytest.approx(list(PROGRESS_LEVELS))
        assert [ex.frames["current"] for ex in mine] == keyframe_indices(rec.length)
        assert all(ex.frames["first"] == 0 and ex.task == rec.meta.task for ex in mine)
    assert {ex.answer for ex in prog} == {f"{p:.1f}" for p in PROGRESS_LEVELS}
    # completion: positives are final frames of successes; negatives of every kind
    comp = [ex for ex in everything if ex.modality == "completion"]
    pos = [ex for ex in comp if ex.label == 1.0]
    assert len(pos) == len(succ)
    assert all(ex.frames["current"] == succ[ex.episode].length - 1 and ex.kind == "final" for ex in pos)
    kinds = {ex.kind for ex in comp if ex.label == 0.0}
    assert kinds == {"non_final", "failed", "clipped"}
    failed_finals = [
        ex for ex in comp if ex.kind == "failed" and ex.frames["current"] == store.record(ex.episode).length - 1
    ]
    assert len(failed_finals) == 6 and all(ex.answer == "no" for ex in failed_finals)
    # contrastive: both orders of each pair, both answers, later = more complete
    cont = [ex for ex in everything if ex.modality == "contrastive"]
    assert {ex.episode for ex in cont} == set(succ)
    assert len(cont) == len(succ) * 55 * 2
    assert {ex.answer for ex in cont} == {"1", "2"}
    for ex in cont:
        assert (ex.frames["current"] > ex.frames["previous"]) == (ex.label > 0)
        assert ex.frames["first"] == 0
    # deterministic
    again = build_dataset(store, DatasetConfig(val_fraction=0.25, seed=1, clip_fractions=[0.5]))
    assert again.train == ds.train and again.val == ds.val


def test_options_filter_and_sample(store):
    cfg = DatasetConfig(
        modalities=["contrastive"], tasks=["fill green"], contrastive_pairs_per_episode=7,
        contrastive_min_gap=3, contrastive_anchor=False, val_fraction=0.0,
    )
    ds = build_dataset(store, cfg)
    assert ds.val == [] and {ex.modality for ex in ds.train} == {"contrastive"}
    assert {ex.task for ex in ds.train} == {"fill green"}
    assert len(ds.train) == 5 * 7 * 2
    assert all("first" not in ex.frames for ex in ds.train)
    assert all(abs(ex.frames["current"] - ex.frames["previous"]) >= 6 for ex in ds.train)
    assert build_dataset(store, cfg).train == ds.train
    counts = ds.counts()
    assert counts["train"] == {"contrastive": 70} and counts["val"] == {}


def test_rationale_and_materialise(store):
    ds = build_dataset(
        store,
        DatasetConfig(modalities=["progress", "contrastive"], contrastive_pairs_per_episode=2),
        rationale=lambda ex, meta: f"{meta.task}: {ex.label:.1f}" if ex.modality == "progress" else None,
    )
    prog = [ex for ex in ds.train if ex.modality == "progress"]
    assert all(ex.rationale == f"{ex.task}: {ex.label:.1f}" for ex in prog)
    assert all(ex.rationale is None for ex in ds.train if ex.modality == "contrastive")
    some = ds.train[:3] + ds.val[:2] + ds.train[-2:]
    frames = ds.load_frames(some)
    for ex, fr in zip(some, frames):
        assert set(fr) == set(ex.frames)
        images = store.load_episode(ex.episode).images["cam"]
        for key, t in ex.frames.items():
            assert fr[key].dtype == np.uint8 and np.array_equal(fr[key], images[t])
    small = ds.load_frames(some[:1], size=(8, 12))
    assert small[0]["current"].shape == (8, 12, 3)
    reqs = ds.requests(some)
    assert [r.modality for r in reqs] == [ex.modality for ex in some]
    assert reqs[0].task == some[0].task


def test_config_errors_and_camera(store):
    with pytest.raises(ValueError, match="modalities"):
        DatasetConfig(modalities=["vibes"])
    with pytest.raises(ValueError, match="clip_fractions"):
        DatasetConfig(clip_fractions=[1.0])
    with pytest.raises(ValueError, match="camera 'wrist'"):
        build_dataset(store, DatasetConfig(camera="wrist"))


# --------------------------------------------------------------------------- rewound segments


def test_rewind_order_by_hand():
    from lrm.training.dataset import rewind_order

    assert rewind_order(6, 4, 1) == [0, 1, 2, 3, 4, 3, 2, 1]
    with pytest.raises(ValueError, match="back_to"):
        rewind_order(6, 2, 2)


def test_rewound_pairs_are_in_displayed_order(store):
    base = DatasetConfig(modalities=["contrastive"], val_fraction=0.0, seed=2)
    plain = build_dataset(store, base)
    cfg = DatasetConfig(modalities=["contrastive"], val_fraction=0.0, seed=2, rewind_segments_per_episode=2)
    ds = build_dataset(store, cfg)
    rewound = [ex for ex in ds.train if ex.kind == "rewound"]
    assert [ex for ex in ds.train if ex.kind == "pair"] == plain.train  # the plain pairs are unchanged
    assert rewound and {ex.episode for ex in rewound} <= set(ds.train_episodes)
    assert all(ex.success for ex in rewound)
    for ex in rewound:
        # label: does the later-displayed frame ("current") come later in real time?
        assert (ex.label > 0) == (ex.frames["current"] > ex.frames["previous"])
        assert ex.frames["current"] != ex.frames["previous"] and ex.frames["first"] == 0
    # mostly the rewind shows the task undone: later on screen, less complete
    assert sum(ex.label < 0 for ex in rewound) > len(rewound) / 2
    assert build_dataset(store, cfg).train == ds.train  # seeded
    capped = build_dataset(store, DatasetConfig(**{**cfg.__dict__, "contrastive_pairs_per_episode": 3}))
    per_episode = {}
    for ex in capped.train:
        if ex.kind == "rewound":
            per_episode[ex.episode] = per_episode.get(ex.episode, 0) + 1
    assert max(per_episode.values()) <= 2 * 3


# --------------------------------------------------------------------------- rationales


def test_template_rationale_mentions_task_and_answer(store):
    ds = build_dataset(store, DatasetConfig(rationale="template", contrastive_pairs_per_episode=2, val_fraction=0.0))
    for ex in ds.train:
        if ex.modality == "completion":
            assert ex.rationale is None
        else:
            assert ex.rationale.startswith(f"The task is: {ex.task}.")
    prog = {ex.label: ex.rationale for ex in ds.train if ex.modality == "progress"}
    assert "30% done" in prog[0.3] and "finished" in prog[1.0]
    cont = [ex for ex in ds.train if ex.modality == "contrastive"]
    assert all(("Image 2 shows" in ex.rationale) == (ex.label > 0) for ex in cont)


def test_stored_rationale_wins_where_an_episode_has_one(tmp_path):
    from tests.support.bar_store import make_bar_store

    path = tmp_path / "store"
    make_bar_store(path, successes=2, failures=0, length=(11, 11), size=8).close()
    from recordings.store import EpisodeStore

    with EpisodeStore.open(path, "a") as s:
        s.update_meta(0, extra={"rationales": {"0": "the bar is empty", "10": "the bar is full"}})
    s = EpisodeStore.open(path, "r")
    ds = build_dataset(s, DatasetConfig(rationale="stored", val_fraction=0.0, modalities=["progress", "contrastive"]))
    prog = {(ex.episode, ex.frames["current"]): ex.rationale for ex in ds.train if ex.modality == "progress"}
    assert prog[(0, 0)] == "the bar is empty" and prog[(0, 10)] == "the bar is full"
    assert "50% done" in prog[(0, 5)] and "50% done" in prog[(1, 5)]  # no annotation: the template
    both = [ex for ex in ds.train if ex.episode == 0 and ex.modality == "contrastive"
            and {ex.frames["previous"], ex.frames["current"]} == {0, 10}]
    assert {ex.rationale for ex in both} == {
        "Image 1: the bar is empty Image 2: the bar is full So image 2 is further along.",
        "Image 1: the bar is full Image 2: the bar is empty So image 1 is further along.",
    }
    s.close()
    with pytest.raises(ValueError, match="rationale"):
        DatasetConfig(rationale="vibes")


# --------------------------------------------------------------------------- LeRobotDatasets on disk


@pytest.fixture(scope="module")
def exported(store, tmp_path_factory):
    import os

    os.environ["HF_HUB_OFFLINE"] = "1"
    pytest.importorskip("lerobot.datasets.lerobot_dataset")
    from recordings.lerobot_export import export_lerobot

    return export_lerobot(store, tmp_path_factory.mktemp("lerobot") / "ds", repo_id="local/bars")


def test_lerobot_export_gives_the_same_examples_and_pixels(store, exported):
    from lrm.training.lerobot_source import LeRobotSource

    source = LeRobotSource(exported)
    assert source.cameras == store.cameras and source.num_episodes == store.num_episodes
    cfg = DatasetConfig(val_fraction=0.25, seed=1, contrastive_pairs_per_episode=4)
    from_store, from_lerobot = build_dataset(store, cfg), build_dataset(source, cfg)
    # the sidecar carries the store's meta, verdicts included, so sampling and split agree
    assert from_lerobot.train == from_store.train and from_lerobot.val == from_store.val
    some = from_store.val[:4] + from_store.train[-3:]
    for a, b in zip(from_store.load_frames(some), from_lerobot.load_frames(some)):
        for key in a:
            assert np.array_equal(a[key], b[key])  # PNG frames come back byte-exact
    bank, _ = from_lerobot.image_bank(some, size=(8, 8))
    assert bank.shape[1:] == (8, 8, 3) and bank.dtype == np.uint8


def test_lerobot_dataset_without_our_sidecar(exported, tmp_path):
    import shutil

    from lrm.training.lerobot_source import LeRobotSource, SourceError
    from recordings.lerobot_export import SIDECAR_NAME

    foreign = tmp_path / "foreign"
    shutil.copytree(exported, foreign)
    (foreign / SIDECAR_NAME).unlink()
    unknown = LeRobotSource(foreign)
    assert {r.meta.task for r in unknown.episodes()} == {"fill red", "fill green"}
    assert all(episode_outcome(r.meta) is None for r in unknown.episodes())
    nothing = build_dataset(unknown, DatasetConfig())  # no verdict, no examples
    assert nothing.train == [] and nothing.val == []
    demos = LeRobotSource(foreign, assume_success=True)
    rec = demos.record(3)
    assert rec.meta.operator_verdict is True and rec.meta.extra["verdict_from"] == "assume_success"
    ds = build_dataset(demos, DatasetConfig(modalities=["progress"], val_fraction=0.0, tasks=["fill red"]))
    assert len(ds.train) == 8 * 11  # every red episode counts as a success now
    with pytest.raises(SourceError, match="not a LeRobotDataset"):
        LeRobotSource(tmp_path)


def test_store_and_lerobot_together(store, exported):
    from lrm.training.lerobot_source import ConcatSource, open_source, open_sources

    both = open_sources([store.path, exported])
    n = store.num_episodes
    assert both.num_episodes == 2 * n and both.record(n + 2).meta.task == store.record(2).meta.task
    ds = build_dataset(both, DatasetConfig(modalities=["completion"], val_fraction=0.25, seed=0))
    assert sorted(ds.train_episodes + ds.val_episodes) == list(range(2 * n))
    ex = next(e for e in ds.train + ds.val if e.episode >= n)
    twin = ex.episode - n
    a = ds.load_frames([ex])[0]["current"]
    assert np.array_equal(a, store.load_episode(twin).images["cam"][ex.frames["current"]])
    assert type(open_source(exported)).__name__ == "LeRobotSource"
    # both record 10 fps, so the union does; sources at different rates have none (unknown)
    assert both.fps == 10.0
    other = types.SimpleNamespace(fps=20.0, num_episodes=0, cameras=store.cameras)
    assert ConcatSource([store, other]).fps is None


def test_lerobot_next_success_gives_the_verdict(tmp_path):
    """A LeRobotDataset written by LeRobot itself (no sidecar) with a `next.success` feature, as its sim datasets."""
    import os

    os.environ["HF_HUB_OFFLINE"] = "1"
    lerobot_dataset = pytest.importorskip("lerobot.datasets.lerobot_dataset")
    import PIL.Image

    from lrm.training.lerobot_source import LeRobotSource
    from tests.support.bar_store import bar_frame

    features = {
        "observation.images.top": {"dtype": "image", "shape": (12, 12, 3), "names": ["height", "width", "channels"]},
        "next.success": {"dtype": "bool", "shape": (1,), "names": None},
    }
    root = tmp_path / "sim_ds"
    ds = lerobot_dataset.LeRobotDataset.create("local/sim", fps=10, features=features, root=root, use_videos=False)
    rng = np.random.default_rng(0)
    pixels = []
    for episode, (length, reached) in enumerate([(11, True), (6, False), (13, True)]):
        for t in range(length):
            image = bar_frame(t / (length - 1), episode, 12, rng)
            pixels.append(image)
            done = reached and t == length - 1
            ds.add_frame({"observation.images.top": PIL.Image.fromarray(image),
                          "next.success": np.array([done]), "task": f"task {episode % 2}"})
        ds.save_episode()
    ds.finalize()

    source = LeRobotSource(root)
    assert source.cameras == {"top": (12, 12)}
    assert [r.meta.oracle_success for r in source.episodes()] == [True, False, True]
    assert [r.length for r in source.episodes()] == [11, 6, 13]
    assert [r.index for r in source.episodes(task="task 0")] == [0, 2]
    assert np.array_equal(source.load_episode(1).images["top"][5], pixels[11 + 5])
    built = build_dataset(source, DatasetConfig(modalities=["completion"], val_fraction=0.0))
    assert sum(ex.label for ex in built.train) == 2  # the final frames of the two successes


def test_reward_eval_reads_a_lerobot_dataset_like_the_store(store, exported):
    from lrm.evaluation.reward_eval import ConstantRewardModel, RewardEvalConfig, evaluate_reward_model
    from lrm.training.lerobot_source import LeRobotSource

    config = RewardEvalConfig(dataset=DatasetConfig(val_fraction=0.25, seed=1, contrastive_pairs_per_episode=4))
    a = evaluate_reward_model(ConstantRewardModel(progress=0.3, completion=1.0), store, config)
    b = evaluate_reward_model(ConstantRewardModel(progress=0.3, completion=1.0), LeRobotSource(exported), config)
    assert a["episodes"] == b["episodes"] and a["episodes"]["count"] >= 4
    assert a["progress"] == b["progress"] and a["completion"] == b["completion"]
    assert [t["length"] for t in a["trajectories"]] == [t["length"] for t in b["trajectories"]]
    assert b["trajectory"]["progress"]["oracle_values"].startswith("none")  # an export carries no sim traces here
