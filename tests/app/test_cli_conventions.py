"""The conventions every `lrm-robot` command shares (issue 17, item 6), through the real CLI entry.

One spelling for the output folder (`--output-dir`, earlier spellings hidden
and warned about), one resume convention (continue by default, `--fresh`
starts over and deletes only what lrm-robot made), `--version`, an example at
the end of every `--help`, `store ls`, and errors of `--set` naming the
override rather than the config file.
"""

from __future__ import annotations

import argparse
import hashlib
import importlib.metadata
import json
import os
import pathlib
import shlex
import subprocess
import sys
from dataclasses import dataclass, field

import numpy as np
import pytest
import yaml

from app.cli import build_parser, main
from common.outputs import MARKER, mark_output_dir
from recordings.store import EpisodeStore
from tests.policies.conftest import synthetic_episode
from tests.support.cli import run

ROOT = pathlib.Path(__file__).resolve().parents[2]
LITE = str(ROOT / "configs/lrm/train/lite_pickcube.yaml")


@pytest.fixture(autouse=True)
def _repo_root(monkeypatch):
    monkeypatch.chdir(ROOT)



def refused(capsys, argv: list[str]) -> str:
    """The command must end with exit code 2 and exactly one error line on stderr."""
    code, _, err = run(capsys, argv)
    lines = err.strip().splitlines()
    assert code == 2, (argv, code, err)
    assert len(lines) == 1 and lines[0].startswith("lrm-robot"), err
    return lines[0]


def parsers(parser: argparse.ArgumentParser | None = None, words: tuple[str, ...] = ()):
    """(words, parser) for the top-level parser and every command and subcommand below it."""
    parser = parser or build_parser()
    yield words, parser
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, sub in action.choices.items():
                yield from parsers(sub, (*words, name))


