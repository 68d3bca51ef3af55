"""The pieces of `lrm-robot improve` that need no simulator: configs, selection rules, the judge's
combination rules and provenance, the run manifest and the report's filter numbers."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import numpy as np
import pytest

from common.config import ConfigError, load_config
from app.errors import UsageError
from app.improve.config import ImproveConfig, JudgeConfig
from app.improve.judge import combine, judge_episode, judged_frames, p_completed, train_judge
from app.improve.report import build_report, filter_metrics, format_table, mcnemar_exact, success_figure
from app.improve.state import RunState
from lrm.types import Reward
from recordings.episode import Episode, EpisodeMeta
from recordings.selection import SelectionConfig, select_for_round
from recordings.store import EpisodeStore

ROOT = Path(__file__).resolve().parents[2]


# -- configs -------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["pickcube_cpu.yaml", "pickcube_pi05_gpu.yaml"])
def test_shipped_configs_load_with_the_real_loader(name):
    config = load_config(ROOT / "configs" / "improve" / name, ImproveConfig)
    assert config.rounds == 2 and config.env.kind == "sim" and config.env.sim.env_id == "PickCube-v1"
    assert "completion" in config.judge.backend.modalities
    train = config.policy.train_config(Path("s"), Path("o"), [], round_=1, init_from=Path("prev"))
    if name == "pickcube_cpu.yaml":
        assert config.policy.type == "bc" and config.judge.backend.type == "lite" and config.judge.train_from_store
        assert str(train.init_from) == "prev" and train.steps == 1500  # finetune overrides train
    else:
        assert config.policy.type == "pi05" and config.judge.backend.type == "qwen3vl"
        assert config.judge.backend.qwen3vl.adapters["completion"]
        assert train.pretrained == "prev" and train.steps == 1000
        assert config.demos.render == "every_frame" and config.rollout.capture == "every_step"


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        (["judge.backend.type=roboreward"], "needs a completion backend"),
        (["policy.train.stepz=3"], "unknown key 'policy.train.stepz'"),
        (["policy.finetune.store=x"], "must not set 'store'"),
        (["judge.frames=3"], "needs rollout.capture: every_step"),
        (["judge.combine=majority"], "expected one of 'vote', 'threshold'"),
        (["judge.threshold=1.5"], "key 'judge.threshold': must be at most 1, got 1.5"),
        (["judge.threshold=1"], "strictly between 0 and 1"),
        (["selection.demos=false", "selection.rollouts=none"], "selects nothing"),
        (["env.sim.cameras=[]"], "the judge needs a camera"),
        (["policy.train.policy.cameras=[base_camera]"], "demos.render: every_frame"),
        (["rollout_seed=0"], "seed blocks overlap"),
        (["judge.watch_every=5", "rollout.stop_on_success=true"], "the judge or the oracle, choose one"),
        (["judge.watch_every=-1"], "key 'judge.watch_every': must be at least 0, got -1"),
        (["judge.cameras=[base_camera,render_camera]"], "judge camera 'render_camera' is not among env.sim.cameras"),
        (["judge.min_precision=1.5"], "key 'judge.min_precision': must be at most 1, got 1.5"),
        (["eval.regression_alpha=-0.1"], "key 'eval.regression_alpha': must be at least 0, got -0.1"),
        (["exploration.parameter_noise=-0.1"], "key 'exploration.parameter_noise': must be at least 0, got -0.1"),
        (["seed=1", "judge.calibration_episodes=1001"], "seed: 1 needs at most 1000 calibration seeds per run"),
        (["seed=60"], "seed: 60 moves the demos seeds past 50000"),
        (["seed=-1"], "key 'seed': must be at least 0, got -1"),
        (["judge.folds=5", "judge.calibration_episodes=3"], "judge.folds: 5 holds out calibration episodes"),
        (["judge.folds=0"], "key 'judge.folds': must be at least 1, got 0"),
    ],
)
def test_bad_configs_are_one_line_errors_naming_the_key(overrides, message):
    with pytest.raises(ConfigError) as info:
        load_config(ROOT / "configs" / "improve" / "pickcube_cpu.yaml", ImproveConfig, overrides)
    assert message in str(info.value) and "\n" not in str(info.value)


def test_fingerprint_ignores_rounds_but_not_the_recipe():
    path = ROOT / "configs" / "improve" / "pickcube_cpu.yaml"
    base = load_config(path, ImproveConfig).fingerprint()
    assert load_config(path, ImproveConfig, ["rounds=5", "output_dir=/elsewhere"]).fingerprint() == base
    assert load_config(path, ImproveConfig, ["judge.threshold=0.7"]).fingerprint() != base
    # the rules' numbers decide results; at their defaults they leave earlier runs' fingerprints as they were
    assert load_config(path, ImproveConfig, ["judge.min_precision=0.5"]).fingerprint() != base
    assert load_config(path, ImproveConfig, ["eval.regression_alpha=0.01"]).fingerprint() != base
    assert load_config(path, ImproveConfig, ["exploration.parameter_noise=0.1"]).fingerprint() != base
    assert load_config(path, ImproveConfig, ["seed=1"]).fingerprint() != base
    defaults = ["judge.min_precision=0.8", "eval.regression_alpha=0.05", "exploration.parameter_noise=0.0", "seed=0",
                "judge.folds=1"]
    assert load_config(path, ImproveConfig, defaults).fingerprint() == base
    # the settings of a backend the judge is not (here the lite judge's qwen3vl section) change nothing
    assert load_config(path, ImproveConfig, ["judge.backend.qwen3vl.max_new_tokens=7"]).fingerprint() == base
    assert load_config(path, ImproveConfig, ["judge.backend.lite.device=cuda"]).fingerprint() != base


def test_a_run_seed_moves_every_seed_but_the_evaluation_s():
    path = ROOT / "configs" / "improve" / "pickcube_cpu.yaml"
    zero, two = load_config(path, ImproveConfig), load_config(path, ImproveConfig, ["seed=2"])
    assert [zero.seed_of(b) for b in ("demos", "calibration", "rollouts")] == [0, 50_000, 100_000]
    assert [two.seed_of(b) for b in ("demos", "calibration", "rollouts")] == [2_000, 52_000, 120_000]
    assert two.eval.seed == zero.eval.seed
    assert zero.run_judge() is zero.judge
    judge = two.run_judge()
    assert judge.train.train.seed == zero.judge.train.train.seed + 2
    assert judge.train.dataset.seed == zero.judge.train.dataset.seed + 2
    assert two.judge.train.train.seed == zero.judge.train.train.seed  # the config itself is left as written


def test_fingerprint_does_not_depend_on_where_the_project_lives():
    from app.improve.config import _PROJECT, _portable

    inside = {"prompts": {"progress": _PROJECT + "configs/lrm/prompts/x.yaml"}, "other": "/data/store"}
    assert _portable(inside) == {"prompts": {"progress": "configs/lrm/prompts/x.yaml"}, "other": "/data/store"}


def test_a_run_folder_of_an_earlier_fingerprint_version_is_refused_in_one_line(tmp_path):
    import json

    from app.errors import UsageError
    from app.improve.state import RunState

    (tmp_path / "state.json").write_text(json.dumps({"format": "lrm-robot-improve-state", "fingerprint": "abc",
                                                     "steps": {"demos": {}}}))
    with pytest.raises(UsageError, match="earlier lrm-robot.*--fresh") as info:
        RunState.load_or_create(tmp_path, "abc")
    assert "\n" not in str(info.value)
    state = RunState.load_or_create(tmp_path / "new", "abc")
    assert RunState.load_or_create(tmp_path / "new", "abc").fingerprint == state.fingerprint


# -- a synthetic store ---------------------------------------------------------------------------


def _episode(rng: np.random.Generator, length: int = 6, **meta) -> Episode:
    return Episode(
        meta=EpisodeMeta(task="pick up the cube", **{"source": "sim", **meta}),
        images={"cam": rng.integers(0, 256, (length, 16, 16, 3), dtype=np.uint8)},
        state=rng.standard_normal((length, 3)).astype(np.float32),
        action=rng.standard_normal((length, 2)).astype(np.float32),
        timestamp=np.arange(length, dtype=np.float64) / 10,
    )


def _rollout(slot: int, round_: int, **meta) -> dict:
    return dict(round=round_, extra={"improve": {"phase": "rollout", "slot": slot}}, **meta)


@pytest.fixture
def store(tmp_path):
    rng = np.random.default_rng(0)
    with EpisodeStore.open(tmp_path / "store", mode="a", durable=False) as s:
        s.append(_episode(rng, source="demo", oracle_success=True))  # 0
        s.append(_episode(rng, source="demo", oracle_success=True))  # 1
        s.append(_episode(rng, round=0, oracle_success=True,  # 2: calibration, oracle-labelled
                          extra={"improve": {"phase": "calibration", "slot": 0}}))
        s.append(_episode(rng, **_rollout(0, 1, lrm_verdict=True, oracle_success=True)))  # 3
        s.append(_episode(rng, **_rollout(1, 1, lrm_verdict=True, oracle_success=False)))  # 4: false positive
        s.append(_episode(rng, **_rollout(2, 1, lrm_verdict=False, oracle_success=True, operator_verdict=True)))  # 5
        s.append(_episode(rng, **_rollout(3, 1, lrm_verdict=True, oracle_success=True, aborted=True)))  # 6
        s.append(_episode(rng, **_rollout(0, 2, lrm_verdict=True, oracle_success=True)))  # 7
        s.append(_episode(rng, **_rollout(1, 2, lrm_verdict=True, operator_verdict=False, oracle_success=True)))  # 8
        s.append(_episode(rng, source="robot", **_rollout(2, 2, lrm_verdict=False, oracle_success=False)))  # 9
        yield s


@pytest.mark.parametrize(
    ("selection", "round_", "expected"),
    [
        # demos + accepted (operator over LRM) of rounds 1..r; aborted and calibration never
        (SelectionConfig(), 1, [0, 1, 3, 4, 5]),
        (SelectionConfig(), 2, [0, 1, 3, 4, 5, 7]),
        (SelectionConfig(rounds=1), 2, [0, 1, 7]),
        (SelectionConfig(rollouts="oracle"), 2, [0, 1, 3, 5, 7, 8]),
        (SelectionConfig(rollouts="all"), 2, [0, 1, 3, 4, 5, 7, 8, 9]),
        (SelectionConfig(rollouts="none"), 2, [0, 1]),
        (SelectionConfig(demos=False), 2, [3, 4, 5, 7]),
    ],
)
def test_selection_rules(store, selection, round_, expected):
    indices, counts = select_for_round(store, selection, round_)
    assert indices == expected
    assert counts == {"demos": sum(i in (0, 1) for i in expected), "rollouts": sum(i not in (0, 1) for i in expected)}


# -- the judge -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("scores", "how", "threshold", "accepted"),
    [
        ([0.9], "threshold", 0.5, True),
        ([0.4], "threshold", 0.5, False),
        ([0.9, 0.2, 0.45], "threshold", 0.5, True),  # mean 0.517
        ([0.9, 0.2, 0.35], "threshold", 0.5, False),  # mean 0.483
        ([0.9, 0.2, 0.45], "vote", 0.5, False),  # one of three frames says yes
        ([0.9, 0.6, 0.1], "vote", 0.5, True),  # two of three
        ([0.9, 0.1], "vote", 0.5, False),  # a tie rejects
        ([0.35, 0.32], "vote", 0.3, True),
    ],
)
def test_combine_vote_and_threshold(scores, how, threshold, accepted):
    got, mean = combine(scores, how, threshold)
    assert got is accepted and mean == pytest.approx(float(np.mean(scores)))


def test_combine_refuses_nothing_and_unknown_rules():
    with pytest.raises(ValueError, match="no frame scores"):
        combine([], "vote", 0.5)
    with pytest.raises(ValueError, match="unknown combine rule"):
        combine([0.5], "average", 0.5)


def test_p_completed_prefers_the_probability_of_yes():
    assert p_completed(Reward(1.0, "yes", {"yes": 0.7, "no": 0.3})) == 0.7
    assert p_completed(Reward(1.0, '{"task_completed": "yes"}')) == 1.0  # generate mode: the 0/1 answer


def test_judged_frames_are_the_rendered_ones_among_the_last_k(store):
    rec = store.record(3)
    assert judged_frames(rec, 2) == [4, 5]
    rec.meta.extra["rollout"] = {"captured": [0, 3, 5]}  # frame 4 was not rendered
    assert judged_frames(rec, 2) == [5] and judged_frames(rec, 3) == [3, 5]


def test_judge_trains_only_on_the_given_episodes_and_scores_the_last_frames(store, tmp_path):
    config = JudgeConfig()
    config.train.train.steps = 3
    config.train.model.image_size = (16, 16)
    out = tmp_path / "judge"
    info = train_judge(store, [0, 1], [2], config, out)
    assert info["trained_on"]["demonstrations"] == [0, 1] and info["trained_on"]["calibration_episodes"] == [2]
    assert info["trained_on"]["calibration_labels"] == "oracle"
    # each demo gives 11 keyframes (6 frames: repeats) + a clipped frame; the calibration episode its judged frame
    examples = info["examples"]
    assert sum(split.get("completion", 0) for split in examples.values()) == 2 * 12 + 1
    assert sum(split.get("completion_yes", 0) for split in examples.values()) == 2 + 1
    from lrm.backends.lite import LiteRewardModel

    model = LiteRewardModel.from_pretrained(out)
    config.frames, config.combine = 2, "vote"
    verdict = judge_episode(model, store, 4, config)
    images = store.load_episode(4).images["cam"]
    from lrm.types import RewardRequest

    direct = [p_completed(r) for r in model.score(
        [RewardRequest("completion", {"current": np.ascontiguousarray(images[t])}, "pick up the cube") for t in (4, 5)])]
    assert verdict.frames == [4, 5] and verdict.frame_scores == pytest.approx(direct)
    assert verdict.accepted == combine(direct, "vote", 0.5)[0]


def test_cross_fitted_folds_judge_by_their_mean_and_each_calibration_episode_by_the_fold_that_held_it_out(tmp_path):
    import json

    from app.improve.judge import held_out_calibration, held_out_scores, load_judge
    from lrm.backends import make_reward_backend
    from lrm.backends.lite import LiteEnsemble, trained_modalities
    from lrm.types import RewardRequest

    rng = np.random.default_rng(3)
    with EpisodeStore.open(tmp_path / "store", mode="a", durable=False) as st:
        for _ in range(2):
            st.append(_episode(rng, source="demo", oracle_success=True))
        for slot in range(6):  # calibration: 3 successes, 3 failures
            st.append(_episode(rng, round=0, oracle_success=slot % 2 == 0,
                               extra={"improve": {"phase": "calibration", "slot": slot}}))
        config = JudgeConfig(folds=3, calibration_episodes=6)
        config.train.train.steps = 2
        config.train.model.image_size = (16, 16)
        calibration = list(range(2, 8))
        info = train_judge(st, [0, 1], calibration, config, tmp_path / "judge")
        saved = json.loads((tmp_path / "judge" / "folds.json").read_text())
        assert saved["folds"] == 3 and sorted(int(i) for i in saved["held_out"]) == calibration
        for j in range(3):  # each fold holds out one success and one failure
            held = [int(i) for i, f in saved["held_out"].items() if f == j]
            assert sorted(st.record(i).meta.oracle_success for i in held) == [False, True]
            assert (tmp_path / "judge" / f"fold-{j}" / "model.safetensors").is_file()
        assert info["folds"] == 3 and info["held_out"]["episodes"] == 6 and info["held_out"]["successes"] == 3
        model = load_judge(config, tmp_path / "judge")
        assert isinstance(model, LiteEnsemble) and len(model.members) == 3
        # any command given the folder as a lite checkpoint (score, eval-reward, serve, operate) loads the ensemble
        assert isinstance(make_reward_backend(config.backend.__class__(
            type="lite", lite=config.backend.lite.__class__(checkpoint=str(tmp_path / "judge")))), LiteEnsemble)
        assert trained_modalities(tmp_path / "judge") == ("completion",)
        image = st.load_episode(7).images["cam"][-1]
        request = [RewardRequest("completion", {"current": np.ascontiguousarray(image)}, "pick up the cube")]
        each = [p_completed(m.score(request)[0]) for m in model.members]
        assert p_completed(model.score(request)[0]) == pytest.approx(float(np.mean(each)))
        # every labelled calibration episode is held out, and scored by the one fold that never trained on it
        assert held_out_calibration(st, calibration, config, "oracle") == calibration
        scores = held_out_scores(model, st, calibration, config)
        for i, s in zip(calibration, scores):
            member = model.members[saved["held_out"][str(i)]]
            assert s == pytest.approx(judge_episode(member, st, i, config).frame_scores)


def test_several_cameras_are_judged_as_one_tiled_image_in_training_and_judging(tmp_path):
    rng = np.random.default_rng(1)
    with EpisodeStore.open(tmp_path / "two", mode="a", durable=False) as two:
        for i in range(3):
            ep = _episode(rng, source="demo", oracle_success=True)
            ep.images["side"] = rng.integers(0, 256, (len(ep), 16, 12, 3), dtype=np.uint8)
            two.append(ep)
        config = JudgeConfig(cameras=["side", "cam"])
        config.train.train.steps = 2
        config.train.model.image_size = (16, 28)
        train_judge(two, [0, 1], [], config, tmp_path / "judge")
        from lrm.backends.lite import LiteRewardModel
        from lrm.types import RewardRequest

        model = LiteRewardModel.from_pretrained(tmp_path / "judge")
        verdict = judge_episode(model, two, 2, config)
        images = two.load_episode(2).images
        tiled = np.concatenate([images["side"][-1], images["cam"][-1]], axis=1)  # left to right, as listed
        assert tiled.shape == (16, 28, 3)
        direct = p_completed(model.score([RewardRequest("completion", {"current": tiled}, "pick up the cube")])[0])
        assert verdict.frame_scores == pytest.approx([direct])
        with pytest.raises(ValueError, match="judge camera 'wrist' is not in"):
            judge_episode(model, two, 2, JudgeConfig(cameras=["cam", "wrist"]))
    with pytest.raises(ValueError, match="not both"):
        JudgeConfig(camera="cam", cameras=["cam"])


def test_held_demo_frames_are_completed_where_the_simulator_says_so(tmp_path):
    rng = np.random.default_rng(2)
    with EpisodeStore.open(tmp_path / "held", mode="a", durable=False) as held:
        for _ in range(2):
            ep = _episode(rng, length=9, source="demo", oracle_success=True)
            ep.rewards["success"] = np.array([0, 0, 0, 1, 1, 1, 1, 1, 1], np.float32)  # done at 3, then held
            held.append(ep)
        config = JudgeConfig()
        config.train.dataset.num_keyframes, config.train.dataset.clip_fractions = 3, [0.5]
        config.train.train.steps = 1
        info = train_judge(held, [0, 1], [], config, tmp_path / "j", held_demos=True)
        plain = train_judge(held, [0, 1], [], config, tmp_path / "k")  # demos that end at success: by construction
    # keyframes 0, 4 and 8: frame 4 is held success (completed), not "unfinished"; the clipped prefix stays a negative
    counts = info["examples"]
    assert sum(split.get("completion_yes", 0) for split in counts.values()) == 2 * 2
    assert sum(split.get("completion_no", 0) for split in counts.values()) == 2 * 2
    assert sum(split.get("completion_yes", 0) for split in plain["examples"].values()) == 2


def test_calibration_labelled_by_the_operator_ignores_the_oracle(store, tmp_path):
    config = JudgeConfig()
    config.train.train.steps = 1
    info = train_judge(store, [0, 1], [2, 8, 9], config, tmp_path / "j", label_source="operator")
    # only 8 has an operator verdict: False, against its oracle's True; 2 and 9 are unlabelled and skipped
    counts = info["examples"]
    assert sum(split.get("completion", 0) for split in counts.values()) == 2 * 12 + 1
    assert sum(split.get("completion_yes", 0) for split in counts.values()) == 2


# -- manifest and report -------------------------------------------------------------------------


def test_state_refuses_another_config_and_survives_reload(tmp_path):
    state = RunState.load_or_create(tmp_path, "abc")
    state.mark("demos", {"demos": 3})
    assert RunState.load_or_create(tmp_path, "abc").get("demos") == {"demos": 3}
    with pytest.raises(UsageError, match="different config"):
        RunState.load_or_create(tmp_path, "xyz")
    assert not list(tmp_path.glob("*.tmp"))


def test_filter_metrics_from_counts():
    m = filter_metrics([True, True, False, False, True], [True, False, True, False, True])
    assert (m["tp"], m["fp"], m["fn"], m["tn"]) == (2, 1, 1, 1)
    assert m["precision"] == pytest.approx(2 / 3) and m["recall"] == pytest.approx(2 / 3)
    none = filter_metrics([False, False], [False, False])
    assert none["precision"] is None and none["recall"] is None


def test_table_prints_success_per_round_and_the_filter(tmp_path):
    report = {
        "rounds": [
            {"round": 0, "eval": {"episodes": 100, "successes": 24, "success_rate": 0.24, "ci95": [0.17, 0.33]}},
            {"round": 1, "eval": {"episodes": 100, "successes": 37, "success_rate": 0.37, "ci95": [0.28, 0.47]},
             "rollouts": {"episodes": 60, "aborted": 0, "oracle_successes": 15, "kept": 14,
                          "filter": {"precision": 12 / 14, "recall": 12 / 15}}},
        ],
        "judge": {"trained_on": {"demonstrations": [0, 1], "calibration_episodes": []}},
    }
    table = format_table(report)
    lines = table.splitlines()
    assert "24/100 = 24.0%" in lines[2] and "15/60 / 14 kept" in lines[2] and "85.7%" in lines[2]
    assert "80.0%" in lines[2] and "37/100 = 37.0%" in lines[3]
    assert any("2 demonstrations + 0 calibration" in line for line in lines)
    json.dumps(report)


def test_exact_mcnemar_counts_only_the_discordant_seeds():
    # 9 seeds gained, 1 lost: two-sided exact p = 2 * (C(10,0) + C(10,1)) / 2^10
    base = [False] * 9 + [True] + [True] * 5 + [False] * 5
    other = [True] * 9 + [False] + [True] * 5 + [False] * 5
    t = mcnemar_exact(base, other)
    assert (t["gained"], t["lost"], t["seeds"]) == (9, 1, 20)
    assert t["p_value"] == pytest.approx(22 / 1024) and t["significant"]
    same = mcnemar_exact(base, base)
    assert same["p_value"] == 1.0 and not same["significant"]
    # 3 vs 1 is no evidence at all: p = 2 * 5/16
    assert mcnemar_exact([False, False, False, True], [True, True, True, False])["p_value"] == pytest.approx(0.625)
    with pytest.raises(ValueError, match="length"):
        mcnemar_exact([True], [True, False])


def _fake_config(robot=False):
    from types import SimpleNamespace as NS

    return NS(env=NS(is_robot=robot, name="PickCube-v1"), rounds=2, rollouts_per_round=10,
              policy=NS(type="gaussian"), selection=NS(demos="all", rollouts="kept", rounds="all"),
              judge=NS(frames=1, combine="mean", threshold=0.5, backend=NS(describe=lambda: "lite")))


def _eval_step(flags):
    k = sum(flags)
    return {"episodes": len(flags), "successes": k, "success_rate": k / len(flags), "ci95": [0.0, 1.0],
            "mean_max_dense_reward": 0.5, "success_flags": flags}


def test_report_states_the_change_from_base_and_whether_it_is_significant():
    base = [False] * 12 + [True] * 8
    steps = {"eval-0": _eval_step(base),
             "eval-1": _eval_step([True] * 10 + [False] * 2 + [True] * 8),  # 10 gained, none lost
             "eval-2": _eval_step([True] + [False] * 11 + [True] * 7 + [False])}  # 1 gained, 1 lost
    steps["eval-2"].pop("success_flags")  # a run from before flags were stored: no test, said so
    report = build_report(_fake_config(), steps, None)
    r1, r2 = report["rounds"][1]["eval"], report["rounds"][2]["eval"]
    assert r1["change_from_base"] == pytest.approx(0.5) and r1["vs_base"]["significant"]
    assert r1["vs_base"]["p_value"] == pytest.approx(2 / 1024)
    assert "vs_base" not in r2
    lines = format_table(report).splitlines()
    assert "vs base" in lines[0] and "+50.0pp" in lines[3] and "+0.0pp" in lines[4]
    assert "round 1 vs base: +50.0 points (10 seeds gained, 0 lost of 20); exact McNemar p = 0.00195: significant at the 0.05 level" \
        in lines
    assert any(line.startswith("round 2 vs base: +0.0 points; no paired test") for line in lines)
    json.dumps(report)


def test_not_significant_is_said_plainly():
    steps = {"eval-0": _eval_step([False, True, False, False]), "eval-1": _eval_step([True, False, True, False])}
    table = format_table(build_report(_fake_config(), steps, None))
    assert "exact McNemar p = 1: not significant at the 0.05 level: could be chance" in table


def test_success_plot_draws_the_base_as_a_line():
    steps = {"eval-0": _eval_step([True, False, False, False]), "eval-1": _eval_step([True, True, False, False])}
    fig = success_figure(build_report(_fake_config(), steps, None))
    ax = fig.axes[0]
    base = [line for line in ax.get_lines() if line.get_label() == "base (round 0)"]
    assert len(base) == 1 and list(base[0].get_ydata()) == [25.0, 25.0] and ax.get_ylim() == (0, 100)


def test_judge_validation_is_labelled_in_distribution_beside_its_accuracy_on_rollouts():
    steps = {"judge-train": {"backend": "lite", "checkpoint": "judge", "validation": {
                 "completion_accuracy": 0.97, "completion_balanced_accuracy": 0.9},
                 "trained_on": {"demonstrations": [0], "calibration_episodes": [1, 2]}}}
    report = build_report(_fake_config(), steps, None)
    # the rollouts' filter counts as _round_rollouts leaves them: 6 right of 10
    report["rounds"] = [{"round": 1, "rollouts": {"episodes": 10, "aborted": 0, "kept": 4, "lrm_filter": filter_metrics(
        [True, True, True, False, False, False, False, True, False, False],
        [True, True, False, True, True, False, False, False, False, False])}}]
    steps_report = build_report(_fake_config(), steps, None)
    assert "validation" not in steps_report["judge"]
    assert steps_report["judge"]["validation_in_distribution"]["completion_accuracy"] == 0.97
    from app.improve.report import _rollout_accuracy

    report["judge"]["accuracy_on_rollouts"] = _rollout_accuracy(report["rounds"], robot=False)
    assert report["judge"]["accuracy_on_rollouts"]["accuracy"] == pytest.approx(0.6)
    line = format_table(report).splitlines()[-1]
    assert line.startswith("judge accuracy: in-distribution validation (held-out frames of its own training episodes)"
                           " accuracy 97.0%, balanced 90.0%; on this run's rollouts (vs oracle, 10 episodes) accuracy"
                           " 60.0%")


# -- never worse than before (app.improve.rules) -------------------------------------------------


def test_precision_floor_keeps_raises_or_skips():
    from app.improve.rules import check_threshold

    # at 0.5 the judge keeps all four: precision 2/4; at 0.6 still a failure kept (2/3); at 0.8 only the successes
    raised = check_threshold([[0.9], [0.8], [0.6], [0.55]], [True, True, False, False], how="threshold",
                             threshold=0.5, floor=0.8)
    assert (raised["action"], raised["precision"], raised["recall"]) == ("raised", 0.5, 1.0)
    assert raised["threshold"] == pytest.approx(0.8) and raised["configured_threshold"] == 0.5
    assert (raised["precision_after"], raised["recall_after"]) == (1.0, 1.0)
    # the lowest threshold that reaches the floor, not the safest: 3 of 4 kept is 75%, 4 of 5 is 80%
    five = check_threshold([[0.9], [0.85], [0.8], [0.75], [0.7], [0.6]], [True, True, True, True, False, False],
                           how="threshold", threshold=0.5, floor=0.8)
    assert five["action"] == "raised" and five["threshold"] == pytest.approx(0.7) and five["precision_after"] == 0.8
    kept = check_threshold([[0.9], [0.2]], [True, False], how="threshold", threshold=0.5, floor=0.8)
    assert (kept["action"], kept["threshold"], kept["precision"]) == ("kept", 0.5, 1.0)
    # a failure scored above every success: no threshold keeps a success without it
    skip = check_threshold([[0.95], [0.7]], [False, True], how="threshold", threshold=0.5, floor=0.8)
    assert (skip["action"], skip["threshold"], skip["precision"]) == ("skip", 0.5, 0.5)
    # nothing kept (precision undefined) or nothing held out: the threshold stays, and the record says why
    none = check_threshold([[0.1], [0.3]], [True, False], how="threshold", threshold=0.5, floor=0.8)
    assert none["action"] == "kept" and none["precision"] is None and "undefined" in none["reason"]
    empty = check_threshold([], [], how="threshold", threshold=0.5, floor=0.8)
    assert empty["action"] == "kept" and "not measured" in empty["reason"]
    # a floor of 0 never acts
    off = check_threshold([[0.95], [0.7]], [False, True], how="threshold", threshold=0.5, floor=0.0)
    assert off["action"] == "kept"
    # vote: the threshold means what it means for a rollout (a majority of frames at or above it)
    vote = check_threshold([[0.9, 0.9, 0.1], [0.6, 0.6, 0.6]], [True, False], how="vote", threshold=0.5, floor=0.8)
    assert vote["action"] == "raised" and 0.6 < vote["threshold"] <= 0.9
    assert [combine(s, "vote", vote["threshold"])[0] for s in ([0.9, 0.9, 0.1], [0.6, 0.6, 0.6])] == [True, False]


def test_a_round_significantly_worse_than_the_best_so_far_is_not_carried_forward():
    from app.improve.rules import carry_forward

    good = [True] * 6 + [False] * 2
    # 6 seeds lost, none gained: exact McNemar p = 2 / 2^6 = 0.031 < 0.05
    worse = carry_forward({0: _eval_step(good)}, 1, _eval_step([False] * 8), alpha=0.05)
    assert (worse["carried_forward"], worse["next_from"], worse["best_round"]) == (False, 0, 0)
    assert worse["vs_best"]["lost"] == 6 and worse["vs_best"]["p_value"] == pytest.approx(2 / 64)
    # a drop that could be chance, an equal or a better round: carried forward
    assert carry_forward({0: _eval_step(good)}, 1, _eval_step([False] * 3 + [True] * 3 + [False] * 2),
                         alpha=0.05)["carried_forward"]
    assert carry_forward({0: _eval_step(good)}, 1, _eval_step(good), alpha=0.05)["next_from"] == 1
    assert carry_forward({0: _eval_step([False] * 8)}, 1, _eval_step(good), alpha=0.05)["carried_forward"]
    # the best so far, not the last round: round 1 fell (not significantly), round 2 is compared with round 0
    earlier = {0: _eval_step(good), 1: _eval_step([False] * 2 + [True] * 4 + [False] * 2)}
    two = carry_forward(earlier, 2, _eval_step([False] * 8), alpha=0.05)
    assert (two["carried_forward"], two["next_from"], two["best_round"]) == (False, 0, 0)
    # of equals the latest is the best (the line the run is on)
    assert carry_forward({0: _eval_step(good), 1: _eval_step(good)}, 2, _eval_step(good), alpha=0.05)["best_round"] == 1
    # alpha 0 turns the rule off; no flags (a robot's evaluation) or other seeds: no test, carried forward
    assert carry_forward({0: _eval_step(good)}, 1, _eval_step([False] * 8), alpha=0.0)["carried_forward"]
    robot = carry_forward({0: {"episodes": 8}}, 1, {"episodes": 8, "successes": 0}, alpha=0.05)
    assert robot["carried_forward"] and robot["next_from"] == 1 and "no per-seed" in robot["reason"]
    other = carry_forward({0: _eval_step(good)}, 1, _eval_step([False] * 4), alpha=0.05)
    assert other["carried_forward"] and other["best_round"] is None


def test_a_skipped_rounds_rollouts_are_never_selected(store):
    from recordings.selection import selection_for_round

    assert select_for_round(store, SelectionConfig(), 2, skip_rounds=[1])[0] == [0, 1, 7]
    assert select_for_round(store, SelectionConfig(), 2, skip_rounds=[1, 2])[0] == [0, 1]
    assert select_for_round(store, SelectionConfig(demos=False), 1, skip_rounds=[1])[0] == []
    assert selection_for_round(SelectionConfig(), 3, skip_rounds=[2])[1].round == [1, 3]


def _scored_store(path: Path, calibration: list[tuple[bool, float]], rollouts: list[float]) -> EpisodeStore:
    """Demos, calibration episodes (oracle label, the judge's P) and round-1 rollouts whose last frame encodes
    the P a `_PixelJudge` gives it."""
    rng = np.random.default_rng(3)
    store = EpisodeStore.open(path, mode="a", durable=False)
    store.append(_episode(rng, source="demo", oracle_success=True))
    for slot, (label, p) in enumerate(calibration):
        ep = _episode(rng, round=0, oracle_success=label, extra={"improve": {"phase": "calibration", "slot": slot}})
        ep.images["cam"][-1] = round(p * 255)
        store.append(ep)
    for slot, p in enumerate(rollouts):
        ep = _episode(rng, **_rollout(slot, 1, oracle_success=None))
        ep.images["cam"][-1] = round(p * 255)
        store.append(ep)
    return store


class _PixelJudge:
    """A completion model whose P(completed) is the frame's brightness (what `_scored_store` wrote)."""

    def score(self, requests):
        return [Reward(float(r.frames["current"].mean() / 255), "", {"yes": float(r.frames["current"].mean() / 255)})
                for r in requests]


def _improve_run(tmp_path: Path, store: EpisodeStore, **judge):
    from app.improve.loop import ImproveRun

    config = ImproveConfig(output_dir=tmp_path / "run", judge=JudgeConfig(**judge))
    run = ImproveRun(config)
    run.state = RunState.load_or_create(run.out, config.fingerprint())
    run.store, run._judge_model = store, _PixelJudge()
    return run


def test_the_judge_step_measures_its_precision_on_held_out_calibration_and_judges_at_the_raised_threshold(
        tmp_path, caplog):
    from app.improve.judge import calibration_split, held_out_calibration

    # every success above every failure, all above 0.5: at 0.5 the held-out failures cut precision to 50%
    calibration = [(True, p) for p in (0.9, 0.8, 0.76, 0.74, 0.72)] + [(False, p) for p in (0.7, 0.65, 0.6, 0.58, 0.55)]
    with _scored_store(tmp_path / "store", calibration, [0.6, 0.71, 0.95]) as store:
        judge = JudgeConfig(threshold=0.5)
        judge.train.dataset.val_fraction = 0.4  # two of each outcome held out
        run = _improve_run(tmp_path, store, threshold=0.5, train=judge.train)
        indices = list(range(1, 11))
        held_out = held_out_calibration(store, indices, run.config.judge, "oracle")
        # the judge's own split: the episodes it never trained on
        assert held_out == calibration_split(store, indices, run.config.judge, "oracle", 0.4, 0)[2]
        assert len(held_out) == 4 and sorted(store.record(i).meta.oracle_success for i in held_out) == [0, 0, 1, 1]
        # a judge not trained here never saw a calibration episode: all of them are held out
        backend = run.config.judge.backend
        backend = dataclasses.replace(backend, lite=dataclasses.replace(backend.lite, checkpoint="x"))
        pretrained = JudgeConfig(train_from_store=False, backend=backend)
        assert held_out_calibration(store, indices, pretrained, "oracle") == indices
        with caplog.at_level("INFO", logger="app.improve.loop"):
            info = run._judge(1)
    check = info["calibration_check"]
    lowest_success = min(p for (label, p), i in zip(calibration, indices) if label and i in held_out)
    assert check["held_out"] == held_out and check["episodes"] == 4
    assert (check["action"], check["precision"], check["recall"]) == ("raised", 0.5, 1.0)
    assert check["threshold"] == pytest.approx(lowest_success, abs=0.003) and check["precision_after"] == 1.0
    lines = [r.getMessage() for r in caplog.records]
    assert any(line.startswith("round 1 judge: precision 50.0%, recall 100.0% on 4 held-out calibration episodes")
               for line in lines)
    assert any("below judge.min_precision 80.0%: threshold raised from 0.5 to" in line for line in lines)
    # the rollouts were judged at the raised threshold: 0.6 and 0.71 rejected, 0.95 kept
    with EpisodeStore.open(tmp_path / "store", mode="r") as store:
        rolls = store.episodes(round=1)
        assert [r.meta.lrm_verdict for r in rolls] == [False, False, True]
        assert {r.meta.extra["judge"]["threshold"] for r in rolls} == {check["threshold"]}


def test_a_judge_below_the_floor_at_every_threshold_skips_the_rounds_training(tmp_path):
    # the failures score highest: no threshold keeps a success without them
    calibration = [(True, 0.6), (True, 0.62), (False, 0.9), (False, 0.95)]
    with _scored_store(tmp_path / "store", calibration, [0.7]) as store:
        judge = JudgeConfig()
        judge.train.dataset.val_fraction = 0.5
        run = _improve_run(tmp_path, store, train=judge.train)
        run.state.mark("train-0", {"checkpoint": "policy/round-0/checkpoints/last"})
        run.state.mark("judge-1", run._judge(1))
        assert run.state.get("judge-1")["calibration_check"]["action"] == "skip"
        # a selection that does not follow the judge (an oracle ablation reusing this state) is not skipped
        run.config.selection = SelectionConfig(rollouts="oracle")
        assert run._skipped_rounds(1) == []
        run.config.selection = SelectionConfig()
        trained = run._train(1)  # would fail without a policy to fine-tune: it trains nothing
        run.state.mark("train-1", trained)
    assert trained["skipped"] and trained["episodes"] == []
    assert trained["checkpoint"] == "policy/round-0/checkpoints/last"
    assert run._checkpoint(1) == run.out / "policy/round-0/checkpoints/last"


def test_the_report_says_what_the_rules_decided():
    steps = {"eval-0": _eval_step([True] * 6 + [False] * 2), "eval-1": _eval_step([False] * 8),
             "eval-2": _eval_step([True] * 6 + [False] * 2),
             "judge-1": {"calibration_check": {"episodes": 4, "successes": 2, "min_precision": 0.8,
                                               "configured_threshold": 0.5, "threshold": 0.74, "precision": 0.5,
                                               "recall": 1.0, "action": "raised", "precision_after": 1.0,
                                               "recall_after": 1.0}},
             "judge-2": {"calibration_check": {"episodes": 4, "successes": 2, "min_precision": 0.8,
                                               "configured_threshold": 0.5, "threshold": 0.5, "precision": 0.5,
                                               "recall": 1.0, "action": "skip"}}}
    from app.improve.rules import carry_forward

    steps["eval-1"]["carry"] = carry_forward({0: steps["eval-0"]}, 1, steps["eval-1"], alpha=0.05)
    steps["eval-2"]["carry"] = carry_forward({0: steps["eval-0"], 1: steps["eval-1"]}, 2, steps["eval-2"], alpha=0.05)
    report = build_report(_fake_config(), steps, None)
    assert report["rounds"][1]["eval"]["carry"]["carried_forward"] is False
    assert report["rounds"][1]["judge_check"]["threshold"] == 0.74
    lines = format_table(report).splitlines()
    assert lines[3].endswith("not carried forward") and not lines[2].endswith("not carried forward")
    assert not lines[4].endswith("not carried forward")
    assert ("round 1: not carried forward: significantly worse than round 0 (0 seeds gained, 6 lost of 8; exact McNemar"
            " p = 0.0312 < 0.05); round 2 starts from round 0's checkpoint") in lines
    assert ("round 1 judge: precision 50.0%, recall 100.0% on 4 held-out calibration episodes at threshold 0.5"
            " (floor 80.0%): threshold raised to 0.74 (precision 100.0%, recall 100.0% there)") in lines
    assert any(line.startswith("round 2 judge:") and line.endswith("selection skipped, no fine-tuning on judged"
                                                                     " rollouts this round") for line in lines)
    json.dumps(report)


def test_parameter_noise_is_for_the_small_actor_critic_only():
    with pytest.raises(ConfigError) as info:
        load_config(ROOT / "configs" / "improve" / "pickcube_pi05_gpu.yaml", ImproveConfig,
                    ["exploration.parameter_noise=0.1"])
    assert "exploration.parameter_noise perturbs the small actor-critic" in str(info.value)
    assert "\n" not in str(info.value)


def test_the_pushcube_config_explores_and_runs_three_rounds():
    config = load_config(ROOT / "configs" / "improve" / "pushcube_cpu.yaml", ImproveConfig)
    assert config.env.sim.env_id == "PushCube-v1" and config.rounds == 3 and config.demos.count == 10
    assert config.exploration.parameter_noise == 0.1 and config.policy.type == "bc"
    assert config.rollout.max_steps == 104 and config.judge.backend.type == "lite"
    # the oracle never decides where one of its episodes ends (issue 16, item 4)
    assert not config.rollout.stop_on_success and config.judge.watch_every == 0 and config.demos.hold_steps == 20
