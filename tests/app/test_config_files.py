"""A config file named by another config (a reward backend, a robot, a teacher) is read with it.

So a broken named file ends the command before any work starts, in one line that
names that file and the key, with exit code 2, as a broken config itself does.
"""

from __future__ import annotations

import pathlib

import pytest
import yaml

from app.cli import main

BROKEN_BACKEND = "type: lite\nlite: {checkpont: outputs/lite}\n"
BACKEND_ERROR = "unknown key 'lite.checkpont' (did you mean 'checkpoint'?)"


def _outer(tmp_path: pathlib.Path, command: str, nested: pathlib.Path) -> dict:
    out = str(tmp_path / "out")
    return {
        "ppo": {"output_dir": out, "reward": {"backend": str(nested)}},
        "eval-reward": {"sources": [str(tmp_path)], "backend": str(nested), "output_dir": out},
        "train-lrm": {"type": "lite_distill", "store": str(tmp_path), "output_dir": out, "teacher": str(nested)},
    }[command]


@pytest.mark.parametrize("command", ["ppo", "eval-reward", "train-lrm"])
def test_a_broken_backend_file_fails_before_any_work(tmp_path, capsys, command):
    nested = tmp_path / "backend.yaml"
    nested.write_text(BROKEN_BACKEND)
    config = tmp_path / "config.yaml"
    config.write_text(yaml.safe_dump(_outer(tmp_path, command, nested)))
    assert main([command, "--config", str(config)]) == 2
    err = capsys.readouterr().err.strip()
    assert "\n" not in err and err == f"lrm-robot {command}: error: {nested}: {BACKEND_ERROR}"
    assert not (tmp_path / "out").exists()


def test_a_backend_named_by_set_is_read_too(tmp_path, capsys):
    nested = tmp_path / "backend.yaml"
    nested.write_text(BROKEN_BACKEND)
    assert main(["ppo", "--config", "configs/ppo/pickcube_lite.yaml", "--output-dir", str(tmp_path / "out"),
                 "--set", f"reward.backend={nested}"]) == 2
    assert capsys.readouterr().err.strip() == f"lrm-robot ppo: error: {nested}: {BACKEND_ERROR}"


def test_eval_reward_overrides_apply_to_the_backend_file(tmp_path, capsys):
    config = tmp_path / "config.yaml"
    config.write_text(yaml.safe_dump({"sources": [str(tmp_path)], "backend": "configs/lrm/backends/lite.yaml",
                                      "backend_overrides": ["lite.devise=cpu"], "output_dir": str(tmp_path / "out")}))
    assert main(["eval-reward", "--config", str(config)]) == 2
    err = capsys.readouterr().err.strip()
    assert err == ("lrm-robot eval-reward: error: configs/lrm/backends/lite.yaml: override lite.devise=cpu: "
                   "unknown key 'lite.devise' (did you mean 'device'?)")


def test_a_broken_robot_file_fails_before_any_work(tmp_path, capsys):
    pytest.importorskip("robot_drivers.config")
    robot = tmp_path / "robot.yaml"
    robot.write_text("control_hz: fast\n")
    config = tmp_path / "config.yaml"
    config.write_text(yaml.safe_dump({"output_dir": str(tmp_path / "out"), "env": {"kind": "robot", "robot": str(robot)}}))
    assert main(["improve", "--config", str(config)]) == 2
    err = capsys.readouterr().err.strip()
    assert "\n" not in err and err.startswith(f"lrm-robot improve: error: {robot}: key 'control_hz'")
    assert not (tmp_path / "out").exists()
