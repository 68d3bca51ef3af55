"""Experiment tracking through the CLI (issue 17, item 4): `--report-to` on every training command, metrics.jsonl
rows, TensorBoard events, a missing wandb refused before any work, improve's per-round rows, headless bars."""

from __future__ import annotations

import importlib.util
import io
import json
import pathlib

import numpy as np
import pytest
import yaml

from app.cli import build_parser
from common import tracking
from common.tracking import read_rows
from recordings.store import EpisodeStore
from tests.policies.conftest import synthetic_episode
from tests.support.cli import run

ROOT = pathlib.Path(__file__).resolve().parents[2]
HAS_TENSORBOARD = importlib.util.find_spec("tensorboard") is not None
TRAINING_COMMANDS = ("train-policy", "train-lrm", "improve", "ppo", "eval-reward")


@pytest.fixture(autouse=True)
def _repo_root(monkeypatch):
    monkeypatch.chdir(ROOT)


@pytest.fixture
def store(tmp_path) -> pathlib.Path:
    rng = np.random.default_rng(0)
    path = tmp_path / "store"
    with EpisodeStore.open(path, mode="a", durable=False) as writer:
        for seed in range(4):
            writer.append(synthetic_episode(rng, 8, source="demo", oracle_success=True, env_id="PickCube-v1", seed=seed))
    return path



def bc_config(tmp_path: pathlib.Path, store: pathlib.Path) -> pathlib.Path:
    config = tmp_path / "bc.yaml"
    config.write_text(yaml.safe_dump({
        "store": str(store), "output_dir": str(tmp_path / "run"), "policy": {"hidden_dims": [16]},
        "steps": 6, "batch_size": 8, "log_every": 3, "val_every": 3, "checkpoint_every": 3, "val_fraction": 0.25,
        "progress": False}))
    return config


@pytest.mark.parametrize("command", TRAINING_COMMANDS)
def test_every_training_command_takes_report_to(command):
    parser = build_parser()
    args = parser.parse_args([command, "--report-to", "jsonl", "tensorboard", "--config", "x.yaml"])
    assert args.report_to == ["jsonl", "tensorboard"]


def test_behaviour_cloning_writes_a_row_per_logged_step_and_continues_without_duplicates(store, tmp_path, capsys):
    argv = ["train-policy", "--config", str(bc_config(tmp_path, store))]
    code, out, err = run(capsys, [*argv, "--report-to", "jsonl"])
    assert code == 0, err
    rows = read_rows(tmp_path / "run" / "metrics.jsonl")
    assert [r["step"] for r in rows] == [3, 6]
    assert all({"step", "loss", "lr", "elapsed_s", "val_loss", "wall_time"} <= set(r) for r in rows)
    assert not (tmp_path / "run" / "tensorboard").exists()
    code, out, err = run(capsys, [*argv, "--steps", "9"])  # continues from step 6: jsonl is the default
    assert code == 0 and "trained 3 steps (to 9/9)" in out, err
    assert [r["step"] for r in read_rows(tmp_path / "run" / "metrics.jsonl")] == [3, 6, 9]
    code, out, err = run(capsys, [*argv, "--fresh", "--report-to", "none"])
    assert code == 0 and not (tmp_path / "run" / "metrics.jsonl").exists()


@pytest.mark.skipif(not HAS_TENSORBOARD, reason="tensorboard is not installed")
def test_tensorboard_event_files_when_asked(store, tmp_path, capsys):
    argv = ["train-policy", "--config", str(bc_config(tmp_path, store)), "--report-to", "jsonl,tensorboard"]
    code, _, err = run(capsys, argv)
    assert code == 0, err
    assert list((tmp_path / "run" / "tensorboard").glob("events.out.tfevents.*"))
    assert len(read_rows(tmp_path / "run" / "metrics.jsonl")) == 2


@pytest.mark.parametrize("command", TRAINING_COMMANDS)
def test_a_missing_wandb_is_one_line_and_exit_2_before_any_work(command, store, tmp_path, capsys, monkeypatch):
    monkeypatch.setattr(tracking, "_importable", lambda module: module != "wandb")
    out = tmp_path / "out"
    config = bc_config(tmp_path, store) if command == "train-policy" else ROOT / "configs/lrm/train/lite_pickcube.yaml"
    argv = [command, "--config", str(config), "--output-dir", str(out), "--report-to", "jsonl", "wandb"]
    code, _, err = run(capsys, argv)
    assert code == 2
    assert err == f"lrm-robot {command}: error: --report-to jsonl wandb: wandb is not installed (pip install wandb)\n"
    assert not out.exists()


