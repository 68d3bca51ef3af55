"""`lrm-robot improve` end to end on a tiny config (real ManiSkill, real store, real training), and resume
after SIGKILLs at several points: the resumed run ends with exactly the episodes of an uninterrupted one."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import yaml

from common.config import load_config
from app.improve.config import ImproveConfig
from app.improve.loop import ImproveRun
from app.improve.report import filter_metrics, format_table
from lrm.types import Reward
from recordings.store import EpisodeStore
from tests.support.fork_server import ForkServer

pytestmark = [pytest.mark.sim, pytest.mark.filterwarnings("ignore::DeprecationWarning")]

ROOT = Path(__file__).resolve().parents[2]
WORKER = Path(__file__).with_name("improve_kill_worker.py")

TINY = {
    "env": {"kind": "sim", "sim": {"env_id": "PickCube-v1", "state_mode": "full", "cameras": ["base_camera"],
                                   "camera_width": 32, "camera_height": 32, "show_goal_markers": True}},
    "demos": {"count": 3},
    "policy": {
        "type": "bc",
        "train": {"policy": {"type": "actor_critic", "cameras": [], "hidden_dims": [32, 32],
                             "relative_action_dims": [0, 1, 2, 3, 4, 5, 6], "chunk_size": 4, "n_action_steps": 2},
                  "steps": 40, "batch_size": 32, "val_fraction": 0.0, "checkpoint_every": 20},
        "finetune": {"steps": 20},
    },
    "judge": {"train": {"model": {"image_size": [32, 32], "cnn_channels": [8, 8], "feature_dim": 16, "hidden_dim": 16},
                        "train": {"steps": 20, "batch_size": 8}},
              # every rollout is kept at threshold 0.01 unless the judge is sure it failed: rounds then train on rollouts
              "threshold": 0.01,
              # two base-policy rollouts for the judge: the resume test kills the run in the middle of the second
              "calibration_episodes": 2,
              # the precision floor (its own test below) would skip the rounds of a judge trained for 20 steps
              "min_precision": 0.0},
    "rounds": 2,
    "rollouts_per_round": 3,
    "rollout": {"max_steps": 20, "time_limit_s": None},
    "eval": {"episodes": 2},
    "durable": False,
    "progress": False,
}


def _config(tmp: Path, name: str) -> Path:
    path = tmp / f"{name}.yaml"
    path.write_text(yaml.safe_dump({**TINY, "output_dir": str(tmp / name)}))
    return path


def _episodes(store_path: Path) -> list[tuple]:
    """Every episode in full: its identity and verdicts (`_identity`), then what it showed, did and reached."""
    with EpisodeStore.open(store_path, mode="r") as store:
        out = []
        for record in store.episodes():
            episode = store.load_episode(record.index)
            out.append((_identity(record), record.meta.extra.get("improve"), episode.images, episode.action,
                        episode.state))
        return out


def _assert_same_episodes(mine: Path, theirs: Path) -> None:
    """The two stores hold the same episodes in the same order: identity, verdicts, frames, actions, states."""
    a, b = _episodes(mine), _episodes(theirs)
    assert [e[:2] for e in a] == [e[:2] for e in b]
    for (summary, improve, images, action, state), (_, _, their_images, their_action, their_state) in zip(a, b):
        where = f"{summary[0]} episode, seed {summary[2]}, {improve}"
        assert images.keys() == their_images.keys(), where
        for camera in images:
            np.testing.assert_array_equal(images[camera], their_images[camera], err_msg=f"{where}: {camera} frames")
        np.testing.assert_array_equal(action, their_action, err_msg=f"{where}: actions")
        np.testing.assert_array_equal(state, their_state, err_msg=f"{where}: states")


def _identity(r) -> tuple:
    """What must not depend on interruptions: an episode's identity, length, outcome and verdict."""
    return (r.meta.source, r.meta.round, r.meta.seed, r.length, r.meta.oracle_success, r.meta.lrm_verdict,
            # float sums may differ in the last bits between processes (thread scheduling)
            None if r.meta.lrm_score is None else round(r.meta.lrm_score, 3), r.meta.aborted)


