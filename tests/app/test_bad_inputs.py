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
from tests.support.shipped_configs import ROOT, SHIPPED, shipped_files

# one shipped config per command that reads one, and the arguments that run it on a config file
COMMANDS = {}
for _file in shipped_files():
    for _shipped in SHIPPED:
        if _shipped.command and _shipped.command[0] not in COMMANDS and _file.match(_shipped.pattern):
            COMMANDS[_shipped.command[0]] = (_shipped.command, _file)


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


def argv_for(command: str, config: pathlib.Path, store: pathlib.Path) -> list[str]:
    words, _ = COMMANDS[command]
    return [str(store) if w == "STORE" else w for w in words] + [str(config)]


def test_every_command_with_a_config_is_covered():
    assert set(COMMANDS) == {"demos", "improve", "operate", "ppo", "score", "eval-reward", "train-lrm",
                             "train-policy", "eval-policy", "robot-check", "serve"}


BROKEN_FILES = {
    "binary": (b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR\xff\xfe", "is not UTF-8 text (byte 8 is 0x00)"),
    "latin-1": ("rounds: 2\ntask: caf\u00e9\n".encode("latin-1"), "is not UTF-8 text (byte 19 is 0xe9)"),
    "nested": (("a: " + "[" * 3000 + "]" * 3000 + "\n").encode(), "nested more than 64 levels deep"),
    "repeated-key": (b"output_dir: a\noutput_dir: b\n", "key 'output_dir' is given twice (first at line 1)"),
    "not-yaml": (b"a: [unclosed\n", "invalid YAML at line 2"),
}


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


LEARNING_RATES = [
    ("train-policy", "configs/policies/bc_pickcube.yaml", "lr"),
    ("train-policy", "configs/policies/pi05_finetune_pickcube.yaml", "optimizer_lr"),
    ("ppo", "configs/ppo/pickcube_lite.yaml", "ppo.learning_rate"),
    ("ppo", "configs/ppo/pickcube_lite.yaml", "ppo.value_learning_rate"),
    ("train-lrm", "configs/lrm/train/lite_pickcube.yaml", "train.lr"),
    ("train-lrm", "configs/lrm/train/lora_pickcube.yaml", "train.lr"),
]


@pytest.mark.parametrize(("command", "config", "key"), LEARNING_RATES)
@pytest.mark.parametrize(("value", "expected"), [(".nan", "must be a finite number, got nan"),
                                                 ("-.inf", "must be a finite number, got -inf"),
                                                 ("-3e-4", "must be more than 0, got -0.0003"),
                                                 ("0", "must be more than 0, got 0"),
                                                 ("30", "must be at most 1, got 30")])
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


@pytest.mark.parametrize(("argv", "expected"), [
    (["improve", "--set", "rollouts_per_round=1e23"],
     "--set rollouts_per_round=1e23: key 'rollouts_per_round': expected int, got 1e23 "
     "(write a whole number without an exponent)"),
    (["improve", "--set", "rollouts_per_round=100000000000000000000000"],
     "must be at most 1000000, got 100000000000000000000000"),
    (["improve", "--rounds", "-1"], "--rounds -1: key 'rounds': must be at least 0, got -1"),
    (["demos", "--seed", "-1"], "--seed -1: key 'seed': must be at least 0, got -1"),
    (["demos", "--max-attempts", "0"],
     "--max-attempts 0: key 'max_attempts': must be at least 1, got 0"),
    (["demos", "-n", "0"], "--num-episodes 0: key 'num_episodes': must be at least 1, got 0"),
    (["demos", "--camera-size", "99999x99999"],
     "argument --camera-size: '99999x99999': each side must be at most 4096, got 99999"),
    (["demos", "--camera-size", "128"], "argument --camera-size: '128' is not WIDTHxHEIGHT (e.g. 128x128)"),
    (["eval-policy", "--random", "--seed", "-1"], "--seed -1: key 'seed': must be at least 0, got -1"),
    (["eval-policy", "--random", "--episodes", "0"],
     "--episodes 0: key 'episodes': must be at least 1, got 0"),
    (["ppo", "--config", "configs/ppo/pickcube_lite.yaml", "--iterations", "0"],
     "--iterations 0: key 'iterations': must be at least 1, got 0"),
    (["ppo", "--config", "configs/ppo/pickcube_lite.yaml", "--set", "env.sim.camera_width=99999"],
     "--set env.sim.camera_width=99999: key 'env.sim.camera_width': must be at most 4096, got 99999"),
    (["robot-check", "--config", "configs/robot/so101.yaml", "--seconds", "nan"],
     "--seconds must be more than 0 and at most 3600, got nan"),
    (["improve", "--set", "judge.camera=wrist_camera"],
     "judge camera 'wrist_camera' is not among env.sim.cameras ['base_camera']"),
])
def test_numbers_and_names_out_of_range_from_flags(capsys, argv, expected):
    assert expected in refused(capsys, argv)


@pytest.mark.parametrize("argv", [
    [], ["store"], ["demos", "--bogus"], ["view", "STORE"], ["store", "export", "STORE", "--source", "moon"],
    ["demos", "--seed", "x"], ["nonsense-command"],
])
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


def output_cases(store: pathlib.Path, a_file: pathlib.Path, tmp_path: pathlib.Path) -> list[tuple[list[str], str]]:
    """(argv, expected) for output paths that are a file, lie under a file, or cannot be written."""
    unwritable = pathlib.Path("/proc/lrm-robot-test/out")  # not even root creates files in /proc
    return [
        (["eval-policy", "--random", "--output-dir", str(a_file)], f"output_dir {a_file}: is a file; name a folder"),
        (["eval-policy", "--random", "--output-dir", str(a_file / "eval")],
         f"output_dir {a_file / 'eval'}: {a_file} is a file, not a folder"),
        (["eval-policy", "--random", "--output-dir", str(unwritable)], "/proc is not writable ("),
        (["eval-policy", "--random", "--record", str(a_file)], f"record {a_file}: is a file; name a folder"),
        (["improve", "--output-dir", str(a_file)], f"output_dir {a_file}: is a file; name a folder"),
        (["improve", "--output-dir", str(unwritable)], "/proc is not writable ("),
        (["ppo", "--config", "configs/ppo/pickcube_oracle.yaml", "--output-dir", str(a_file / "run")],
         f"{a_file} is a file, not a folder"),
        (["train-policy", "--config", "configs/policies/bc_pickcube.yaml", "--store", str(store), "--output-dir",
          str(a_file)], f"output_dir {a_file}: is a file; name a folder"),
        (["train-lrm", "--config", "configs/lrm/train/lite_pickcube.yaml", "--store", str(store), "--output-dir",
          str(a_file)], f"output_dir {a_file}: is a file; name a folder"),
        (["eval-reward", "--config", "configs/lrm/eval/oracle.yaml", "--output-dir", str(a_file)],
         f"output_dir {a_file}: is a file; name a folder"),
        (["demos", "--output-dir", str(a_file)], f"output_dir {a_file}: is a file; name a folder"),
        (["view", str(store), "--episode", "0", "--save", str(a_file / "x.rrd")], f"{a_file} is a file, not a folder"),
        (["score", str(store), "--episode", "0", "--backend", "configs/lrm/backends/oracle.yaml", "--output-dir",
          str(a_file)], f"--output-dir {a_file}: is a file; name a folder"),
        (["score", str(store), "--episode", "0", "--backend", "configs/lrm/backends/oracle.yaml", "--output-dir",
          str(tmp_path / "score"), "--rrd", str(unwritable / "x.rrd")], "/proc is not writable ("),
        (["store", "export", str(store), "--output-dir", str(a_file)], f"--output-dir {a_file}: is a file; name a folder"),
        (["robot-check", "--config", "configs/robot/so101.yaml", "--json", str(tmp_path)],
         f"--json {tmp_path}: is a folder; name a file"),
    ]


def test_output_paths_are_checked_before_the_work(small_store, a_file, tmp_path, capsys):
    for argv, expected in output_cases(small_store, a_file, tmp_path):
        err = refused(capsys, argv)
        assert expected in err, (argv, err)
    assert a_file.read_text() == "not a folder\n"


@pytest.mark.parametrize("value", ["nan", "-1", "inf"])
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
