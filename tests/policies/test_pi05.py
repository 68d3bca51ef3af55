"""pi0.5 through LeRobot, on a tiny model of the real architecture (tests.support.tiny_pi05) and real ManiSkill frames.

One module-scoped setup (~20 s on 2 cores, mostly ManiSkill's first render):
two short PickCube episodes with a 64x64 base camera go into an episode store,
are exported with `export_lerobot` and loaded with `LeRobotDataset`; a tiny
PI05Policy is built from the dataset's features and statistics with LeRobot's
own processors and a locally trained tokenizer, and saved as a checkpoint.
Everything is then loaded back through the production path
(`Pi05Policy(Pi05Config(pretrained=...))`), and fine-tuned from the store
through `policies.pi05.finetune.finetune_pi05` (LeRobot's make_policy,
processors, optimiser and scheduler presets), including from a checkpoint
shaped like lerobot/pi05_base (other camera names, padded sizes).
"""

from __future__ import annotations

import json

from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("lerobot.policies.pi05")

from policies.errors import PolicyError  # noqa: E402
from policies.pi05.policy import Pi05Config, Pi05Policy, make_pi05_processors, save_pi05  # noqa: E402
from tests.support.tiny_pi05 import tiny_lerobot_config, tiny_pi05_architecture, train_tiny_tokenizer  # noqa: E402

REPO_ID = "local/pi05-test"
ENV_ID = "PickCube-v1"
CAMERA = "base_camera"
CAMERA_SIZE = 64
EPISODES, STEPS = 2, 6
CHUNK = 4


@pytest.fixture(scope="module", autouse=True)
def tiny_architecture() -> Iterator[None]:
    """The tiny Gemma / SigLIP variants exist for every test of this module (build and load)."""
    with tiny_pi05_architecture():
        yield


@pytest.fixture(scope="module")
def pickcube(tmp_path_factory: pytest.TempPathFactory) -> dict:
    """Real PickCube episodes (small random joint moves, camera every step) in a store, exported to LeRobot."""
    from recordings.episode import Episode, EpisodeMeta
    from recordings.lerobot_export import export_lerobot
    from recordings.store import EpisodeStore
    from sim.maniskill_env import SimEnvConfig, make_sim_env

    rng = np.random.default_rng(0)
    root = tmp_path_factory.mktemp("pi05")
    config = SimEnvConfig(env_id=ENV_ID, cameras=[CAMERA], camera_width=CAMERA_SIZE, camera_height=CAMERA_SIZE)
    episodes = []
    with make_sim_env(config) as env:
        fps = env.control_freq
        for e in range(EPISODES):
            obs = env.reset(seed=e)
            images, states, actions = [], [], []
            for _ in range(STEPS):
                images.append(env.capture()[CAMERA])
                states.append(obs.state)
                action = np.append(obs.state[:7] + rng.normal(0, 0.05, 7), 1.0).astype(np.float32)
                actions.append(action)
                obs, _ = env.step(action)
            episodes.append(
                Episode(
                    meta=EpisodeMeta(task=env.task, source="demo", env_id=ENV_ID, seed=e),
                    images={CAMERA: np.stack(images)},
                    state=np.stack(states),
                    action=np.stack(actions),
                    timestamp=np.arange(STEPS, dtype=np.float64) / fps,
                )
            )
        live = env.reset(seed=100)
        live.images = env.capture()
        task = env.task
    store_path = root / "store"
    with EpisodeStore.open(store_path, mode="a", fps=fps, durable=False) as store:
        for episode in episodes:
            store.append(episode)
    with EpisodeStore.open(store_path, mode="r") as store:
        dataset_root = export_lerobot(store, root / "dataset", repo_id=REPO_ID)
    return dict(root=root, store=store_path, dataset_root=dataset_root, observation=live, task=task, fps=fps)


@pytest.fixture(scope="module")
def checkpoint(pickcube: dict) -> dict:
    """A tiny PI05Policy built from the exported dataset's features and stats, saved with its processors."""
    from lerobot.datasets.lerobot_dataset import LeRobotDataset
    from lerobot.policies.pi05 import PI05Policy
    from lerobot.utils.feature_utils import dataset_to_policy_features

    torch.manual_seed(0)
    dataset = LeRobotDataset(REPO_ID, root=pickcube["dataset_root"])
    features = dataset_to_policy_features(dataset.meta.features)
    outputs = {k: f for k, f in features.items() if k == "action"}
    inputs = {k: f for k, f in features.items() if k != "action"}
    config = tiny_lerobot_config(inputs, outputs, chunk_size=CHUNK, n_action_steps=CHUNK)
    root = pickcube["root"]
    tokenizer = train_tiny_tokenizer(root / "tokenizer", texts=[pickcube["task"]])
    policy = PI05Policy(config)
    preprocessor, postprocessor = make_pi05_processors(config, dataset.meta.stats, tokenizer=str(root / "tokenizer"))
    path = save_pi05(policy, preprocessor, postprocessor, root / "checkpoint", tokenizer=tokenizer)
    return dict(path=path, policy=policy, preprocessor=preprocessor, postprocessor=postprocessor, config=config)