def _summary(store_path: Path) -> list[tuple]:
    with EpisodeStore.open(store_path, mode="r") as store:
        return [_identity(r) for r in store.episodes()]


@pytest.fixture(scope="module")
def uninterrupted(tmp_path_factory) -> tuple[Path, dict]:
    tmp = tmp_path_factory.mktemp("improve")
    config = load_config(_config(tmp, "run"), ImproveConfig)
    report = ImproveRun(config).run()
    return Path(config.output_dir), report


def test_rounds_end_to_end(uninterrupted):
    out, report = uninterrupted
    state = json.loads((out / "state.json").read_text())["steps"]
    assert list(state) == ["demos", "train-0", "eval-0", "calibration", "judge-train", "rollouts-1", "judge-1",
                           "train-1", "eval-1", "rollouts-2", "judge-2", "train-2", "eval-2"]
    with EpisodeStore.open(out / "store", mode="r") as store:
        demos = store.episodes(source="demo")
        assert len(demos) == 3 and all(r.meta.oracle_success for r in demos)
        for r in (1, 2):
            rolls = store.episodes(round=r, source="sim")
            assert sorted(x.meta.extra["improve"]["slot"] for x in rolls) == [0, 1, 2]
            assert [x.meta.seed for x in rolls] == [100_000 + 3 * (r - 1) + i for i in range(3)]
            for x in rolls:  # verdict and score next to the oracle's flag; no operator verdict was given
                assert isinstance(x.meta.lrm_verdict, bool) and 0.0 <= x.meta.lrm_score <= 1.0
                assert isinstance(x.meta.oracle_success, bool) and x.meta.operator_verdict is None
                assert x.meta.policy_id == f"round-{r - 1}"
                assert x.meta.extra["judge"]["frames"] == [x.length - 1]  # the terminal frame
                assert x.meta.extra["rollout"]["terminal_frame"]
            # the report's filter numbers are the store's verdicts against the oracle
            entry = next(e for e in report["rounds"] if e["round"] == r)
            expected = filter_metrics([bool(x.meta.lrm_verdict) for x in rolls], [bool(x.meta.oracle_success) for x in rolls])
            assert entry["rollouts"]["lrm_filter"] == expected
        accepted = {x.index for x in store.episodes(source="sim", accepted=True)}
        assert accepted, "the tiny judge at threshold 0.01 should keep some rollouts"
    # round 2 fine-tunes round 1's checkpoint on the demos + the accepted rollouts of rounds 1 and 2
    assert state["train-2"]["init_from"].endswith("round-1/checkpoints/last")
    assert set(state["train-2"]["episodes"]) == {r.index for r in demos} | accepted
    assert state["train-2"]["selected"] == {"demos": 3, "rollouts": len(accepted)}
    # the judge never trained on a rollout
    assert state["judge-train"]["trained_on"]["demonstrations"] == sorted(r.index for r in demos)
    calibration = state["calibration"]["indices"]
    assert len(calibration) == 2 and state["judge-train"]["trained_on"]["calibration_episodes"] == calibration
    assert report["finished"] and [e["round"] for e in report["rounds"]] == [0, 1, 2]
    assert all(e["eval"]["episodes"] == 2 for e in report["rounds"])
    assert (out / "success.png").stat().st_size > 1000
    # metrics.jsonl (report_to's default): a row per round, and each round's trainer's rows in its folder
    rows = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in rows] == [0, 1, 2]
    assert [r["eval/success_rate"] for r in rows] == [e["eval"]["success_rate"] for e in report["rounds"]]
    assert {"judge/precision", "rollouts/kept", "train/rollouts", "seconds/rollouts", "seconds/train"} <= set(rows[2])
    assert (out / "policy" / "round-2" / "metrics.jsonl").is_file()
    assert json.loads((out / "report.json").read_text())["rounds"] == json.loads(json.dumps(report["rounds"]))
    # the same command on a finished run: the same report, nothing added
    before = _summary(out / "store")
    again = ImproveRun(load_config(out.with_suffix(".yaml"), ImproveConfig)).run()
    assert json.loads(json.dumps(again["rounds"])) == json.loads(json.dumps(report["rounds"]))
    assert _summary(out / "store") == before


