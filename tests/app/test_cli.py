"""The `lrm-robot` command line, run for real: help, store info, view, and one-line errors."""

from __future__ import annotations

import json
import pathlib
import subprocess
import sys

import numpy as np
import pytest

from app.cli import build_parser, main
from recordings.episode import Episode, EpisodeMeta
from recordings.store import EpisodeStore

SUBCOMMANDS = [["demos"], ["store"], ["store", "info"], ["store", "export"], ["view"]]


def lrm_robot(*args: str) -> subprocess.CompletedProcess:
    """The installed console script, as a user runs it."""
    exe = pathlib.Path(sys.executable).with_name("lrm-robot")
    return subprocess.run([str(exe), *args], capture_output=True, text=True, timeout=300)


def make_episode(rng: np.random.Generator, length: int, task: str, **meta) -> Episode:
    return Episode(
        meta=EpisodeMeta(task=task, source=meta.pop("source", "sim"), **meta),
        images={"base_camera": rng.integers(0, 256, (length, 24, 32, 3), dtype=np.uint8)},
        state=rng.standard_normal((length, 5)).astype(np.float32),
        action=rng.standard_normal((length, 3)).astype(np.float32),
        timestamp=np.arange(length, dtype=np.float64) / 20,
        rewards={"progress": np.where(np.arange(length) % 2 == 0, np.linspace(0, 1, length), np.nan).astype(np.float32)},
    )


@pytest.fixture
def small_store(tmp_path) -> tuple[pathlib.Path, list[Episode]]:
    rng = np.random.default_rng(0)
    episodes = [
        make_episode(rng, 7, "pick up the cube", source="demo", oracle_success=True),
        make_episode(rng, 5, "pick up the cube", oracle_success=False, lrm_verdict=True),
        make_episode(rng, 6, "push the cube", oracle_success=True, lrm_verdict=False, operator_verdict=True),
    ]
    path = tmp_path / "store"
    store = EpisodeStore.open(path, mode="a")
    for episode in episodes:
        store.append(episode)
    store.close()
    return path, episodes


@pytest.mark.parametrize("words", SUBCOMMANDS, ids=" ".join)
def test_every_subcommand_has_help(words, capsys):
    with pytest.raises(SystemExit) as exit_info:
        main([*words, "--help"])
    assert exit_info.value.code == 0
    assert "usage: lrm-robot" in capsys.readouterr().out


def test_console_script_is_installed():
    result = lrm_robot("--help")
    assert result.returncode == 0, result.stderr
    for command in build_parser()._subparsers._group_actions[0].choices:
        assert command in result.stdout


def test_store_info_counts(small_store, capsys):
    path, episodes = small_store
    assert main(["store", "info", str(path), "--json"]) == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary["episodes"] == 3
    assert summary["frames"] == sum(len(e) for e in episodes)
    assert summary["cameras"] == {"base_camera": [24, 32]}
    assert summary["by_source"] == {"demo": 1, "sim": 2}
    assert summary["oracle_success"] == 2 and summary["oracle_failure"] == 1
    assert summary["lrm_accepted"] == 1 and summary["operator_accepted"] == 1
    assert summary["size_bytes"] > 0


def test_store_info_table(small_store):
    path, _ = small_store
    result = lrm_robot("store", "info", str(path))
    assert result.returncode == 0, result.stderr
    for expected in ("episodes", "frames", "base_camera 24x32", "2 succeeded, 1 failed", "size on disk"):
        assert expected in result.stdout


def test_view_writes_rrd_with_frames_and_traces(small_store, tmp_path):
    from rerun.experimental import RrdReader

    path, episodes = small_store
    rrd = tmp_path / "episode-0.rrd"
    result = lrm_robot("view", str(path), "--episode", "0", "--save", str(rrd))
    assert result.returncode == 0, result.stderr
    episode = episodes[0]
    rows: dict[str, int] = {}
    images = {}
    for chunk in RrdReader(rrd).store().stream().to_chunks():
        rows[chunk.entity_path] = rows.get(chunk.entity_path, 0) + chunk.num_rows
        if chunk.entity_path == "/camera/base_camera":
            batch = chunk.to_record_batch()
            for frame, buffer in zip(batch.column("frame").to_pylist(), batch.column("Image:buffer").to_pylist()):
                images[frame] = np.asarray(buffer[0], dtype=np.uint8)
    assert rows["/camera/base_camera"] == len(episode)
    assert rows["/state/4"] == len(episode) and rows["/action/2"] == len(episode)
    assert rows["/reward/progress"] == 4  # only the queried steps; NaN steps are gaps
    for t in range(len(episode)):
        np.testing.assert_array_equal(images[t], episode.images["base_camera"][t].ravel())