def tree_digest(path: pathlib.Path) -> dict[str, str]:
    return {str(p.relative_to(path)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(path.rglob("*")) if p.is_file()}


@pytest.fixture
def store(tmp_path) -> pathlib.Path:
    """Demos and judged rollouts of two rounds, one aborted, one with only some frames rendered."""
    rng = np.random.default_rng(0)
    path = tmp_path / "store"
    with EpisodeStore.open(path, mode="a", durable=False) as writer:
        for meta in (dict(source="demo", oracle_success=True, env_id="PickCube-v1", seed=0),
                     dict(source="demo", oracle_success=True, env_id="PickCube-v1", seed=1),
                     dict(round=1, lrm_verdict=True, lrm_score=0.9, oracle_success=True),
                     dict(round=1, lrm_verdict=False, lrm_score=0.2, operator_verdict=True, oracle_success=False),
                     dict(round=2, lrm_verdict=False, oracle_success=False, aborted=True)):
            episode = synthetic_episode(rng, 6, **meta)
            if meta.get("round") == 2:
                episode.real = {"base_camera": np.arange(6) % 3 == 0}  # frames 0 and 3 rendered
            writer.append(episode)
    return path


# --version and --help


def test_version_prints_the_package_version():
    exe = pathlib.Path(sys.executable).with_name("lrm-robot")
    result = subprocess.run([str(exe), "--version"], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == f"lrm-robot {importlib.metadata.version('lrm-robot')}"


def test_every_help_ends_with_an_example_that_parses():
    seen = []
    for words, parser in parsers():
        text = parser.format_help().rstrip()
        head, _, example = text.rpartition("\nExample:\n")
        assert head and example, f"lrm-robot {' '.join(words)} --help has no Example: section at its end"
        for line in example.splitlines():
            argv = shlex.split(line)
            assert argv[0] == "lrm-robot" and argv[1:1 + len(words)] == list(words), line
            build_parser().parse_args(argv[1:])  # a real invocation: it parses (SystemExit otherwise)
        seen.append(" ".join(words))
    assert {"", "demos", "improve", "store", "store ls", "store export", "train-lrm"} <= set(seen)


# --output-dir, one spelling

WRITERS = [["demos"], ["improve"], ["operate"], ["ppo"], ["train-policy"], ["train-lrm"], ["eval-policy"],
           ["eval-reward"], ["score"], ["store", "export"]]


@pytest.mark.parametrize("words", WRITERS, ids=" ".join)
def test_every_command_that_writes_a_folder_takes_output_dir(words):
    parser = dict(parsers())[tuple(words)]
    assert "--output-dir" in parser._option_string_actions
    shown = parser.format_help()
    assert "--output-dir" in shown
    for hidden in ("--out ", "--output ", "--restart", "--no-resume", "--overwrite", "--resume"):
        assert hidden not in shown, (words, hidden)


OLD_SPELLINGS = [
    (["demos", "--out", "X"], "output_dir", "X", "--out is deprecated; use --output-dir"),
    (["score", "S", "--episode", "0", "--backend", "B", "--out", "X"], "output_dir", "X",
     "--out is deprecated; use --output-dir"),
    (["store", "export", "S", "--out", "X"], "output_dir", "X", "--out is deprecated; use --output-dir"),
    (["eval-policy", "--output", "r.json"], "output", "r.json", "--output is deprecated; use --output-dir DIR"),
    (["improve", "--restart"], "fresh", True, "--restart is deprecated; use --fresh"),
    (["ppo", "--config", "C", "--no-resume"], "fresh", True, "--no-resume is deprecated; use --fresh"),
    (["store", "export", "S", "--output-dir", "X", "--overwrite"], "fresh", True,
     "--overwrite is deprecated; use --fresh"),
    (["train-policy", "--config", "C", "--resume"], "fresh", False,
     "--resume is deprecated; continuing is the default (--fresh starts over)"),
]


@pytest.mark.parametrize(("argv", "dest", "value", "warning"), OLD_SPELLINGS, ids=lambda v: str(v)[:40])
def test_an_old_spelling_still_works_with_one_warning_line(capsys, argv, dest, value, warning):
    args = build_parser().parse_args(argv)
    assert getattr(args, dest) == value
    assert capsys.readouterr().err == f"lrm-robot: warning: {warning}" + (
        " (writes DIR/report.json)\n" if dest == "output" else "\n")


def test_old_and_new_spelling_together_is_one_line_exit_2(capsys, tmp_path):
    err = refused(capsys, ["demos", "--output-dir", str(tmp_path / "a"), "--out", str(tmp_path / "b")])
    assert err.endswith("argument --out: not allowed with argument --output-dir (see lrm-robot demos --help)")
    err = refused(capsys, ["store", "export", str(tmp_path)])
    assert "the following arguments are required: --output-dir" in err


def test_a_config_key_renamed_still_works_with_one_warning_line(tmp_path):
    from app.commands.demos import DemosConfig
    from common.config import Override, load_config

    path = tmp_path / "demos.yaml"
    path.write_text("num_episodes: 3\nout: somewhere/store\n")
    config = load_config(path, DemosConfig)
    assert config.output_dir == pathlib.Path("somewhere/store")
    config = load_config(None, DemosConfig, [Override("out=elsewhere", "--set out=elsewhere")])
    assert config.output_dir == pathlib.Path("elsewhere")


def test_the_old_config_key_is_warned_about_naming_where_it_came_from(tmp_path, capsys):
    path = tmp_path / "demos.yaml"
    path.write_text("out: somewhere/store\nnum_episodes: 0\n")
    code, _, err = run(capsys, ["demos", "--config", str(path)])
    assert code == 2
    assert err.splitlines() == [f"lrm-robot: warning: {path}: key 'out' is deprecated; use 'output_dir'",
                                f"lrm-robot demos: error: {path}: key 'num_episodes': must be at least 1, got 0"]
    code, _, err = run(capsys, ["demos", "--set", "out=x", "-n", "0"])
    assert err.splitlines()[0] == "lrm-robot: warning: --set out=x: key 'out' is deprecated; use 'output_dir'"


# one resume convention


@pytest.mark.parametrize("words", [["demos"], ["improve"], ["operate"], ["ppo"], ["train-policy"], ["train-lrm"],
                                   ["store", "export"]], ids=" ".join)
def test_every_command_that_builds_a_folder_takes_fresh(words):
    parser = dict(parsers())[tuple(words)]
    action = parser._option_string_actions["--fresh"]
    assert MARKER in action.help


def lite_config(tmp_path: pathlib.Path, store: pathlib.Path) -> pathlib.Path:
    config = tmp_path / "lite.yaml"
    config.write_text(yaml.safe_dump({
        "type": "lite", "store": str(store), "output_dir": str(tmp_path / "lite"),
        "model": {"image_size": [16, 16], "cnn_channels": [8, 8], "feature_dim": 16, "hidden_dim": 16},
        "train": {"steps": 4, "batch_size": 8, "log_every": 2}}))
    return config


def test_train_lrm_on_a_finished_folder_says_so_and_does_nothing(store, tmp_path, capsys):
    config = lite_config(tmp_path, store)
    code, out, _ = run(capsys, ["train-lrm", "--config", str(config)])
    assert code == 0 and "lite model in" in out
    before = tree_digest(tmp_path / "lite")
    code, out, _ = run(capsys, ["train-lrm", "--config", str(config)])
    assert code == 0
    assert out.strip() == (f"{tmp_path / 'lite'} already holds a finished train-lrm run (report.json, backend.yaml); "
                           "nothing to do (--fresh trains again)")
    assert tree_digest(tmp_path / "lite") == before
    code, out, _ = run(capsys, ["train-lrm", "--config", str(config), "--fresh"])
    assert code == 0 and "lite model in" in out and (tmp_path / "lite" / MARKER).is_file()


def test_fresh_deletes_only_what_lrm_robot_made(store, tmp_path, capsys):
    theirs = tmp_path / "theirs"
    theirs.mkdir()
    for name in ("report.json", "backend.yaml", "thesis.tex"):
        (theirs / name).write_text("mine\n")
    err = refused(capsys, ["train-lrm", "--config", LITE, "--store", str(store), "--output-dir", str(theirs),
                           "--fresh"])
    assert err == (f"lrm-robot train-lrm: error: --fresh: output_dir {theirs}: has no {MARKER}, so lrm-robot did "
                   "not make it; refusing to delete it (delete it yourself or choose another folder)")
    err = refused(capsys, ["demos", "--env", "PickCube-v1", "-n", "1", "--output-dir", str(store), "--fresh"])
    assert f"--fresh: output_dir {store}: has no {MARKER}" in err
    assert (theirs / "thesis.tex").exists() and EpisodeStore.open(store).num_episodes == 5


def test_train_policy_continues_by_default_and_fresh_starts_over(store, tmp_path, capsys):
    config = tmp_path / "bc.yaml"
    config.write_text(yaml.safe_dump({
        "store": str(store), "output_dir": str(tmp_path / "run"), "policy": {"hidden_dims": [16]},
        "steps": 6, "batch_size": 8, "log_every": 3, "val_every": 3, "checkpoint_every": 3, "val_fraction": 0.0,
        "progress": False}))
    argv = ["train-policy", "--config", str(config)]
    code, out, _ = run(capsys, argv)
    assert code == 0 and "trained 6 steps (to 6/6)" in out, out
    code, out, _ = run(capsys, [*argv, "--steps", "9"])
    assert code == 0 and "trained 3 steps (to 9/9)" in out, out
    code, out, _ = run(capsys, [*argv, "--steps", "9", "--fresh"])
    assert code == 0 and "trained 9 steps (to 9/9)" in out, out


def test_demos_into_a_store_that_holds_them_already_records_nothing(store, capsys):
    before = tree_digest(store)
    code, out, _ = run(capsys, ["demos", "--env", "PickCube-v1", "-n", "2", "--output-dir", str(store)])
    assert code == 0
    assert out.strip() == (f"{store} already holds 2 successful demonstrations of PickCube-v1 (asked for 2); "
                           "nothing to record (--fresh starts over)")
    assert tree_digest(store) == before


def test_recorded_demos_counts_this_env_and_continues_after_its_last_seed(store):
    from app.commands.demos import recorded_demos

    assert recorded_demos(store, "PickCube-v1") == (2, 2)
    assert recorded_demos(store, "PushCube-v1") == (0, 0)
    assert recorded_demos(store.parent / "new", "PickCube-v1") == (0, 0)


def test_a_marked_store_stays_a_store_and_fresh_deletes_it(tmp_path, capsys):
    from app.commands._conventions import start_fresh

    path = tmp_path / "demos"
    with EpisodeStore.open(path, mode="a", durable=False) as writer:
        writer.append(synthetic_episode(np.random.default_rng(1), 4, source="demo"))
    mark_output_dir(path, "demos")
    with EpisodeStore.open(path, mode="a", durable=False) as writer:  # the marker is no part of the store
        writer.append(synthetic_episode(np.random.default_rng(2), 4, source="demo"))
    assert EpisodeStore.open(path).verify(record=False).ok
    assert main(["store", "ls", str(path), "--json"]) == 0
    start_fresh(path)
    assert not path.exists()


@pytest.mark.sim
@pytest.mark.filterwarnings("ignore::DeprecationWarning")
def test_demos_run_again_records_only_the_missing_ones(tmp_path, capsys):
    out = tmp_path / "demos"
    argv = ["demos", "--env", "PickCube-v1", "--output-dir", str(out), "--camera-size", "32x32"]
    assert run(capsys, [*argv, "-n", "1"])[0] == 0
    assert (out / MARKER).is_file()
    code, printed, _ = run(capsys, [*argv, "-n", "2"])
    assert code == 0 and f"{out} holds 1 successful demonstrations of PickCube-v1; recording 1 more" in printed
    seeds = [r.meta.seed for r in EpisodeStore.open(out).episodes()]
    assert len(seeds) == 2 and seeds[1] > seeds[0]
    assert run(capsys, [*argv, "-n", "2", "--fresh"])[0] == 0
    assert len(EpisodeStore.open(out).episodes()) == 2


# store ls


def test_store_ls_one_row_per_episode(store, capsys):
    code, out, _ = run(capsys, ["store", "ls", str(store), "--json"])
    assert code == 0
    listing = json.loads(out)
    rows = listing["episodes"]
    assert [(r["index"], r["source"], r["round"], r["length"]) for r in rows] == [
        (0, "demo", 0, 6), (1, "demo", 0, 6), (2, "sim", 1, 6), (3, "sim", 1, 6), (4, "sim", 2, 6)]
    assert rows[3]["verdicts"] == {"operator": True, "lrm": False, "lrm_score": 0.2, "oracle": False,
                                   "accepted": True}
    assert rows[4]["aborted"] is True and rows[4]["real_frames"] == {"base_camera": 2}
    assert rows[0]["real_frames"] == {"base_camera": 6} and listing["damaged"] == []

    code, out, _ = run(capsys, ["store", "ls", str(store)])
    assert code == 0
    lines = out.splitlines()
    assert lines[-1] == "5 episodes"
    row = next(line for line in lines if line.split()[:1] == ["4"])
    assert row.split() == ["4", "sim", "2", "6", "-", "no", "no", "2/6", "aborted"]
    assert next(line for line in lines if line.split()[:1] == ["2"]).split()[4:7] == ["-", "yes", "(0.90)"]


@pytest.mark.parametrize(("filters", "expected"), [
    (["--source", "demo"], [0, 1]),
    (["--round", "1"], [2, 3]),
    (["--round", "1", "--round", "2"], [2, 3, 4]),
    (["--accepted", "yes"], [2, 3]),
    (["--accepted", "none"], [0, 1]),
    (["--oracle-success", "no", "--source", "sim"], [3, 4]),
    (["--task", "push the cube"], []),
])
def test_store_ls_filters(store, capsys, filters, expected):
    code, out, _ = run(capsys, ["store", "ls", str(store), "--json", *filters])
    assert code == 0 and [r["index"] for r in json.loads(out)["episodes"]] == expected


def test_store_ls_reads_only(store, capsys):
    before = tree_digest(store)
    for path in [store, *store.rglob("*")]:
        os.chmod(path, 0o555 if path.is_dir() else 0o444)
    try:
        code, out, _ = run(capsys, ["store", "ls", str(store)])
    finally:
        for path in [store, *store.rglob("*")]:
            os.chmod(path, 0o755 if path.is_dir() else 0o644)
    assert code == 0 and out.splitlines()[-1] == "5 episodes"
    assert tree_digest(store) == before


@pytest.mark.parametrize(("argv", "expected"), [
    (["store", "ls", "{tmp}/missing"], "does not exist"),
    (["store", "ls", "{tmp}"], "is not an lrm-robot episode store"),
    (["store", "ls", "{store}", "--source", "moon"], "argument --source: invalid choice: 'moon'"),
    (["store", "ls", "{store}", "--round", "one"], "argument --round: invalid int value: 'one'"),
])
def test_store_ls_bad_input_is_one_line(store, tmp_path, capsys, argv, expected):
    err = refused(capsys, [a.format(tmp=tmp_path, store=store) for a in argv])
    assert expected in err


# an error caused by --set names the override


@pytest.mark.parametrize(("argv", "expected"), [
    (["train-lrm", "--config", LITE, "--set", "train.lr=abc"],
     "error: --set train.lr=abc: key 'train.lr': expected float, got str 'abc'"),
    (["train-lrm", "--config", LITE, "--set", "train.lr=0"], "error: --set train.lr=0: key 'train.lr': must be more than 0"),
    (["train-lrm", "--config", LITE, "--set", "trian.lr=0.1"], "error: --set trian.lr=0.1: unknown key 'trian'"),
    (["train-lrm", "--config", LITE, "--set", "train"], "error: --set train: is not of the form key=value"),
    (["train-lrm", "--config", LITE, "--set", "train={lr: abc}"],
     "error: --set train={lr: abc}: key 'train.lr': expected float, got str 'abc'"),
    (["improve", "--rounds", "-1"], "error: --rounds -1: key 'rounds': must be at least 0, got -1"),
    (["demos", "--set", "settle_steps=-1"], "error: --set settle_steps=-1: key 'settle_steps': must be at least 0"),
])
def test_an_error_of_an_override_names_the_override_not_the_file(capsys, argv, expected):
    err = refused(capsys, argv)
    assert expected in err and LITE not in err, err


def test_an_error_in_the_file_still_names_the_file(tmp_path, capsys):
    config = tmp_path / "lite.yaml"
    data = yaml.safe_load(pathlib.Path(LITE).read_text())
    data["train"]["lr"] = "abc"
    config.write_text(yaml.safe_dump(data))
    err = refused(capsys, ["train-lrm", "--config", str(config), "--set", "train.steps=3"])
    assert err == f"lrm-robot train-lrm: error: {config}: key 'train.lr': expected float, got str 'abc'"


@dataclass
class Train:
    lr: float = 0.1
    warmup: int = 0

    def __post_init__(self) -> None:
        if self.lr > 0.5:
            raise ValueError(f"lr must be at most 0.5 for this optimiser, got {self.lr}")


@dataclass
class Run:
    train: Train = field(default_factory=Train)


def test_a_dataclass_check_names_the_override_it_is_about(tmp_path):
    """A config class's own check (its __post_init__) blames the override whose key its message names."""
    from common.config import ConfigError, Override, load_config

    path = tmp_path / "run.yaml"
    path.write_text("train: {lr: 0.9}\n")
    with pytest.raises(ConfigError) as info:
        load_config(path, Run, [Override("train.warmup=3", "--set train.warmup=3")])
    assert str(info.value).startswith(f"{path}: key 'train': lr must be")  # the file's lr, not the override
    path.write_text("train: {lr: 0.1}\n")
    with pytest.raises(ConfigError) as info:
        load_config(path, Run, [Override("train.lr=0.9", "--set train.lr=0.9")])
    assert str(info.value) == "--set train.lr=0.9: key 'train': lr must be at most 0.5 for this optimiser, got 0.9"
