"""`lrm-robot score` end to end on the tiny Qwen3-VL and a small store; one-line errors for bad input."""

from __future__ import annotations

import json
import pathlib

import numpy as np
import pytest
import yaml

from app.cli import main
from recordings.episode import Episode, EpisodeMeta
from recordings.store import EpisodeStore
from tests.lrm.test_qwen3vl import frames_like_a_scene
from tests.support.tiny_reward_models import TinyModelPaths

LENGTHS = (9, 23)  # episode 1 spans several 4-frame chunks shared with episode 0


@pytest.fixture
def store_path(tmp_path: pathlib.Path) -> pathlib.Path:
    path = tmp_path / "store"
    with EpisodeStore.create(path, fps=10, chunk_frames=4, durable=False) as store:
        for e, n in enumerate(LENGTHS):
            dense = np.linspace(0.0, 1.0, n).astype(np.float32)
            store.append(
                Episode(
                    meta=EpisodeMeta(task="pick up the red cube", source="sim", oracle_success=True),
                    images={"front": np.stack([frames_like_a_scene(100 * e + t, 48, 64) for t in range(n)])},
                    state=np.zeros((n, 2), np.float32),
                    action=np.zeros((n, 1), np.float32),
                    timestamp=np.arange(n) / 10.0,
                    rewards={"dense_reward": dense, "success": (dense >= 1.0).astype(np.float32)},
                )
            )
    return path


def backend_yaml(tmp_path: pathlib.Path, tiny: TinyModelPaths, **qwen) -> pathlib.Path:
    section = {
        "model": str(tiny.base),
        "adapters": {m: str(p) for m, p in tiny.adapters.items()},
        "mode": "logits",
        "reasoning": False,
        "image_size": [64, 64],
        "max_batch_size": 8,
        **qwen,
    }
    path = tmp_path / "backend.yaml"
    path.write_text(yaml.safe_dump({"type": "qwen3vl", "qwen3vl": section}))
    return path


def test_score_all_modalities_with_the_tiny_lrm(
    tmp_path: pathlib.Path, store_path: pathlib.Path, tiny_qwen3vl: TinyModelPaths, capsys
) -> None:
    out, rrd = tmp_path / "out", tmp_path / "ep1.rrd"
    argv = [
        "score", str(store_path), "--episode", "1", "--backend", str(backend_yaml(tmp_path, tiny_qwen3vl)),
        "--modality", "all", "--every", "5", "--output-dir", str(out), "--rrd", str(rrd),
    ]  # fmt: skip
    assert main(argv) == 0
    store = EpisodeStore.open(store_path)
    episode = store.load_episode(1)
    queries = np.arange(0, LENGTHS[1], 5)
    for name in ("contrastive", "progress", "completion"):
        trace = episode.rewards[name]
        assert np.flatnonzero(~np.isnan(trace)).tolist() == queries.tolist()  # NaN between queries
        low = -1.0 if name == "contrastive" else 0.0
        assert np.all((trace[queries] >= low - 1e-6) & (trace[queries] <= 1.0 + 1e-6))
    assert episode.rewards["contrastive"][0] == 0.0  # nothing to compare with at the first query
    assert "progress" not in store.record(0).rewards  # the neighbour episode is untouched
    np.testing.assert_array_equal(store.load_episode(0).rewards["dense_reward"], np.linspace(0, 1, 9, dtype=np.float32))
    provenance = episode.meta.extra["reward_traces"]["progress"]
    assert provenance["backend"] == "qwen3vl" and provenance["every"] == 5 and provenance["mode"] == "logits"
    png = out / "store_episode1_qwen3vl.png"
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    metrics = json.loads((out / "store_episode1_qwen3vl.json").read_text())
    assert metrics["queries"] == len(queries) and set(metrics["traces"]) == {"contrastive", "progress", "completion"}
    assert rrd.stat().st_size > 0
    assert "progress: 5 queries" in capsys.readouterr().out

    # scoring again with generate mode replaces the trace in place, same query steps
    argv2 = [
        "score", str(store_path), "--episode", "1", "--backend", str(backend_yaml(tmp_path, tiny_qwen3vl)),
        "--modality", "comp", "--every", "5", "--output-dir", str(out), "--set", "qwen3vl.mode=generate",
        "--set", "qwen3vl.max_new_tokens_direct=4",
    ]  # fmt: skip
    assert main(argv2) == 0
    again = EpisodeStore.open(store_path).load_episode(1).rewards["completion"]
    assert set(np.unique(again[queries])) <= {0.0, 1.0}
    assert EpisodeStore.open(store_path).record(1).rewards.count("completion") == 1