def test_resume_after_sigkill_at_several_points_matches_an_uninterrupted_run(uninterrupted, tmp_path):
    reference, _ = uninterrupted
    config_path = _config(tmp_path, "killed")
    out = tmp_path / "killed"
    kills = [
        ("demo-replayed", "seed=1"),  # between two demonstrations
        ("rollout-step", "phase=calibration", "slot=1", "step=5"),  # re-recorded in a fresh env, not after slot 0
        ("rollout-step", "round=1", "slot=1", "step=5"),  # in the middle of recording an episode
        ("judged", "round=1"),  # after the first verdict of round 1, before the others
    ]
    server = ForkServer(WORKER, tmp_path / "worker.log", cwd=ROOT)  # imports once, forks a run for each kill
    try:
        for kill in kills:
            run = server.run(str(config_path), *kill)
            code = run.wait(timeout=300)
            assert code == -9, f"{kill}: exit {code}\n{run.printed}\n{server.errors()}"
            assert any(line.startswith("killing at") for line in run.printed)
    finally:
        server.close()
    state = json.loads((out / "state.json").read_text())["steps"]
    assert "rollouts-1" in state and "judge-1" not in state
    report = ImproveRun(load_config(config_path, ImproveConfig)).run()
    assert report["finished"]
    assert [json.loads(line)["step"] for line in (out / "metrics.jsonl").read_text().splitlines()] == [0, 1, 2]
    # no episode lost or duplicated, none redone differently: the same store as the uninterrupted run
    assert _summary(out / "store") == _summary(reference / "store")
    _assert_same_episodes(out / "store", reference / "store")  # and each the same episode, frame by frame
    mine = json.loads((out / "report.json").read_text())["rounds"]
    theirs = json.loads((reference / "report.json").read_text())["rounds"]
    assert [(e["eval"]["episodes"], e["eval"]["successes"]) for e in mine] == \
        [(e["eval"]["episodes"], e["eval"]["successes"]) for e in theirs]
    # training in another process may differ in the last float bits (thread scheduling), nothing more
    assert [e["eval"]["mean_max_dense_reward"] for e in mine] == \
        pytest.approx([e["eval"]["mean_max_dense_reward"] for e in theirs], abs=1e-3)


def test_a_sim_run_can_start_from_demonstrations_in_another_store(uninterrupted, tmp_path):
    """`demos.source: store` in simulation: the successful demos of another run's store, copied once."""
    reference, _ = uninterrupted
    path = tmp_path / "from_store.yaml"
    data = {**TINY, "output_dir": str(tmp_path / "from_store"), "rounds": 0, "eval": {"episodes": 0},
            "demos": {"source": "store", "store": str(reference / "store"), "count": 2}}
    path.write_text(yaml.safe_dump(data))
    report = ImproveRun(load_config(path, ImproveConfig)).run()
    assert report["finished"]
    with EpisodeStore.open(reference / "store", mode="r") as theirs, \
            EpisodeStore.open(tmp_path / "from_store" / "store", mode="r") as mine:
        copied = mine.episodes(source="demo")  # the tiny config records calibration rollouts after them
        assert [r.meta.extra["improve"]["source_index"] for r in copied] == [0, 1]  # the first two demos
        for rec in copied:
            original = theirs.load_episode(rec.meta.extra["improve"]["source_index"])
            ep = mine.load_episode(rec.index)
            assert rec.meta.source == "demo" and rec.meta.oracle_success is True
            assert (ep.images["base_camera"] == original.images["base_camera"]).all()
            assert (ep.action == original.action).all() and (ep.state == original.state).all()
    state = json.loads((tmp_path / "from_store" / "state.json").read_text())["steps"]
    assert state["demos"]["demos"] == 2 and state["train-0"]["selected"] == {"demos": 2, "rollouts": 0}