def test_an_unknown_tracker_is_refused_in_one_line(tmp_path, capsys):
    code, _, err = run(capsys, ["train-lrm", "--config", "configs/lrm/train/lite_pickcube.yaml", "--report-to",
                                "mlflow", "--output-dir", str(tmp_path / "out")])
    assert code == 2 and "--report-to mlflow: unknown reporter 'mlflow'" in err and err.count("\n") == 1


def test_a_config_file_may_name_the_trackers_too(tmp_path):
    from common.config import ConfigError, load_config
    from policies.actor_critic.bc_train import BCTrainConfig

    path = tmp_path / "bc.yaml"
    path.write_text(yaml.safe_dump({"store": "s", "output_dir": "o", "report_to": "jsonl,tensorboard"}))
    assert load_config(path, BCTrainConfig).report_to == ["jsonl", "tensorboard"]
    assert load_config(path, BCTrainConfig, ["report_to=[none]"]).report_to == []
    with pytest.raises(ConfigError, match="unknown reporter 'tensorbored'"):
        load_config(path, BCTrainConfig, ["report_to=tensorbored"])


# -- improve: a row per finished round ------------------------------------------------------------------------


def _report(rounds: int) -> dict:
    entries = [{"round": 0, "eval": {"episodes": 4, "successes": 1, "success_rate": 0.25, "ci95": [0.05, 0.7]}}]
    for r in range(1, rounds + 1):
        entries.append({
            "round": r,
            "eval": {"episodes": 4, "successes": 2, "success_rate": 0.5, "ci95": [0.15, 0.85], "change_from_base": 0.25,
                     "vs_base": {"p_value": 0.5}},
            "rollouts": {"episodes": 3, "aborted": 0, "judged": 3, "kept": 2, "operator_verdicts": 0,
                         "oracle_successes": 1, "oracle_success_rate": 1 / 3,
                         "lrm_filter": {"tp": 1, "fp": 1, "fn": 0, "tn": 1, "precision": 0.5, "recall": 1.0},
                         "filter": {"tp": 1, "fp": 1, "fn": 0, "tn": 1, "precision": 0.5, "recall": 1.0}},
        })
    return {"rounds": entries}


def _steps(rounds: int) -> dict:
    steps = {"train-0": {"selected": {"demos": 3, "rollouts": 0}, "train_loss": 0.1, "seconds": 2.0},
             "eval-0": {"seconds": 1.0}}
    for r in range(1, rounds + 1):
        steps.update({f"rollouts-{r}": {"seconds": 3.0}, f"judge-{r}": {"seconds": 0.5},
                      f"train-{r}": {"selected": {"demos": 3, "rollouts": 2}, "train_loss": 0.05, "seconds": 2.5},
                      f"eval-{r}": {"seconds": 1.5}})
    return steps


def test_round_metrics_flatten_success_judge_kept_counts_and_timings():
    from app.improve.report import round_metrics

    row = round_metrics(_report(1), _steps(1), 1)
    assert row["eval/success_rate"] == 0.5 and row["eval/ci95_low"] == 0.15 and row["eval/p_value_vs_base"] == 0.5
    assert row["judge/precision"] == 0.5 and row["judge/recall"] == 1.0 and row["filter/precision"] == 0.5
    assert row["rollouts/kept"] == 2 and row["rollouts/oracle_success_rate"] == pytest.approx(1 / 3)
    assert row["train/demos"] == 3 and row["train/rollouts"] == 2 and row["train/loss"] == 0.05
    assert {k: v for k, v in row.items() if k.startswith("seconds/")} == {
        "seconds/rollouts": 3.0, "seconds/judge": 0.5, "seconds/train": 2.5, "seconds/eval": 1.5}
    assert round_metrics(_report(1), {"train-1": {}}, 1) is None  # not evaluated yet


