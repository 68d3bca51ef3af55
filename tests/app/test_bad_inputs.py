"""Every bad input is one line on stderr and exit code 2, before any work starts.

The inputs a hostile user tried (issue 18): broken config files for every command that reads one,
numbers out of range from a file or a flag, output paths that cannot be written, argparse's own
errors. Each case runs the command in-process (`app.cli.main`); a few run the installed
`lrm-robot` to show that nothing else (a log line, a warning) reaches stderr either.
"""

from __future__ import annotations

import os
import pathlib
import subprocess
import sys

import pytest
import yaml

from app.cli import main
from recordings.store import EpisodeStore
from tests.support.demo_store import demo_store
from tests.support.bad_inputs import (ARGPARSE_CASES, BROKEN_FILES, COMMANDS, EXPORT_FPS_VALUES, FLAG_CASES,
                                     LEARNING_RATE_VALUES, LEARNING_RATES, argv_for, output_cases)
from tests.support.shipped_configs import ROOT

@pytest.fixture(autouse=True)
def _repo_root(monkeypatch):
    monkeypatch.chdir(ROOT)


def refused(capsys, argv: list[str]) -> str:
    """Run `lrm-robot ARGV` in-process; it must exit 2 with one error line, which is returned."""
    capsys.readouterr()
    try:
        code = main(argv)
    except SystemExit as exc:  # argparse's own errors
        code = exc.code
    err = capsys.readouterr().err.strip()
    assert code == 2, (argv, code, err)
    assert "\n" not in err and "Traceback" not in err, err
    assert err.startswith("lrm-robot"), err
    return err


def test_every_command_with_a_config_is_covered():
    assert set(COMMANDS) == {"demos", "improve", "operate", "ppo", "score", "eval-reward", "train-lrm",
                             "train-policy", "eval-policy", "robot-check", "serve"}


@pytest.mark.parametrize("command", sorted(COMMANDS))
@pytest.mark.parametrize("kind", sorted(BROKEN_FILES))
def test_a_broken_config_file_is_one_line_for_every_command(tmp_path, capsys, command, kind):
    content, expected = BROKEN_FILES[kind]
    if kind == "binary":
        expected = "is not UTF-8 text (byte 0 is 0x89)"
    config = tmp_path / "config.yaml"
    config.write_bytes(content)
    err = refused(capsys, argv_for(command, config, tmp_path / "store"))
    assert f"{config}: " in err and expected in err, err


@pytest.mark.parametrize(("command", "config", "key"), LEARNING_RATES)
@pytest.mark.parametrize(("value", "expected"), LEARNING_RATE_VALUES)
def test_a_learning_rate_out_of_range_is_refused_when_read(tmp_path, capsys, command, config, key, value,
                                                           expected):
    argv = [command, "--config", config, "--set", f"{key}={value}", "--set", f"output_dir={tmp_path / 'out'}"]
    assert refused(capsys, argv).endswith(f"error: --set {key}={value}: key '{key}': {expected}")
    assert not (tmp_path / "out").exists()


def test_a_learning_rate_in_a_file_names_the_file_and_key(tmp_path, capsys):
    config = tmp_path / "bc.yaml"
    data = yaml.safe_load((ROOT / "configs/policies/bc_pickcube.yaml").read_text())
    config.write_text(yaml.safe_dump({**data, "lr": float("nan")}))
    err = refused(capsys, ["train-policy", "--config", str(config)])
    assert err.endswith(f"error: {config}: key 'lr': must be a finite number, got nan")


@pytest.mark.parametrize(("argv", "expected"), FLAG_CASES)
def test_numbers_and_names_out_of_range_from_flags(capsys, argv, expected):
    assert expected in refused(capsys, argv)


@pytest.mark.parametrize("argv", ARGPARSE_CASES)
def test_argparse_errors_are_one_line(capsys, argv):
    """argparse prints the usage first (2 or 3 lines); here the usage is one `--help` away."""
    assert "(see lrm-robot" in refused(capsys, argv)


