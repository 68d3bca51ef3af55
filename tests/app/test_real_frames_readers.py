"""Readers of the store respect the real-image marks: `view` logs only rendered images, `store info` counts them."""

from __future__ import annotations

import json

import numpy as np

from app.cli import main
from recordings.episode import Episode, EpisodeMeta
from recordings.store import EpisodeStore


def _store(path):
    n = 6
    real = np.array([True, False, False, False, False, True])
    images = np.zeros((n, 8, 8, 3), np.uint8)
    images[real] = 200
    with EpisodeStore.create(path, fps=10, durable=False) as store:
        store.append(
            Episode(
                meta=EpisodeMeta(task="pick", source="sim"),
                images={"front": images, "wrist": np.full((n, 8, 8, 3), 9, np.uint8)},
                state=np.zeros((n, 2), np.float32),
                action=np.zeros((n, 1), np.float32),
                timestamp=np.arange(n) / 10.0,
                real={"front": real},
            )
        )
    return path


def test_view_logs_only_rendered_images(tmp_path, monkeypatch):
    import rerun as rr

    from app import rerun_log

    logged = []
    monkeypatch.setattr(rerun_log.rr, "log", lambda path, *a, **k: logged.append(path))
    recording = rr.RecordingStream("test")
    frames = rerun_log.log_episode(recording, EpisodeStore.open(_store(tmp_path / "s")), 0)
    assert frames == 6
    assert logged.count("camera/front") == 2 and logged.count("camera/wrist") == 6


def test_store_info_counts_real_frames(tmp_path, capsys):
    path = _store(tmp_path / "s")
    assert main(["store", "info", str(path), "--json"]) == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary["real_frames"] == {"front": 2, "wrist": 6} and summary["unmarked_frames"] == 0
    assert main(["store", "info", str(path)]) == 0
    out = capsys.readouterr().out
    assert "real frames" in out and "front 2/6" in out