def test_improve_logs_each_finished_round_once_across_a_resume(tmp_path):
    from app.improve.config import ImproveConfig
    from app.improve.loop import ImproveRun
    from app.improve.state import RunState
    from common.config import load_config

    out = tmp_path / "improve"
    config = load_config(None, ImproveConfig, [f"output_dir={out}", "rounds=2"])
    steps = _steps(1)

    def reopen() -> ImproveRun:
        run = ImproveRun(config)
        run.state = RunState.load_or_create(out, config.fingerprint())
        run._open_tracker()
        return run

    run = reopen()
    for name in ("train-0", "eval-0", "rollouts-1", "judge-1"):
        run.state.mark(name, steps[name])
    run._log_rounds(_report(0))
    run.tracker.close()
    with (out / "metrics.jsonl").open("a") as f:  # a row of a round that state.json does not call finished
        f.write(json.dumps({"step": 1, "stale": True}) + "\n")

    run = reopen()  # resumed: round 1's stale row is dropped, round 0's kept and not logged again
    assert [r["step"] for r in read_rows(out / "metrics.jsonl")] == [0]
    run.state.mark("train-1", steps["train-1"])
    run.state.mark("eval-1", steps["eval-1"])
    run._log_rounds(_report(1))
    run._log_rounds(_report(1))  # the report is written several times: a round is logged once
    run.tracker.close()
    rows = read_rows(out / "metrics.jsonl")
    assert [r["step"] for r in rows] == [0, 1] and "stale" not in rows[1]
    assert rows[0]["eval/success_rate"] == 0.25 and rows[1]["judge/precision"] == 0.5

    # killed after round 1 finished but before its row was written: the next run writes it
    (out / "metrics.jsonl").write_text(json.dumps(rows[0]) + "\n")
    run = reopen()
    run._log_rounds(_report(1))
    run.tracker.close()
    assert [r["step"] for r in read_rows(out / "metrics.jsonl")] == [0, 1]


# -- headless operate: a bar per round ------------------------------------------------------------------------


class _Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_headless_operate_draws_a_bar_per_round_and_passes_every_event_on():
    from app.operator.events import PhaseChanged, RolloutStarted, RoundStats
    from app.operator.headless import HeadlessProgress

    seen, screen = [], _Terminal()
    bars = HeadlessProgress(seen.append, file=screen)
    events = [RolloutStarted(1, 0, 2, 0, "pick", 10, None), RoundStats(1, rollouts=1, live=True),
              RolloutStarted(1, 1, 2, 1, "pick", 10, None), RoundStats(1, rollouts=2, accepted=1, live=True),
              PhaseChanged("finetune"), RoundStats(1, rollouts=2, accepted=1),
              RolloutStarted(2, 0, 2, 2, "pick", 10, None), PhaseChanged("done")]
    for event in events:
        bars(event)
    assert seen == events and bars.bar is None
    drawn = screen.getvalue()
    assert "round 1" in drawn and "2/2" in drawn and "success 50%" in drawn and "round 2" in drawn

    quiet = io.StringIO()  # not a terminal: no bar
    bars = HeadlessProgress(seen.append, file=quiet)
    bars(events[0])
    bars(PhaseChanged("done"))
    assert quiet.getvalue() == ""


# -- ppo: its own metrics.jsonl, the same rows to TensorBoard -------------------------------------------------


@pytest.mark.skipif(not HAS_TENSORBOARD, reason="tensorboard is not installed")
def test_ppo_rows_go_to_tensorboard_and_its_jsonl_keeps_its_format(tmp_path):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    from app.ppo.report import MetricsLog
    from common.tracking import make_tracker

    log = MetricsLog(tmp_path, rerun=False, plot=False, tracker=make_tracker(["tensorboard"], tmp_path))
    for it in range(2):
        log.append({"iteration": it, "env_steps": 16 * (it + 1), "success_rate": 0.5 * it, "kl": float("nan")})
    log.tracker.close()
    assert log.rows() == [{"iteration": 0, "env_steps": 16, "success_rate": 0.0, "kl": None},
                          {"iteration": 1, "env_steps": 32, "success_rate": 0.5, "kl": None}]
    acc = EventAccumulator(str(tmp_path / "tensorboard"))
    acc.Reload()
    assert [(e.step, e.value) for e in acc.Scalars("success_rate")] == [(0, 0.0), (1, 0.5)]
    assert "kl" not in acc.Tags()["scalars"] and "iteration" not in acc.Tags()["scalars"]