@pytest.fixture
def small_store(tmp_path) -> pathlib.Path:
    return demo_store(tmp_path / "store")


def test_an_unknown_camera_of_a_store_is_named(small_store, capsys):
    err = refused(capsys, ["score", str(small_store), "--episode", "0", "--backend", "configs/lrm/backends/oracle.yaml",
                           "--camera", "wrist"])
    assert "camera 'wrist' is not in" in err and "base_camera" in err


@pytest.mark.sim
@pytest.mark.filterwarnings("ignore::DeprecationWarning")
def test_an_unknown_camera_of_the_simulator_is_named(tmp_path, capsys):
    """Known only once the env is built: the first thing `demos` does, before any demonstration."""
    err = refused(capsys, ["demos", "--env", "PickCube-v1", "-n", "1", "--output-dir", str(tmp_path / "store"),
                           "--camera-size", "32x32", "--set", "env.cameras=[wrist]"])
    assert err == "lrm-robot demos: error: PickCube-v1 has no camera 'wrist'; it has base_camera, render_camera"
    assert not (tmp_path / "store").exists() or EpisodeStore.open(tmp_path / "store").num_episodes == 0


@pytest.fixture
def a_file(tmp_path) -> pathlib.Path:
    path = tmp_path / "a-file"
    path.write_text("not a folder\n")
    return path


def test_output_paths_are_checked_before_the_work(small_store, a_file, tmp_path, capsys):
    for argv, expected in output_cases(small_store, a_file, tmp_path):
        err = refused(capsys, argv)
        assert expected in err, (argv, err)
    assert a_file.read_text() == "not a folder\n"


@pytest.mark.parametrize("value", EXPORT_FPS_VALUES)
def test_store_export_fps_out_of_range(small_store, tmp_path, capsys, value):
    err = refused(capsys, ["store", "export", str(small_store), "--output-dir", str(tmp_path / "ds"), "--fps", value])
    assert f"--fps {float(value)}: must be more than 0 and at most 1000" in err


def test_view_without_a_viewer_on_the_path(small_store, tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("PATH", str(tmp_path))
    monkeypatch.setenv("DISPLAY", ":0")
    monkeypatch.setattr(sys, "executable", str(tmp_path / "python"))  # nor one beside this Python
    err = refused(capsys, ["view", str(small_store), "--episode", "0", "--spawn"])
    assert err == ("lrm-robot view: error: the rerun viewer is not installed in this environment "
                   "(pip install rerun-sdk): save a recording with --save FILE.rrd")


def test_view_without_a_display(small_store, monkeypatch, capsys):
    monkeypatch.delenv("DISPLAY", raising=False)
    monkeypatch.delenv("WAYLAND_DISPLAY", raising=False)
    err = refused(capsys, ["view", str(small_store), "--episode", "0", "--spawn"])
    assert err == ("lrm-robot view: error: no display here (DISPLAY and WAYLAND_DISPLAY are unset), so the rerun "
                   "viewer cannot open: save a recording with --save FILE.rrd")


def lrm_robot(*args: str) -> subprocess.CompletedProcess:
    exe = pathlib.Path(sys.executable).with_name("lrm-robot")
    env = {**os.environ, "PYTHONPATH": str(ROOT)}  # this checkout's code, as the in-process cases
    return subprocess.run([str(exe), *args], capture_output=True, text=True, timeout=300, cwd=ROOT, env=env)


def test_the_installed_command_prints_nothing_but_the_line(tmp_path):
    """Out of process: no log line or warning reaches stderr next to the error."""
    config = tmp_path / "config.yaml"
    config.write_bytes(b"\xff\xfe binary")
    for argv in (["ppo", "--config", str(config)], ["demos", "--seed", "-1"], ["improve", "--rounds", "x"]):
        result = lrm_robot(*argv)
        assert result.returncode == 2, result
        assert len(result.stderr.splitlines()) == 1 and result.stdout == "", result.stderr