def test_a_watching_judge_ends_rollouts_and_learns_from_oracle_labelled_calibration_frames(tmp_path):
    data = {**TINY, "output_dir": str(tmp_path / "watch"), "rounds": 1, "eval": {"episodes": 0},
            "judge": {**TINY["judge"], "watch_every": 5, "calibration_episodes": 2}}
    path = tmp_path / "watch.yaml"
    path.write_text(yaml.safe_dump(data))
    config = load_config(path, ImproveConfig)
    ImproveRun(config).run()
    out = Path(config.output_dir)
    state = json.loads((out / "state.json").read_text())["steps"]
    with EpisodeStore.open(out / "store", mode="r") as store:
        calibration = store.episodes(round=0, source="sim")
        assert len(calibration) == 2
        labelled = 0
        for rec in calibration:  # no watcher yet (it is trained on these): every 5th frame rendered, to the end
            captured = rec.meta.extra["rollout"]["captured"]
            assert set(range(0, rec.length - 1, 5)) <= set(captured)
            labelled += len(captured)
        examples = state["judge-train"]["examples"]
        calibration_examples = sum(split.get("completion", 0) for split in examples.values()) - 3 * 12
        assert calibration_examples == labelled  # besides 3 demos x (11 keyframes + 1 clipped)
        rollouts = store.episodes(round=1, source="sim")
        ended = [r for r in rollouts if r.meta.extra["rollout"]["status"] == "judged_done"]
        assert ended, "at threshold 0.01 the tiny judge calls some frame done"
        for rec in rollouts:
            info = rec.meta.extra["rollout"]
            assert set(range(0, rec.length - 1, 5)) <= set(info["captured"])
            if info["status"] == "judged_done":  # the frame called done is the terminal frame its verdict reads
                t = rec.length - 1
                assert t % 5 == 0 and rec.meta.extra["judge"]["frames"] == [t] and rec.meta.lrm_verdict is True
                assert f"at step {t}" in info["reason"]
            else:
                assert info["status"] == "step_limit"


def _from_reference(tmp_path: Path, reference: Path, name: str, **changes) -> Path:
    """A tiny run whose demonstrations are copied from the uninterrupted run's store (no planning)."""
    data = {**TINY, "output_dir": str(tmp_path / name),
            "demos": {"source": "store", "store": str(reference / "store"), "count": 3}, **changes}
    path = tmp_path / f"{name}.yaml"
    path.write_text(yaml.safe_dump(data))
    return path