def test_score_with_the_oracle_reads_the_recorded_sim_values(tmp_path: pathlib.Path, store_path: pathlib.Path) -> None:
    argv = [
        "score", str(store_path), "--episode", "0", "--backend", "configs/lrm/backends/oracle.yaml",
        "--every", "4", "--output-dir", str(tmp_path / "out"),
    ]  # fmt: skip
    assert main(argv) == 0
    rewards = EpisodeStore.open(store_path).load_episode(0).rewards
    dense = np.linspace(0.0, 1.0, 9, dtype=np.float32)
    np.testing.assert_allclose(rewards["oracle_progress"][[0, 4, 8]], dense[[0, 4, 8]])
    np.testing.assert_array_equal(rewards["oracle_completion"][[0, 4, 8]], [0, 0, 1])
    np.testing.assert_array_equal(rewards["oracle_contrastive"][[0, 4, 8]], [0, 1, 1])


def _error(argv: list[str], capsys) -> str:
    assert main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert "\n" not in err and "Traceback" not in err
    return err


def test_bad_input_is_one_line_exit_2(tmp_path: pathlib.Path, store_path: pathlib.Path, capsys) -> None:
    oracle = "configs/lrm/backends/oracle.yaml"
    base = ["score", str(store_path), "--episode", "0", "--backend", oracle, "--output-dir", str(tmp_path / "o")]
    assert "episode 7 does not exist" in _error(["score", str(store_path), "--episode", "7", "--backend", oracle], capsys)
    assert "--every 0: must be at least 1" in _error([*base, "--every", "0"], capsys)
    assert "unknown modality 'vibes'" in _error([*base, "--modality", "vibes"], capsys)
    assert "camera 'wrist' is not in" in _error([*base, "--camera", "wrist"], capsys)
    assert "must end in .rrd" in _error([*base, "--rrd", "x.txt"], capsys)
    assert "config file not found" in _error([*base[:-4], "--backend", "nope.yaml"], capsys)
    assert "does not exist" in _error(["score", str(tmp_path / "nostore"), "--episode", "0", "--backend", oracle], capsys)
    bad = tmp_path / "bad.yaml"
    bad.write_text("type: qwen3vl\nqwen3vl: {modle: x}\n")
    assert "qwen3vl.modle" in _error([*base[:4], "--backend", str(bad)], capsys)
    roboreward = "configs/lrm/backends/roboreward.yaml"
    err = _error([*base[:4], "--backend", roboreward, "--modality", "cont"], capsys)
    assert "does not answer 'cont'" in err
    with EpisodeStore.open(store_path, mode="a"):  # a recorder is running
        assert "already open for writing by another writer" in _error(base, capsys)
    missing = tmp_path / "missing.yaml"
    missing.write_text(f"type: qwen3vl\nqwen3vl: {{model: {tmp_path / 'no_model'}}}\n")
    assert "cannot build the qwen3vl backend" in _error([*base[:4], "--backend", str(missing)], capsys)


def test_oracle_without_recorded_sim_values(tmp_path: pathlib.Path, capsys) -> None:
    path = tmp_path / "robot_store"
    with EpisodeStore.create(path, durable=False) as store:
        store.append(
            Episode(
                meta=EpisodeMeta(task="t", source="robot"),
                images={"front": np.zeros((3, 8, 8, 3), np.uint8)},
                state=np.zeros((3, 1), np.float32),
                action=np.zeros((3, 1), np.float32),
                timestamp=np.arange(3.0),
            )
        )
    err = _error(["score", str(path), "--episode", "0", "--backend", "configs/lrm/backends/oracle.yaml"], capsys)
    assert "no 'dense_reward' trace" in err


def _store_with_unrendered_frames(path: pathlib.Path, rendered: list[int], n: int = 9) -> pathlib.Path:
    dense = np.linspace(0.0, 1.0, n).astype(np.float32)
    images = np.zeros((n, 48, 64, 3), np.uint8)
    for t in rendered:
        images[t] = frames_like_a_scene(t, 48, 64)
    with EpisodeStore.create(path, fps=10, chunk_frames=4, durable=False) as store:
        store.append(
            Episode(
                meta=EpisodeMeta(task="pick up the red cube", source="sim", oracle_success=True),
                images={"front": images},
                state=np.zeros((n, 2), np.float32),
                action=np.zeros((n, 1), np.float32),
                timestamp=np.arange(n) / 10.0,
                rewards={"dense_reward": dense, "success": (dense >= 1.0).astype(np.float32)},
                real={"front": np.isin(np.arange(n), rendered)},
            )
        )
    return path