def test_store_export_selects_and_lerobot_reads_back(small_store, tmp_path, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    path, episodes = small_store
    out = tmp_path / "dataset"
    result = lrm_robot("store", "export", str(path), "--output-dir", str(out), "--oracle-success", "yes", "--repo-id", "t/x", "--fps", "20")
    assert result.returncode == 0, result.stderr
    assert "exported 2 episodes (13 frames)" in result.stdout

    from lerobot.datasets.lerobot_dataset import LeRobotDataset

    dataset = LeRobotDataset("t/x", root=out)
    assert dataset.num_episodes == 2 and len(dataset) == 13
    expected = [episodes[0].frame(t) for t in range(7)] + [episodes[2].frame(t) for t in range(6)]
    for item, frame in zip(dataset, expected):
        image = (item["observation.images.base_camera"].permute(1, 2, 0).numpy() * 255).round().astype(np.uint8)
        np.testing.assert_array_equal(image, frame.images["base_camera"])
        np.testing.assert_array_equal(item["action"].numpy(), frame.action)


ERRORS = [
    (["store", "info", "{missing}"], "store info: error:"),
    (["store", "info", "{not_a_store}"], "is not an lrm-robot episode store"),
    (["view", "{store}", "--episode", "9", "--save", "{tmp}/x.rrd"], "episode 9 does not exist"),
    (["store", "export", "{store}", "--output-dir", "{tmp}/ds", "--round", "5"], "no episode of"),
    (["view", "{store}", "--episode", "0", "--save", "{tmp}/x.png"], "must end in .rrd"),
    (["demos", "--config", "{tmp}/nope.yaml"], "nope.yaml: config file not found"),
    (["demos", "--config", "{bad_config}"], "unknown key 'num_episode' (did you mean 'num_episodes'?)"),
    (["demos", "-n", "0", "--output-dir", "{tmp}/d"], "key 'num_episodes': must be at least 1, got 0"),
    (["demos", "--camera-size", "wide", "--output-dir", "{tmp}/d"], "argument --camera-size: 'wide' is not WIDTHxHEIGHT"),
    (["demos", "--env", "FlyToMoon-v1", "--output-dir", "{tmp}/d"], "FlyToMoon-v1"),
    (["demos", "--set", "env.state_mode=everything", "--output-dir", "{tmp}/d"], "key 'env.state_mode'"),
]


@pytest.mark.parametrize(("argv", "expected"), ERRORS, ids=[" ".join(a[:2]) + f" [{i}]" for i, (a, _) in enumerate(ERRORS)])
def test_bad_input_is_one_line_and_exit_2(small_store, tmp_path, argv, expected):
    path, _ = small_store
    not_a_store = tmp_path / "plain"
    not_a_store.mkdir()
    (not_a_store / "notes.txt").write_text("hello")
    bad_config = tmp_path / "bad.yaml"
    bad_config.write_text("env: {env_id: PickCube-v1}\nnum_episode: 3\n")
    values = dict(missing=tmp_path / "missing", not_a_store=not_a_store, store=path, tmp=tmp_path, bad_config=bad_config)
    result = lrm_robot(*[a.format(**values) for a in argv])
    assert result.returncode == 2, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert "Traceback" not in result.stderr
    assert expected in lines[0]


@pytest.mark.sim
def test_demos_from_the_shipped_config_records_into_a_store(tmp_path):
    """The shipped config, one episode, small cameras: the command a user runs, end to end."""
    config = pathlib.Path(__file__).parents[2] / "configs" / "demos_pickcube.yaml"
    out = tmp_path / "demos"
    result = lrm_robot(
        "demos", "--config", str(config), "-n", "1", "--output-dir", str(out), "--camera-size", "64x48"
    )
    assert result.returncode == 0, result.stderr
    assert "1/1 successful demonstrations" in result.stdout
    store = EpisodeStore.open(out, mode="r")
    (record,) = store.episodes()
    assert record.meta.source == "demo" and record.meta.oracle_success is True
    assert record.meta.env_id == "PickCube-v1" and record.meta.task
    assert store.cameras == {"base_camera": (48, 64)}
    assert record.length > 10