def test_predicts_an_action_chunk_from_maniskill_observations(pickcube: dict, checkpoint: dict) -> None:
    policy = Pi05Policy(Pi05Config(pretrained=str(checkpoint["path"]), n_action_steps=3, seed=0))
    assert policy.needs_images and policy.camera_names == [CAMERA]
    assert (policy.state_dim, policy.action_dim) == (25, 8)
    assert next(policy.policy.parameters()).dtype == torch.float32  # "auto" on a CPU
    policy.reset()
    chunk = policy.act(pickcube["observation"])
    assert chunk.shape == (3, 8) and chunk.dtype == np.float32
    assert np.isfinite(chunk).all()


def test_identical_actions_after_save_and_reload(pickcube: dict, checkpoint: dict) -> None:
    observation = pickcube["observation"]
    in_memory = Pi05Policy(
        Pi05Config(pretrained=str(checkpoint["path"]), seed=3),
        checkpoint["policy"], checkpoint["preprocessor"], checkpoint["postprocessor"],
    )
    reloaded = Pi05Policy(Pi05Config(pretrained=str(checkpoint["path"]), seed=3))
    expected = in_memory.act(observation)
    assert expected.shape == (CHUNK, 8)
    np.testing.assert_array_equal(reloaded.act(observation), expected)
    reloaded.reset()  # re-seeds: the same first chunk again
    np.testing.assert_array_equal(reloaded.act(observation), expected)
    # Different noise gives different actions, so the equality above is not vacuous.
    other = Pi05Policy(Pi05Config(pretrained=str(checkpoint["path"]), seed=4))
    assert not np.array_equal(other.act(observation), expected)


def test_camera_mapping_by_config(pickcube: dict, checkpoint: dict) -> None:
    observation = pickcube["observation"]
    renamed = type(observation)(
        state=observation.state, task=observation.task, step=0, images={"front": observation.images[CAMERA]}
    )
    path = str(checkpoint["path"])
    mapped = Pi05Policy(Pi05Config(pretrained=path, cameras={"front": f"observation.images.{CAMERA}"}, seed=1))
    plain = Pi05Policy(Pi05Config(pretrained=path, seed=1))
    assert mapped.camera_names == ["front"]
    np.testing.assert_array_equal(mapped.act(renamed), plain.act(observation))
    with pytest.raises(PolicyError, match="no image from camera"):
        plain.act(renamed)
    with pytest.raises(PolicyError, match="no image feature"):
        Pi05Policy(Pi05Config(pretrained=path, cameras={"front": "observation.images.wrist"}))


def test_refuses_bad_checkpoints(tmp_path: Path, checkpoint: dict) -> None:
    with pytest.raises(PolicyError, match="no config.json"):
        Pi05Policy(Pi05Config(pretrained=str(tmp_path)))
    broken = tmp_path / "broken"
    broken.mkdir()
    for item in checkpoint["path"].iterdir():
        if item.is_file() and item.name != "model.safetensors":
            (broken / item.name).write_bytes(item.read_bytes())
    with pytest.raises(PolicyError, match="did not load"):
        Pi05Policy(Pi05Config(pretrained=str(broken)))
    with pytest.raises(ValueError, match="observation.images"):
        Pi05Config(cameras={"front": "front"})


def test_one_training_step_on_exported_data(pickcube: dict, checkpoint: dict) -> None:
    from lerobot.datasets.lerobot_dataset import LeRobotDataset
    from lerobot.policies.pi05 import PI05Policy

    policy = PI05Policy.from_pretrained(str(checkpoint["path"]))
    preprocessor = checkpoint["preprocessor"]
    fps = pickcube["fps"]
    dataset = LeRobotDataset(
        REPO_ID, root=pickcube["dataset_root"], delta_timestamps={"action": [i / fps for i in range(CHUNK)]}
    )
    batch = next(iter(torch.utils.data.DataLoader(dataset, batch_size=4, shuffle=True,
                                                  generator=torch.Generator().manual_seed(0))))
    assert batch["action"].shape == (4, CHUNK, 8)
    batch = preprocessor(batch)

    config = policy.config
    optimizer = config.get_optimizer_preset().build(policy.get_optim_params())
    before = {name: p.detach().clone() for name, p in policy.named_parameters() if p.requires_grad}
    policy.train()
    loss, info = policy.forward(batch)
    assert torch.isfinite(loss) and loss.item() > 0
    loss.backward()
    torch.nn.utils.clip_grad_norm_(policy.parameters(), config.optimizer_grad_clip_norm)
    optimizer.step()
    changed = [name for name, p in policy.named_parameters() if name in before and not torch.equal(p, before[name])]
    assert any("action_out_proj" in n for n in changed)
    assert any("gemma_expert" in n for n in changed)
    assert any("vision_tower" in n for n in changed)