def test_a_round_significantly_worse_than_the_best_is_not_carried_forward_even_after_a_resume(
        uninterrupted, tmp_path, monkeypatch, caplog):
    """eval-r stubbed at `evaluate_round` (the simulator's evaluation): round 1 loses 6 of round 0's 6 seeds."""
    import app.improve.loop as loop

    flags = {0: [True] * 6 + [False] * 2, 1: [False] * 8, 2: [True] * 6 + [False] * 2}

    def evaluate(policy, env_config, *, episodes, seed, max_steps, round_, progress):
        k = sum(flags[round_])
        return {"episodes": 8, "successes": k, "success_rate": k / 8, "ci95": [0.0, 1.0], "seeds": [seed, seed + 7],
                "mean_max_dense_reward": 0.0, "success_flags": flags[round_]}

    monkeypatch.setattr(loop, "evaluate_round", evaluate)
    reference, _ = uninterrupted
    path = _from_reference(tmp_path, reference, "worse", rounds=1)
    with caplog.at_level("WARNING", logger="app.improve.loop"):
        ImproveRun(load_config(path, ImproveConfig)).run()
    out = tmp_path / "worse"
    carry = json.loads((out / "state.json").read_text())["steps"]["eval-1"]["carry"]
    assert (carry["carried_forward"], carry["next_from"], carry["best_round"]) == (False, 0, 0)
    assert any(r.getMessage().startswith("round 1: not carried forward: significantly worse than round 0")
               for r in caplog.records)
    # the same command with one more round (a resumed run): round 2 rolls out and fine-tunes round 0's policy
    data = yaml.safe_load(path.read_text())
    path.write_text(yaml.safe_dump({**data, "rounds": 2}))
    report = ImproveRun(load_config(path, ImproveConfig)).run()
    state = json.loads((out / "state.json").read_text())["steps"]
    assert state["train-2"]["init_from"] == "policy/round-0/checkpoints/last" and state["train-2"]["start_round"] == 0
    assert state["train-1"]["init_from"] == "policy/round-0/checkpoints/last"
    assert state["eval-2"]["carry"]["carried_forward"] and state["eval-2"]["carry"]["best_round"] == 0
    with EpisodeStore.open(out / "store", mode="r") as store:
        assert {r.meta.policy_id for r in store.episodes(round=1, source="sim")} == {"round-0"}
        assert {r.meta.policy_id for r in store.episodes(round=2, source="sim")} == {"round-0"}
    lines = format_table(report).splitlines()
    assert lines[3].endswith("not carried forward") and not lines[4].endswith("not carried forward")
    assert any(line.startswith("round 1: not carried forward") and line.endswith(
        "round 2 starts from round 0's checkpoint") for line in lines)


def test_a_judge_below_the_precision_floor_skips_the_rounds_selection(uninterrupted, tmp_path, monkeypatch, caplog):
    """A judge that calls every frame half done keeps the held-out calibration failures at any threshold: the
    round measures that, says so, and trains on nothing. The judge is stubbed where the run builds its backend."""
    import lrm.backends

    class HalfSure:
        def score(self, requests):
            return [Reward(0.5, "", {"yes": 0.5, "no": 0.5}) for _ in requests]

    monkeypatch.setattr(lrm.backends, "make_reward_backend", lambda config: HalfSure())
    reference, _ = uninterrupted
    path = _from_reference(tmp_path, reference, "floor", rounds=1,
                           judge={**TINY["judge"], "calibration_episodes": 4, "min_precision": 0.8})
    with caplog.at_level("INFO", logger="app.improve.loop"):
        report = ImproveRun(load_config(path, ImproveConfig)).run()
    out = tmp_path / "floor"
    state = json.loads((out / "state.json").read_text())["steps"]
    check = state["judge-1"]["calibration_check"]
    with EpisodeStore.open(out / "store", mode="r") as store:
        held_out = [store.record(i).meta.oracle_success for i in check["held_out"]]
    assert held_out and not all(held_out), "the tiny policy fails its calibration rollouts"
    assert check["action"] == "skip" and check["precision"] == sum(held_out) / len(held_out)
    assert check["threshold"] == 0.01 and check["min_precision"] == 0.8
    assert state["judge-1"]["accepted_by_lrm"] == 3  # judged all the same, for the report
    assert state["train-1"]["skipped"] and state["train-1"]["episodes"] == []
    assert state["train-1"]["checkpoint"] == state["train-0"]["checkpoint"] and not (out / "policy/round-1").exists()
    messages = [r.getMessage() for r in caplog.records]
    assert any(m.startswith("round 1 judge: precision ") and f"on {len(held_out)} held-out calibration" in m
               for m in messages)
    assert any("round 1's selection is skipped" in m for m in messages)
    assert report["rounds"][1]["judge_check"]["action"] == "skip" and report["rounds"][1]["train"]["skipped"]
    assert any(line.endswith("selection skipped, no fine-tuning on judged rollouts this round")
               for line in format_table(report).splitlines())


