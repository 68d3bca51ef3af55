"""Behaviour cloning from the store: selection, split, loading, loss going down, checkpoints and resume."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from policies.actor_critic.model import ActorCriticConfig, GaussianActorCritic, compute_stats, make_policy
from policies.errors import PolicyError
from policies.actor_critic.bc_train import (
    BCTrainConfig,
    action_chunks,
    fit_bc,
    load_frames,
    random_shift,
    train_bc,
    validation_loss,
)
from recordings.selection import EpisodeFilter, default_selection
from recordings.store import EpisodeStore


def test_selection_is_a_union_of_clauses(synthetic_store):
    def select(*clauses):
        return [r.index for r in store.episodes(*clauses)]

    with EpisodeStore.open(synthetic_store) as store:
        # demos, plus rollouts the LRM accepted or the operator overrode to accepted; not the rejected one
        assert select(*default_selection()) == [0, 1, 2, 3, 4]
        assert select(EpisodeFilter(source=["demo"])) == [0, 1, 2]
        assert select(EpisodeFilter(round=[1], accepted=False)) == [5]
        assert select(EpisodeFilter(source=["robot"])) == []


def test_load_frames_keeps_only_what_the_policy_reads(synthetic_store):
    with EpisodeStore.open(synthetic_store) as store:
        state_only = load_frames(store, [0, 2])
        assert state_only.images == {} and state_only.state.shape == (40, 5) and state_only.action.shape == (40, 3)
        assert list(np.unique(state_only.episode)) == [0, 2]
        with_cam = load_frames(store, [1], ["base_camera"], chunk_size=4)
        assert with_cam.images["base_camera"].shape == (20, 16, 16, 3) and with_cam.action.shape == (20, 4, 3)
        with pytest.raises(PolicyError, match="no camera 'wrist'"):
            load_frames(store, [0], ["wrist"])
        with pytest.raises(PolicyError, match="selection is empty"):
            load_frames(store, [])


def test_action_chunks_hold_the_last_action():
    actions = np.arange(8, dtype=np.float32).reshape(4, 2)
    chunks = action_chunks(actions, 3)
    assert chunks.shape == (4, 3, 2)
    np.testing.assert_array_equal(chunks[0], actions[:3])
    np.testing.assert_array_equal(chunks[3], np.stack([actions[3]] * 3))


def test_random_shift_keeps_shape_and_content():
    gen = torch.Generator().manual_seed(0)
    images = torch.randint(0, 256, (6, 16, 16, 3), dtype=torch.uint8)
    shifted = random_shift(images, 2, gen)
    assert shifted.shape == images.shape and shifted.dtype == torch.uint8
    assert torch.equal(random_shift(images, 0, gen), images)
    # a shift moves pixels; the interior of some image must differ, and values come from the original
    assert not torch.equal(shifted, images)
    assert set(shifted.unique().tolist()) <= set(images.unique().tolist())


@pytest.mark.parametrize("cameras", [[], ["base_camera"]], ids=["state", "image"])
def test_a_few_steps_lower_the_loss(synthetic_store, cameras):
    torch.manual_seed(0)
    with EpisodeStore.open(synthetic_store) as store:
        data = load_frames(store, range(6), cameras)
    config = ActorCriticConfig(hidden_dims=[64, 64], cameras=cameras)
    policy = make_policy(config, stats=compute_stats(data.state, data.action), state_dim=5, action_dim=3,
                         image_sizes=data.image_sizes)
    before = validation_loss(policy, data, "mse")
    report = fit_bc(policy, data, data, steps=60, batch_size=32, lr=3e-3, log_every=20, val_every=20, progress=False)
    after = validation_loss(policy, data, "mse")
    assert after < 0.5 * before
    assert [h["step"] for h in report.history] == [20, 40, 60] and report.val_loss == pytest.approx(after)
    assert report.history[-1]["loss"] < report.history[0]["loss"]


def test_nll_loss_learns_the_std(synthetic_store):
    torch.manual_seed(0)
    with EpisodeStore.open(synthetic_store) as store:
        data = load_frames(store, range(6))
    policy = make_policy(ActorCriticConfig(hidden_dims=[64, 64], log_std_init=0.0),
                         stats=compute_stats(data.state, data.action))
    fit_bc(policy, data, steps=150, batch_size=64, lr=3e-3, loss="nll", progress=False)
    assert policy.log_std.mean().item() < -0.1  # the actions are a deterministic function: the std shrinks


def test_frame_weights_set_how_often_each_frame_is_drawn(synthetic_store, monkeypatch):
    with EpisodeStore.open(synthetic_store) as store:
        data = load_frames(store, range(6))
    drawn = []
    batch = data.batch
    monkeypatch.setattr(data, "batch", lambda idx: (drawn.extend(np.asarray(idx).tolist()), batch(idx))[1])
    policy = make_policy(ActorCriticConfig(hidden_dims=[8]), stats=compute_stats(data.state, data.action))
    weights = np.where(data.episode < 3, 4.0, 1.0)  # the 3 demos' frames 4x as often as the rollouts'
    fit_bc(policy, data, steps=50, batch_size=64, frame_weights=weights, progress=False)
    share = np.isin(np.asarray(drawn), np.flatnonzero(data.episode < 3)).mean()
    assert share == pytest.approx(4 * 60 / (4 * 60 + 60), abs=0.03)  # 60 demo frames at 4, 60 rollout frames at 1
    with pytest.raises(PolicyError, match="3 frame weights for 120 training frames"):
        fit_bc(policy, data, steps=1, frame_weights=np.ones(3), progress=False)


def test_demo_weight_draws_demonstrations_more_often(synthetic_store, tmp_path, monkeypatch):
    import policies.actor_critic.bc_train as bc

    seen = {}
    fit = bc.fit_bc

    def spy(policy, train_data, *args, **kwargs):
        seen["weights"], seen["episodes"] = kwargs.get("frame_weights"), train_data.episode
        return fit(policy, train_data, *args, **kwargs)

    monkeypatch.setattr(bc, "fit_bc", spy)
    train_bc(_config(synthetic_store, tmp_path / "w", val_fraction=0.0, demo_weight=3.0))
    assert seen["weights"].tolist() == [3.0 if e < 3 else 1.0 for e in seen["episodes"]]
    train_bc(_config(synthetic_store, tmp_path / "u", val_fraction=0.0))
    assert seen["weights"] is None  # 1: uniform, the sampler as before


def _config(store, out, **kw) -> BCTrainConfig:
    defaults = dict(policy=ActorCriticConfig(hidden_dims=[32, 32], chunk_size=2), steps=30, batch_size=16,
                    log_every=10, val_every=10, checkpoint_every=10, val_fraction=0.34, progress=False)
    return BCTrainConfig(store=store, output_dir=out, **{**defaults, **kw})


def test_train_checkpoint_and_resume(synthetic_store, tmp_path):
    out = tmp_path / "run"
    result = train_bc(_config(synthetic_store, out))
    assert result.report.steps == 30 and len(result.val_episodes) == 2 and len(result.train_episodes) == 3
    assert not set(result.train_episodes) & set(result.val_episodes)
    ckpt = out / "checkpoints" / "last"
    assert {p.name for p in ckpt.iterdir()} == {"config.json", "model.safetensors", "training_state.pt"}
    metrics = json.loads((out / "metrics.json").read_text())
    assert [h["step"] for h in metrics["history"]] == [10, 20, 30] and "val_loss" in metrics["history"][-1]
    assert torch.load(ckpt / "training_state.pt", weights_only=False)["step"] == 30
    first = GaussianActorCritic.from_pretrained(ckpt)
    assert first.action_mean.shape == (6,)  # statistics per chunk position (2) and action dimension (3)

    with pytest.raises(PolicyError, match="already holds a checkpoint"):
        train_bc(_config(synthetic_store, out))

    resumed = train_bc(_config(synthetic_store, out, resume=True, steps=50))
    assert resumed.report.start_step == 30 and resumed.report.steps == 50
    assert resumed.train_episodes == result.train_episodes  # the saved split, not a new one
    metrics = json.loads((out / "metrics.json").read_text())
    assert [h["step"] for h in metrics["history"]] == [10, 20, 30, 40, 50]
    second = GaussianActorCritic.from_pretrained(ckpt)
    assert not torch.equal(second.actor[0].weight, first.actor[0].weight)
    torch.testing.assert_close(second.action_mean, first.action_mean)  # stats come from the checkpoint


def test_resume_equals_an_uninterrupted_run(synthetic_store, tmp_path):
    """Optimiser, sampler and step are restored: 20 + 20 steps give the weights of 40 straight steps."""
    straight = train_bc(_config(synthetic_store, tmp_path / "a", steps=40, lr_schedule="constant"))
    train_bc(_config(synthetic_store, tmp_path / "b", steps=20, lr_schedule="constant"))
    train_bc(_config(synthetic_store, tmp_path / "b", steps=40, lr_schedule="constant", resume=True))
    a = GaussianActorCritic.from_pretrained(straight.checkpoint)
    b = GaussianActorCritic.from_pretrained(tmp_path / "b" / "checkpoints" / "last")
    for (name, x), y in zip(a.state_dict().items(), b.state_dict().values(), strict=True):
        torch.testing.assert_close(x, y, msg=name)


def test_empty_selection_and_epochs(synthetic_store, tmp_path):
    with pytest.raises(PolicyError, match="no episode matches"):
        train_bc(_config(synthetic_store, tmp_path / "x", select=[EpisodeFilter(source=["robot"])]))
    result = train_bc(_config(synthetic_store, tmp_path / "y", epochs=2.0, val_fraction=0.0,
                              select=[EpisodeFilter(source=["demo"])]))
    assert result.total_steps == 8 and result.val_episodes == []  # ceil(2 * 60 frames / 16)


def test_image_policy_end_to_end(synthetic_store, tmp_path):
    """An image + state policy trains from the store and acts on an observation at another resolution."""
    from sim.env import Observation

    policy_config = ActorCriticConfig(hidden_dims=[32], cameras=["base_camera"], cnn_channels=[8, 8],
                                      image_feature_dim=16)
    result = train_bc(_config(synthetic_store, tmp_path / "img", policy=policy_config, steps=10))
    policy = GaussianActorCritic.from_pretrained(result.checkpoint)
    assert policy.needs_images and policy.camera_names == ["base_camera"] and policy.config.image_size == (16, 16)
    rng = np.random.default_rng(0)
    obs = Observation(state=rng.standard_normal(5).astype(np.float32), task="t", step=0,
                      images={"base_camera": rng.integers(0, 256, (48, 64, 3), dtype=np.uint8)})
    assert policy.act(obs).shape == (3,)
    with pytest.raises(KeyError, match="needs camera 'base_camera'"):
        policy.act(Observation(state=obs.state, task="t", step=0))
