"""Any task ManiSkill registers can be used by naming it and giving its task sentence; the table only supplies defaults.

RollBall-v1 (a Panda pushing a ball to a goal region) is registered by ManiSkill 3.0.1, builds offline on
the CPU backend and is not in SUPPORTED_ENVS, which these tests check first so they keep meaning that.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from app.cli import main
from recordings.store import EpisodeStore
from sim.demos import config_hash, record_demos
from sim.errors import MissingTaskError, SimError, UnknownEnvError
from sim.maniskill_env import SUPPORTED_ENVS, SimEnvConfig, make_sim_env

pytestmark = pytest.mark.sim

OFF_TABLE = "RollBall-v1"
SENTENCE = "push the blue ball into the goal region"
SIZE = 32  # a tiny camera: ~1/16 of the default 128x128's render time on lavapipe


def test_the_off_table_task_is_really_off_the_table():
    assert OFF_TABLE not in SUPPORTED_ENVS


def test_a_registered_task_off_the_table_runs_with_its_sentence_from_config():
    with make_sim_env(env_id=OFF_TABLE, task=SENTENCE, camera_width=SIZE, camera_height=SIZE) as env:
        assert env.task == SENTENCE
        obs = env.reset(seed=1)
        assert obs.task == SENTENCE and obs.state.dtype == np.float32 and obs.state.shape == (env.state_size,)
        low, high = env.action_space.low, env.action_space.high
        for t in range(1, 4):
            obs, info = env.step(((low + high) / 2).astype(np.float32))
            assert obs.step == t and np.all(np.isfinite(obs.state))
        assert isinstance(info["success"], bool) and isinstance(info["dense_reward"], float)
        images = env.capture()
        assert images and all(image.shape == (SIZE, SIZE, 3) and image.std() > 1 for image in images.values())


def test_the_configs_sentence_overrides_the_tables_default():
    config = SimEnvConfig(env_id="PickCube-v1", task="lift the cube")
    assert config.task_sentence == "lift the cube"
    assert SimEnvConfig(env_id="PickCube-v1").task_sentence == SUPPORTED_ENVS["PickCube-v1"].task
    # a config that leaves the task to the table hashes as before `task` existed (value from main)
    assert config_hash(SimEnvConfig()) == "b704ff58006e"
    assert config_hash(config) != config_hash(SimEnvConfig(env_id="PickCube-v1"))


def test_an_off_table_task_without_a_sentence_asks_for_one_in_one_line():
    with pytest.raises(MissingTaskError) as info:
        SimEnvConfig(env_id=OFF_TABLE)
    message = str(info.value)
    assert "\n" not in message and OFF_TABLE in message and "task" in message


def test_an_unregistered_id_is_one_line_naming_it_and_its_close_matches():
    with pytest.raises(UnknownEnvError) as info:
        SimEnvConfig(env_id="RolBall-v1", task=SENTENCE)
    message = str(info.value)
    assert "\n" not in message and "'RolBall-v1'" in message and "RollBall-v1" in message


def test_demos_of_a_task_without_a_solver_name_the_tasks_that_have_one(tmp_path):
    with pytest.raises(SimError) as info:
        record_demos(OFF_TABLE, 1, tmp_path / "store", progress=False)
    message = str(info.value)
    assert "\n" not in message and f"no motion-planning solver for {OFF_TABLE}" in message
    assert all(env_id in message for env_id, spec in SUPPORTED_ENVS.items() if spec.solver)
    assert not (tmp_path / "store").exists()


def test_demos_command_refuses_it_in_one_line(tmp_path, capsys):
    assert main(["demos", "--env", OFF_TABLE, "-n", "1", "--output-dir", str(tmp_path / "store")]) == 2
    err = capsys.readouterr().err.strip()
    assert "\n" not in err and f"no motion-planning solver for {OFF_TABLE}" in err


def test_eval_policy_records_the_off_table_task_from_its_config(tmp_path, capsys):
    store = tmp_path / "rollouts"
    argv = ["eval-policy", "--random", "-n", "1", "--record", str(store),
            "--set", f"env.env_id={OFF_TABLE}", "--set", f"env.task={SENTENCE}", "--set", "max_steps=3",
            "--set", f"env.camera_width={SIZE}", "--set", f"env.camera_height={SIZE}"]
    assert main(argv) == 0, capsys.readouterr().err
    with EpisodeStore.open(store, mode="r") as opened:
        (record,) = opened.episodes()
        assert record.meta.env_id == OFF_TABLE and record.meta.task == SENTENCE and record.length >= 3


def test_eval_policy_without_the_sentence_is_a_one_line_error(tmp_path, capsys):
    assert main(["eval-policy", "--random", "-n", "1", "--set", f"env.env_id={OFF_TABLE}"]) == 2
    err = capsys.readouterr().err.strip()
    assert "\n" not in err and OFF_TABLE in err and "task" in err


def test_improve_with_planned_demos_is_refused_in_one_line_and_with_stored_demos_is_accepted(tmp_path):
    from app.env_choice import EnvSection
    from app.improve.config import DemosConfig, ImproveConfig

    sim = SimEnvConfig(env_id=OFF_TABLE, task=SENTENCE, cameras=["base_camera"])
    with pytest.raises(ValueError) as info:
        ImproveConfig(env=EnvSection(sim=sim))
    message = str(info.value)
    assert "\n" not in message and OFF_TABLE in message and "demos.source: store" in message
    config = ImproveConfig(env=EnvSection(sim=sim), demos=DemosConfig(source="store", store=str(tmp_path / "demos")))
    assert config.env.sim.task_sentence == SENTENCE


def test_ppo_trains_on_the_off_table_task_with_its_oracle_reward(tmp_path, capsys):
    """`ppo` takes the task by name and sentence like every command: one iteration, the sentence in its config."""
    import json

    from tests.support.tiny_actor_critic import save_tiny_actor_critic

    with make_sim_env(env_id=OFF_TABLE, task=SENTENCE, state_mode="full", cameras=[]) as env:
        checkpoint = save_tiny_actor_critic(tmp_path / "bc", state_dim=env.state_size)
    out = tmp_path / "ppo"
    sets = [f"env.sim.env_id={OFF_TABLE}", f"env.sim.task={SENTENCE}", "env.backend=cpu_sync", "env.num_envs=2",
            "env.episode_steps=4", "ppo.value_warmup_iterations=0", "ppo.num_minibatches=1", "rerun=false",
            "plot=false", "progress=false"]
    config = Path(__file__).resolve().parents[2] / "configs/ppo/pickcube_oracle.yaml"
    argv = ["ppo", "--config", str(config), "--output-dir", str(out), "--checkpoint",
            str(checkpoint), "--iterations", "1", *sum([["--set", s] for s in sets], [])]
    assert main(argv) == 0, capsys.readouterr().err
    (row,) = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert row["env_steps"] == 8 and row["policy_trained"] and np.isfinite(row["policy_loss"])
    assert json.loads((out / "config.json").read_text())["env"]["sim"]["task"] == SENTENCE