def test_parameter_noise_explores_in_rollouts_and_calibration_by_slot_seed(uninterrupted, tmp_path):
    reference, _ = uninterrupted
    path = _from_reference(tmp_path, reference, "explore", rounds=1, eval={"episodes": 0},
                           exploration={"parameter_noise": 0.1})
    config = load_config(path, ImproveConfig)
    ImproveRun(config).run()
    with EpisodeStore.open(Path(config.output_dir) / "store", mode="r") as store:
        rollouts = [r.meta for r in store.episodes(source="sim")]
    phases = {m.extra["improve"]["phase"] for m in rollouts}
    assert phases == {"calibration", "rollout"} and len(rollouts) == 2 + 3
    for m in rollouts:
        assert m.extra["exploration"] == {"parameter_noise": 0.1, "seed": m.seed}
    # an explorer differs from the policy it perturbs: the same seed's actions differ from the reference run's
    with EpisodeStore.open(reference / "store", mode="r") as store:
        plain = {r.meta.seed: store.load_episode(r.index).action for r in store.episodes(source="sim", round=1)}
    with EpisodeStore.open(Path(config.output_dir) / "store", mode="r") as store:
        explored = {r.meta.seed: store.load_episode(r.index).action for r in store.episodes(source="sim", round=1)}
    assert plain.keys() == explored.keys()
    assert all(not np.array_equal(plain[s][:2], explored[s][:2]) for s in plain)


def test_a_run_seed_moves_the_runs_episodes_and_training_but_not_its_evaluation(uninterrupted, tmp_path):
    reference, _ = uninterrupted
    path = _from_reference(tmp_path, reference, "seeded", rounds=1, seed=2)
    config = load_config(path, ImproveConfig)
    report = ImproveRun(config).run()
    with EpisodeStore.open(Path(config.output_dir) / "store", mode="r") as store:
        seeds = {p: sorted(r.meta.seed for r in store.episodes(source="sim") if r.meta.extra["improve"]["phase"] == p)
                 for p in ("calibration", "rollout")}
    assert seeds == {"calibration": [52_000, 52_001], "rollout": [120_000, 120_001, 120_002]}
    reference_report = json.loads((reference / "report.json").read_text())
    assert reference_report["run_seed"] == 0
    assert report["run_seed"] == 2
    assert [r["eval"]["seeds"] for r in report["rounds"]] == [r["eval"]["seeds"] for r in reference_report["rounds"][:2]]
    # the policy's trainer ran on its own seed: the same demonstrations give another base policy
    from safetensors.numpy import load_file

    def weights(run: Path) -> dict:
        return load_file(str(next((run / "policy" / "round-0" / "checkpoints" / "last").rglob("*.safetensors"))))

    mine, theirs = weights(Path(config.output_dir)), weights(reference)
    assert mine.keys() == theirs.keys() and any(not np.array_equal(mine[k], theirs[k]) for k in mine)


def test_cross_fitted_folds_judge_the_rollouts_and_the_floor_reads_every_calibration_episode(uninterrupted, tmp_path):
    reference, _ = uninterrupted
    judge = {**TINY["judge"], "folds": 2}
    path = _from_reference(tmp_path, reference, "folds", rounds=1, eval={"episodes": 0}, judge=judge)
    config = load_config(path, ImproveConfig)
    report = ImproveRun(config).run()
    out = Path(config.output_dir)
    saved = json.loads((out / "judge" / "folds.json").read_text())
    assert saved["folds"] == 2 and sorted(saved["held_out"].values()) == [0, 1]
    state = json.loads((out / "state.json").read_text())["steps"]
    assert state["judge-train"]["held_out"]["episodes"] == 2
    check = report["rounds"][1]["judge_check"]
    assert check["episodes"] == 2 and sorted(check["held_out"]) == sorted(int(i) for i in saved["held_out"])
    with EpisodeStore.open(out / "store", mode="r") as store:
        judged = [r.meta for r in store.episodes(source="sim", round=1)]
    assert len(judged) == 3 and all(m.lrm_score is not None for m in judged)
