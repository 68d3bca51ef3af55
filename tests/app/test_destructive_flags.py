"""`--fresh` (improve, ppo, train-policy, train-lrm, demos, operate, store export) deletes only what
lrm-robot made: a folder holding the marker file (common.outputs). Anything else is refused with one
line naming the folder and the marker, and a store is never exported into, over or around itself.
"""

from __future__ import annotations

import json
import pathlib

import pytest

from app.cli import main
from app.improve.loop import reset_run
from app.improve.state import RunState
from common.outputs import MARKER
from recordings.store import EpisodeStore
from tests.support.demo_store import demo_store

ROOT = pathlib.Path(__file__).resolve().parents[2]


def refused(capsys, argv: list[str]) -> str:
    capsys.readouterr()
    assert main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert "\n" not in err, err
    return err


@pytest.fixture
def someones_folder(tmp_path) -> pathlib.Path:
    folder = tmp_path / "results"
    folder.mkdir()
    (folder / "thesis.tex").write_text("years of work\n")
    return folder


@pytest.fixture
def store(tmp_path) -> pathlib.Path:
    return demo_store(tmp_path / "store")


def test_improve_fresh_refuses_a_folder_it_did_not_make(someones_folder, capsys):
    err = refused(capsys, ["improve", "--config", str(ROOT / "configs/improve/pickcube_cpu.yaml"),
                           "--output-dir", str(someones_folder), "--fresh"])
    assert err == (f"lrm-robot improve: error: --fresh: output_dir {someones_folder}: has no {MARKER}, so "
                   "lrm-robot did not make it; refusing to delete it (delete it yourself or choose another folder)")
    assert (someones_folder / "thesis.tex").read_text() == "years of work\n"


def test_a_run_folder_is_marked_when_made_and_fresh_deletes_it(tmp_path):
    run = tmp_path / "run"
    RunState.load_or_create(run, "fingerprint")
    assert (run / MARKER).is_file() and (run / "state.json").is_file()
    reset_run(run)
    assert not run.exists()


def test_export_refuses_the_store_itself_and_what_holds_it(store, capsys):
    for out, where in ((store, "is"), (store.parent, "holds"), (store / "meta" / "dataset", "lies inside")):
        err = refused(capsys, ["store", "export", str(store), "--output-dir", str(out), "--fresh"])
        assert f"{out} {where} the store being exported ({store.resolve()})" in err, err
    assert EpisodeStore.open(store).num_episodes == 2


def test_export_fresh_refuses_a_folder_it_did_not_export(store, someones_folder, capsys):
    err = refused(capsys, ["store", "export", str(store), "--output-dir", str(someones_folder), "--fresh"])
    assert err.endswith(f"{someones_folder} has no {MARKER}, so lrm-robot did not export it; refusing to replace it")
    assert (someones_folder / "thesis.tex").exists()


def test_export_fresh_replaces_an_earlier_export(store, tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    out = tmp_path / "dataset"
    argv = ["store", "export", str(store), "--output-dir", str(out), "--fps", "20"]
    assert main(argv) == 0
    assert json.loads((out / MARKER).read_text())["kind"] == "lerobot-export"
    assert "is not empty" in refused(capsys, argv)
    assert main([*argv, "--fresh"]) == 0
    assert (out / MARKER).is_file() and (out / "meta" / "lrm_robot_export.json").is_file()


def test_ppo_fresh_refuses_a_folder_it_did_not_make(tmp_path, capsys):
    out = tmp_path / "ppo"
    (out / "checkpoints" / "last").mkdir(parents=True)
    (out / "checkpoints" / "last" / "notes.txt").write_text("not ours\n")
    err = refused(capsys, ["ppo", "--config", str(ROOT / "configs/ppo/pickcube_oracle.yaml"), "--output-dir",
                           str(out), "--fresh"])
    assert err.startswith(f"lrm-robot ppo: error: --fresh: output_dir {out}: has no {MARKER}") and "refusing" in err
    assert (out / "checkpoints" / "last" / "notes.txt").exists()
