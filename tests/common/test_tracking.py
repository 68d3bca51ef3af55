"""common.tracking: metrics.jsonl rows, resuming without duplicate steps, TensorBoard events, the names checked."""

from __future__ import annotations

import importlib.util
import json
import math
import sys
import types

import numpy as np
import pytest

from common import tracking
from common.tracking import make_tracker, parse_report_to, read_rows

HAS_TENSORBOARD = importlib.util.find_spec("tensorboard") is not None


def test_jsonl_rows_have_step_wall_time_and_json_safe_values(tmp_path):
    with make_tracker("jsonl", tmp_path, run_name="t") as tracker:
        tracker.log({"loss": np.float32(0.5), "val": float("nan"), "nested": {"a": np.int64(3)}, "tag": "x"}, 1)
        tracker.log({"loss": 0.25}, 2)
    rows = read_rows(tmp_path / "metrics.jsonl")
    assert [r["step"] for r in rows] == [1, 2]
    assert rows[0]["loss"] == 0.5 and rows[0]["val"] is None and rows[0]["nested"] == {"a": 3} and rows[0]["tag"] == "x"
    assert all(isinstance(r["wall_time"], float) and abs(r["wall_time"] - __import__("time").time()) < 60 for r in rows)
    assert not (tmp_path / "tensorboard").exists()


def test_resume_drops_the_steps_logged_again_and_fresh_empties(tmp_path):
    with make_tracker(["jsonl"], tmp_path) as tracker:
        for step in (10, 20, 30):
            tracker.log({"loss": step}, step)
    with make_tracker(["jsonl"], tmp_path, resume_step=20) as tracker:  # the checkpoint was at 20
        tracker.log({"loss": 31}, 30)
    assert [(r["step"], r["loss"]) for r in read_rows(tmp_path / "metrics.jsonl")] == [(10, 10), (20, 20), (30, 31)]
    with make_tracker(["jsonl"], tmp_path) as tracker:  # neither: appended
        tracker.log({"loss": 1}, 40)
    assert len(read_rows(tmp_path / "metrics.jsonl")) == 4
    with make_tracker(["jsonl"], tmp_path, fresh=True) as tracker:
        tracker.log({"loss": 1}, 1)
    assert [r["step"] for r in read_rows(tmp_path / "metrics.jsonl")] == [1]


def test_none_writes_nothing(tmp_path):
    with make_tracker("none", tmp_path / "out") as tracker:
        tracker.log({"loss": 1.0}, 1)
        assert not tracker.enabled
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize(("given", "expected"), [
    (None, ["jsonl"]), ("jsonl", ["jsonl"]), (["jsonl", "tensorboard"], ["jsonl", "tensorboard"]),
    ("jsonl,tensorboard", ["jsonl", "tensorboard"]), (["TensorBoard,jsonl", "jsonl"], ["tensorboard", "jsonl"]),
    ("none", []), ([], []),
])
def test_parse_report_to(given, expected, monkeypatch):
    monkeypatch.setattr(tracking, "_importable", lambda module: True)
    assert parse_report_to(given) == expected


def test_parse_report_to_refuses_in_one_line(monkeypatch):
    with pytest.raises(ValueError, match="unknown reporter 'mlflow'"):
        parse_report_to(["jsonl", "mlflow"])
    with pytest.raises(ValueError, match="cannot be combined"):
        parse_report_to("none,jsonl")
    monkeypatch.setattr(tracking, "_importable", lambda module: module != "wandb")
    with pytest.raises(ValueError, match=r"^wandb is not installed \(pip install wandb\)$"):
        parse_report_to("wandb")


@pytest.mark.skipif(not HAS_TENSORBOARD, reason="tensorboard is not installed")
def test_tensorboard_events_hold_the_scalars(tmp_path):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    with make_tracker(["tensorboard"], tmp_path) as tracker:
        tracker.log({"loss": 0.5, "eval": {"success_rate": 0.25}, "flag": True, "text": "x", "none": None}, 3)
        tracker.log({"loss": 0.4}, 4)
    events = list((tmp_path / "tensorboard").glob("events.out.tfevents.*"))
    assert events and not (tmp_path / "metrics.jsonl").exists()
    acc = EventAccumulator(str(tmp_path / "tensorboard"))
    acc.Reload()
    assert set(acc.Tags()["scalars"]) == {"loss", "eval/success_rate", "flag"}
    assert [(e.step, round(e.value, 3)) for e in acc.Scalars("loss")] == [(3, 0.5), (4, 0.4)]


def test_wandb_gets_the_numbers_and_keeps_its_run_id(tmp_path, monkeypatch):
    """A stand-in `wandb` module: the calls the tracker makes, and the resumed run reusing the id."""
    calls: list[tuple] = []

    class Run:
        id = "abc123"

        def log(self, data, step):
            calls.append(("log", data, step))

        def finish(self):
            calls.append(("finish",))

    fake = types.SimpleNamespace(init=lambda **kw: calls.append(("init", kw)) or Run())
    monkeypatch.setitem(sys.modules, "wandb", fake)
    monkeypatch.setattr(tracking, "_importable", lambda module: True)
    with make_tracker("wandb", tmp_path, run_name="run", config={"lr": 1e-3}) as tracker:
        tracker.log({"loss": 0.5, "note": "x"}, 7)
    init = calls[0][1]
    assert init["name"] == "run" and init["config"] == {"lr": 1e-3} and init["id"] is None
    assert calls[1:] == [("log", {"loss": 0.5}, 7), ("finish",)]
    assert (tmp_path / "wandb-run-id").read_text().strip() == "abc123"
    calls.clear()
    make_tracker("wandb", tmp_path, resume_step=7).close()
    assert calls[0][1]["id"] == "abc123" and calls[0][1]["resume"] == "allow"


def test_a_torn_last_line_is_skipped_and_not_appended_to(tmp_path):
    (tmp_path / "metrics.jsonl").write_text(json.dumps({"step": 1, "loss": 1.0}) + "\n" + '{"step": 2, "lo')
    assert read_rows(tmp_path / "metrics.jsonl") == [{"step": 1, "loss": 1.0}]
    with make_tracker("jsonl", tmp_path) as tracker:  # appending: the torn line goes first
        tracker.log({"loss": math.pi}, 2)
    assert [r["step"] for r in read_rows(tmp_path / "metrics.jsonl")] == [1, 2]
