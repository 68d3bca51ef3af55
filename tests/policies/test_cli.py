"""`lrm-robot train-policy` and `lrm-robot eval-policy`, run for real on a store of PickCube demos."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from app.cli import main

ROOT = Path(__file__).resolve().parents[2]
TRAIN_CONFIG = ROOT / "configs" / "policies" / "bc_pickcube.yaml"
EVAL_CONFIG = ROOT / "configs" / "policies" / "eval_pickcube.yaml"


@pytest.mark.parametrize("command", ["train-policy", "eval-policy"])
def test_help(command, capsys):
    with pytest.raises(SystemExit) as exit_info:
        main([command, "--help"])
    assert exit_info.value.code == 0 and "usage: lrm-robot" in capsys.readouterr().out


@pytest.mark.sim
def test_train_then_evaluate_and_record(pickcube_demos, tmp_path, capsys):
    out = tmp_path / "run"
    args = ["train-policy", "--config", str(TRAIN_CONFIG), "--store", str(pickcube_demos), "--output-dir", str(out)]
    assert main([*args, "--steps", "20", "--set", "progress=false", "--set", "batch_size=32"]) == 0
    assert "trained 20 steps" in capsys.readouterr().out
    assert main([*args, "--steps", "30", "--set", "progress=false"]) == 0  # continues by default
    assert "trained 10 steps (to 30/30)" in capsys.readouterr().out
    ckpt = out / "checkpoints" / "last"

    report_path = tmp_path / "eval" / "report.json"
    rollouts = tmp_path / "rollouts"
    assert main(["eval-policy", "--config", str(EVAL_CONFIG), "--checkpoint", str(ckpt), "--episodes", "2",
                 "--record", str(rollouts), "--output-dir", str(report_path.parent), "--set", "max_steps=8"]) == 0
    printed = capsys.readouterr().out
    assert "success 0/2" in printed and "95% CI" in printed and "recorded episodes 0-1" in printed
    report = json.loads(report_path.read_text())
    assert report["episodes"] == 2 and report["ci95"][0] == 0.0 and report["seeds"] == [10000, 10001]

    from recordings.store import EpisodeStore

    with EpisodeStore.open(rollouts) as store:
        assert [r.meta.policy_id for r in store.episodes(source="sim")] == [str(ckpt)] * 2
        assert store.cameras == {} and store.num_frames == 16


def test_errors_are_one_line(tmp_path, capsys):
    assert main(["train-policy", "--config", str(TRAIN_CONFIG), "--set", "stepz=3"]) == 2
    err = capsys.readouterr().err
    assert "unknown key 'stepz'" in err and len(err.strip().splitlines()) == 1
    assert main(["train-policy", "--config", str(TRAIN_CONFIG), "--store", str(tmp_path / "none"),
                 "--output-dir", str(tmp_path / "out")]) == 2
    assert "does not exist" in capsys.readouterr().err
    assert main(["eval-policy", "--config", str(EVAL_CONFIG), "--checkpoint", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert "not an actor-critic checkpoint" in err and len(err.strip().splitlines()) == 1