def test_score_queries_only_rendered_frames(tmp_path: pathlib.Path) -> None:
    path = _store_with_unrendered_frames(tmp_path / "s", rendered=[0, 1, 8])
    argv = [
        "score", str(path), "--episode", "0", "--backend", "configs/lrm/backends/oracle.yaml",
        "--every", "4", "--output-dir", str(tmp_path / "out"),
    ]  # fmt: skip
    assert main(argv) == 0
    progress = EpisodeStore.open(path).load_episode(0).rewards["oracle_progress"]
    # the schedule is 0, 4, 8; frame 4 is a black placeholder and is not scored
    assert np.flatnonzero(~np.isnan(progress)).tolist() == [0, 8]


def test_score_refuses_an_episode_with_no_rendered_frame(tmp_path: pathlib.Path, capsys) -> None:
    path = _store_with_unrendered_frames(tmp_path / "s", rendered=[])
    argv = [
        "score", str(path), "--episode", "0", "--backend", "configs/lrm/backends/oracle.yaml",
        "--every", "4", "--output-dir", str(tmp_path / "out"),
    ]  # fmt: skip
    assert "no rendered 'front' image" in _error(argv, capsys)


def _lite_checkpoint(tmp_path: pathlib.Path, history: dict) -> pathlib.Path:
    import torch

    from lrm.backends.lite import LiteRewardModel
    from lrm.backends.lite_config import LiteConfig

    torch.manual_seed(0)
    checkpoint = tmp_path / "lite"
    LiteRewardModel(LiteConfig(image_size=(16, 16), cnn_channels=[4, 8], feature_dim=8, hidden_dim=16,
                               tasks=["pick up the red cube"])).save_pretrained(checkpoint)
    (checkpoint / "history.json").write_text(json.dumps(history))
    backend = tmp_path / "lite.yaml"
    backend.write_text(yaml.safe_dump({"type": "lite", "lite": {"checkpoint": str(checkpoint)}}))
    return backend


def test_score_leaves_out_the_heads_a_lite_checkpoint_was_not_trained_for(
    tmp_path: pathlib.Path, store_path: pathlib.Path, caplog
) -> None:
    backend = _lite_checkpoint(tmp_path, {"trained_modalities": ["completion"]})
    out = tmp_path / "out"
    argv = ["score", str(store_path), "--episode", "0", "--backend", str(backend), "--every", "4", "--output-dir", str(out)]
    with caplog.at_level("WARNING"):
        assert main(argv) == 0
    rewards = EpisodeStore.open(store_path).load_episode(0).rewards
    assert "lite_completion" in rewards and "lite_progress" not in rewards and "lite_contrastive" not in rewards
    untrained = [r.getMessage() for r in caplog.records if "never trained" in r.getMessage()]
    assert len(untrained) == 2 and all("not scored" in m and "\n" not in m for m in untrained)
    metrics = json.loads(next(out.glob("*.json")).read_text())
    assert set(metrics["traces"]) == {"lite_completion"}
    # named on purpose, an untrained head is scored, with its one-line warning
    caplog.clear()
    with caplog.at_level("WARNING"):
        assert main([*argv, "--modality", "prog"]) == 0
    assert "lite_progress" in EpisodeStore.open(store_path).load_episode(0).rewards
    assert [r.getMessage() for r in caplog.records if "never trained" in r.getMessage()][0].endswith("as asked")


def test_an_old_lite_checkpoint_says_its_trained_heads_by_its_example_counts(tmp_path: pathlib.Path) -> None:
    from lrm.backends.lite import trained_modalities

    _lite_checkpoint(tmp_path, {"train_examples": {"completion": 30, "progress": 0}})
    assert trained_modalities(tmp_path / "lite") == ("completion",)
    (tmp_path / "lite" / "history.json").unlink()
    assert trained_modalities(tmp_path / "lite") is None


def test_trace_plot_axes_are_the_reward_ranges(tmp_path: pathlib.Path) -> None:
    import matplotlib.pyplot as plt

    from lrm.evaluation import plots

    saved = {}
    real_close = plt.close
    plt.close = lambda fig=None: saved.setdefault("fig", fig)  # keep the figure to look at its axes
    try:
        t = np.arange(5) / 10.0
        plots.plot_traces(tmp_path / "p.png", t, {"completion": np.full(5, 1.0), "contrastive": np.zeros(5)},
                          t, {"completion": np.full(5, 1.0), "contrastive": np.zeros(5)}, "title")
    finally:
        plt.close = real_close
    fig = saved["fig"]
    assert [ax.get_ylim() for ax in fig.axes] == [(0.0, 1.0), (-1.0, 1.0)]
    real_close(fig)