def test_yaml_config_parses() -> None:
    from common.config import ConfigError, load_config

    path = Path(__file__).resolve().parents[2] / "configs" / "policies" / "pi05_pickcube.yaml"
    config = load_config(path, Pi05Config)
    assert config.cameras == {"base_camera": "observation.images.base_camera"}
    assert (config.n_action_steps, config.device, config.dtype) == (10, "auto", "auto")
    with pytest.raises(ConfigError, match="dtype"):
        load_config(path, Pi05Config, overrides=["dtype=float16"])

    from policies.pi05.finetune import Pi05TrainConfig

    train = load_config(path.with_name("pi05_finetune_pickcube.yaml"), Pi05TrainConfig)
    assert train.rename_map == {"observation.images.base_camera": "observation.images.base_0_rgb"}
    assert [clause.source for clause in train.select] == [["demo"], ["sim", "robot"]]


def test_finetune_from_the_store_and_resume(pickcube: dict, checkpoint: dict, tmp_path: Path) -> None:
    import dataclasses

    from safetensors.torch import load_file

    from policies.pi05.finetune import Pi05TrainConfig, finetune_pi05
    from recordings.selection import EpisodeFilter

    config = Pi05TrainConfig(
        store=pickcube["store"], output_dir=tmp_path / "run", pretrained=str(checkpoint["path"]),
        select=[EpisodeFilter(source=["demo"])], val_fraction=0.5, steps=2, batch_size=2,
        optimizer_lr=1e-3, log_every=1, val_every=2, val_batches=1, checkpoint_every=2, progress=False,
    )
    result = finetune_pi05(config)
    assert (result.start_step, result.steps) == (0, 2)
    assert (len(result.train_episodes), len(result.val_episodes)) == (1, 1)
    assert result.train_loss is not None and np.isfinite(result.train_loss)
    assert result.val_loss is not None and np.isfinite(result.val_loss)
    before = load_file(checkpoint["path"] / "model.safetensors")
    after = load_file(result.checkpoint / "model.safetensors")
    assert before.keys() == after.keys()
    assert any(not torch.equal(before[k], after[k]) for k in before)

    tuned = Pi05Policy(Pi05Config(pretrained=str(result.checkpoint), seed=0))
    assert tuned.act(pickcube["observation"]).shape == (CHUNK, 8)

    resumed = finetune_pi05(dataclasses.replace(config, steps=3, resume=True))
    assert (resumed.start_step, resumed.steps) == (2, 3)
    assert resumed.train_episodes == result.train_episodes
    # metrics.jsonl (report_to's default): a row per logged training / validation loss, continued without duplicates
    rows = [json.loads(line) for line in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    assert [(r["step"], "val_loss" in r) for r in rows] == [(1, False), (2, False), (2, True), (3, False), (3, True)]
    assert all("wall_time" in r for r in rows) and rows[0]["train_loss"] == pytest.approx(resumed.history[0]["train_loss"])
    with pytest.raises(PolicyError, match="already holds a checkpoint"):
        finetune_pi05(config)


def test_finetune_a_base_like_checkpoint_onto_new_cameras_and_sizes(pickcube: dict, tmp_path: Path) -> None:
    """Like lerobot/pi05_base: other camera names, padded 32-dim state and action, the base's own stats."""
    from lerobot.configs import FeatureType, PolicyFeature
    from lerobot.policies.pi05 import PI05Policy

    from policies.pi05.finetune import Pi05TrainConfig, finetune_pi05

    visual = PolicyFeature(FeatureType.VISUAL, (3, 32, 32))
    inputs = {f"observation.images.{name}": visual for name in ("base_0_rgb", "left_wrist_0_rgb")}
    inputs["observation.state"] = PolicyFeature(FeatureType.STATE, (32,))
    outputs = {"action": PolicyFeature(FeatureType.ACTION, (32,))}
    base_config = tiny_lerobot_config(inputs, outputs, chunk_size=CHUNK, n_action_steps=CHUNK)
    unit = {name: np.full(32, value, dtype=np.float32) for name, value in
            dict(q01=-1.0, q99=1.0, mean=0.0, std=1.0, min=-1.0, max=1.0).items()}
    stats = {"observation.state": unit, "action": unit}
    tokenizer = train_tiny_tokenizer(tmp_path / "tokenizer", texts=[pickcube["task"]])
    torch.manual_seed(1)
    processors = make_pi05_processors(base_config, stats, tokenizer=str(tmp_path / "tokenizer"))
    base = save_pi05(PI05Policy(base_config), *processors, tmp_path / "base", tokenizer=tokenizer)

    result = finetune_pi05(Pi05TrainConfig(
        store=pickcube["store"], output_dir=tmp_path / "run", pretrained=str(base), val_fraction=0.0,
        rename_map={"observation.images.base_camera": "observation.images.base_0_rgb"},
        steps=1, batch_size=2, progress=False,
    ))
    assert result.val_loss is None and np.isfinite(result.train_loss)
    tuned = Pi05Policy(Pi05Config(pretrained=str(result.checkpoint),
                                  cameras={CAMERA: "observation.images.base_0_rgb"}, seed=0))
    assert (tuned.state_dim, tuned.action_dim) == (25, 8)
    chunk = tuned.act(pickcube["observation"])  # the wrist camera is absent: LeRobot masks it
    assert chunk.shape == (CHUNK, 8) and np.isfinite(chunk).all()


def test_rolls_out_through_evaluate_policy(checkpoint: dict, tmp_path: Path) -> None:
    """The rollout loop renders before each chunk, executes it step by step and records the episode."""
    from app.evaluate import evaluate_in_sim
    from recordings.store import EpisodeStore
    from sim.maniskill_env import SimEnvConfig

    policy = Pi05Policy(Pi05Config(pretrained=str(checkpoint["path"]), n_action_steps=3, seed=0))
    env_config = SimEnvConfig(env_id=ENV_ID, cameras=[CAMERA], camera_width=CAMERA_SIZE, camera_height=CAMERA_SIZE)
    report = evaluate_in_sim(policy, env_config, episodes=1, max_steps=7, policy_id="pi05-tiny",
                             record_to=tmp_path / "rollouts", progress=False)
    assert report.episodes == 1 and report.lengths == [7]
    with EpisodeStore.open(tmp_path / "rollouts", mode="r") as store:
        (record,) = store.episodes()
        assert record.length == 7 and record.meta.policy_id == "pi05-tiny"


def test_train_and_eval_commands_run_pi05(pickcube: dict, checkpoint: dict, tmp_path: Path, capsys) -> None:
    """`train-policy` picks pi0.5 by the config's type; `eval-policy` recognises the checkpoint it wrote."""
    from app.cli import main

    config = tmp_path / "pi05_finetune.yaml"
    config.write_text(
        "type: pi05\n"
        f"store: {pickcube['store']}\n"
        f"output_dir: {tmp_path / 'run'}\n"
        f"pretrained: {checkpoint['path']}\n"
        "val_fraction: 0.0\nsteps: 1\nbatch_size: 2\nprogress: false\n"
    )
    assert main(["train-policy", "--config", str(config)]) == 0
    trained = tmp_path / "run" / "checkpoints" / "last"
    assert (trained / "model.safetensors").is_file()

    assert main([
        "eval-policy", "--checkpoint", str(trained), "--episodes", "1", "--record", str(tmp_path / "rollouts"),
        "--set", "max_steps=3", "--set", f"env.cameras=[{CAMERA}]",
        "--set", f"env.camera_width={CAMERA_SIZE}", "--set", f"env.camera_height={CAMERA_SIZE}",
    ]) == 0
    out = capsys.readouterr().out
    assert f"{ENV_ID} {trained}: success " in out and "/1 = " in out and "mean length 3.0 steps" in out
    from recordings.store import EpisodeStore

    with EpisodeStore.open(tmp_path / "rollouts", mode="r") as store:
        (record,) = store.episodes()
        assert record.length == 3 and record.meta.policy_id == str(trained)

    # An explicit mapping from a config's pi05 section; --checkpoint names the weights.
    eval_config = tmp_path / "eval.yaml"
    eval_config.write_text(
        f"pi05:\n  cameras: {{{CAMERA}: observation.images.{CAMERA}}}\n  n_action_steps: 2\n  seed: 0\n"
        f"env:\n  env_id: {ENV_ID}\n  cameras: [{CAMERA}]\n  camera_width: {CAMERA_SIZE}\n"
        f"  camera_height: {CAMERA_SIZE}\nepisodes: 1\nmax_steps: 4\n"
    )
    assert main(["eval-policy", "--config", str(eval_config), "--checkpoint", str(trained)]) == 0
    assert "mean length 4.0 steps" in capsys.readouterr().out
