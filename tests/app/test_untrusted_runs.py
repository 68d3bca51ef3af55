"""A run or checkpoint folder from elsewhere is data, never code.

A pickled call planted in a copied run's `training_state.pt` is refused on
`train-policy --resume` and on `ppo` (which resumes by default) with one line
naming the file, and the call never runs: its marker file is not created. A
damaged state or weights file is one line too. That the same payload does run
under `weights_only=False` is checked first, so these tests can fail.
"""

from __future__ import annotations

import pathlib
import shutil

import numpy as np
import pytest
import torch
import yaml

from app.cli import main
from common.outputs import MARKER
from policies.actor_critic.model import ActorCriticConfig, NormStats, make_policy
from tests.support.demo_store import demo_store

ROOT = pathlib.Path(__file__).resolve().parents[2]


class Planted:
    """Unpickling it calls `Path.touch(marker)`: a file appearing proves that loading ran code."""

    def __init__(self, marker: pathlib.Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (pathlib.Path.touch, (pathlib.Path(self.marker),))


def plant(state_file: pathlib.Path, marker: pathlib.Path) -> None:
    """Add the payload to the training state at `state_file`, keeping everything else it holds."""
    state = torch.load(state_file, weights_only=True)
    state["note"] = Planted(marker)
    torch.save(state, state_file)


def one_error_line(capsys) -> str:
    err = capsys.readouterr().err.strip()
    assert "\n" not in err and "Traceback" not in err, err
    return err


def test_the_payload_runs_when_unpickled_unsafely(tmp_path):
    state = tmp_path / "training_state.pt"
    torch.save({"step": 1}, state)
    plant(state, tmp_path / "ran")
    torch.load(state, weights_only=False)
    assert (tmp_path / "ran").exists()


@pytest.fixture
def bc_run(tmp_path) -> tuple[pathlib.Path, list[str]]:
    """A finished 10-step behaviour-cloning run, and the train-policy arguments that resume it."""
    store = demo_store(tmp_path / "store", episodes=3, length=12)
    config = tmp_path / "bc.yaml"
    config.write_text(yaml.safe_dump({
        "store": str(store), "output_dir": str(tmp_path / "run"), "policy": {"hidden_dims": [16]},
        "steps": 10, "batch_size": 8, "log_every": 5, "val_every": 5, "checkpoint_every": 5, "val_fraction": 0.0,
        "progress": False,
    }))
    assert main(["train-policy", "--config", str(config)]) == 0
    assert (tmp_path / "run" / MARKER).is_file()  # the command made the output folder
    return tmp_path / "run", ["train-policy", "--config", str(config), "--steps", "20"]


def test_train_policy_resume_refuses_a_planted_training_state(bc_run, tmp_path, capsys):
    run, args = bc_run
    copied = tmp_path / "copied-run"
    shutil.copytree(run, copied)
    state = copied / "checkpoints" / "last" / "training_state.pt"
    marker = tmp_path / "payload-ran"
    plant(state, marker)
    capsys.readouterr()

    assert main([*args, "--output-dir", str(copied)]) == 2
    err = one_error_line(capsys)
    assert err.startswith(f"lrm-robot train-policy: error: {state}: refused: loading it would call")
    assert not marker.exists()
    # the untouched run still resumes
    assert main([*args, "--output-dir", str(run)]) == 0


def test_train_policy_resume_reports_a_damaged_training_state(bc_run, capsys):
    run, args = bc_run
    state = run / "checkpoints" / "last" / "training_state.pt"
    state.write_bytes(state.read_bytes()[:200])
    capsys.readouterr()
    assert main([*args, "--output-dir", str(run)]) == 2
    assert one_error_line(capsys).startswith(f"lrm-robot train-policy: error: {state}: damaged training state (")


@pytest.fixture
def actor_critic(tmp_path) -> pathlib.Path:
    config = ActorCriticConfig(hidden_dims=[16], chunk_size=2)
    stats = NormStats(np.zeros(42, np.float32), np.ones(42, np.float32), np.zeros(8, np.float32),
                      np.ones(8, np.float32))
    return make_policy(config, stats=stats, state_dim=42, action_dim=8).save_pretrained(tmp_path / "checkpoint")


def test_ppo_resume_refuses_a_planted_training_state(actor_critic, tmp_path, capsys):
    """A PPO output folder whose last checkpoint carries the payload, as a copied run would."""
    out = tmp_path / "ppo"
    last = out / "checkpoints" / "last"
    shutil.copytree(actor_critic, last / "policy")
    policy = torch.nn.Linear(2, 2)
    optimizer = torch.optim.Adam(policy.parameters())
    policy(torch.ones(1, 2)).sum().backward()
    optimizer.step()
    state = last / "training_state.pt"
    torch.save({"iteration": 1, "env_steps": 64, "optimizer": optimizer.state_dict(), "failures": {}}, state)
    marker = tmp_path / "payload-ran"
    plant(state, marker)

    code = main(["ppo", "--config", str(ROOT / "configs/ppo/pickcube_oracle.yaml"), "--output-dir", str(out),
                 "--checkpoint", str(actor_critic), "--set", "progress=false"])
    assert code == 2
    assert one_error_line(capsys).startswith(f"lrm-robot ppo: error: {state}: refused: loading it would call")
    assert not marker.exists()


def test_a_truncated_weights_file_is_one_line(actor_critic, tmp_path, capsys):
    weights = actor_critic / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[:100])
    code = main(["eval-policy", "--checkpoint", str(actor_critic), "--episodes", "1",
                 "--output-dir", str(tmp_path / "eval")])
    assert code == 2
    assert one_error_line(capsys).startswith(f"lrm-robot eval-policy: error: {weights}: damaged weights file (")


def test_train_policy_resume_reports_a_garbled_split(bc_run, capsys):
    run, args = bc_run
    (run / "split.json").write_text('{"train": [0, "rm -rf"], "val": []}')
    capsys.readouterr()
    assert main([*args, "--output-dir", str(run)]) == 2
    err = one_error_line(capsys)
    assert err.endswith(f"{run / 'split.json'}: the split lists something other than episode indices")
