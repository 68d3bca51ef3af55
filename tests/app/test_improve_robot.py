"""`lrm-robot improve` on the robot path, without hardware: robot_drivers' RobotEnv over LeRobot's SO-101 class on
the simulated motor bus, a RealSense camera replayed from a .bag, teleoperated-style demonstrations copied from a
store recorded first on the same env, the calibration waiting for operator labels, evaluation judged by the LRM
with an operator's verdict overriding it, no oracle number anywhere, and the config errors of a robot run."""

from __future__ import annotations

import io
import json
import sys
from pathlib import Path

import numpy as np
import pytest
import yaml

pytest.importorskip("pyrealsense2")
pytest.importorskip("robot_drivers.env")

from app.cli import main  # noqa: E402
from app.env_choice import EnvSection, build_env  # noqa: E402
from app.errors import UsageError  # noqa: E402
from app.improve.config import ImproveConfig  # noqa: E402
from app.improve.loop import EmergencyStop, ImproveRun  # noqa: E402
from app.improve.report import format_table  # noqa: E402
from app.rollout import RolloutConfig, run_rollout  # noqa: E402
from common.config import ConfigError, ConfigFile, load_config  # noqa: E402
from recordings.episode import Episode, EpisodeMeta  # noqa: E402
from recordings.store import EpisodeStore  # noqa: E402
from robot_drivers.arms.simulated_bus import SimulatedMotorsBus  # noqa: E402
from robot_drivers.config import RobotEnvConfig  # noqa: E402
from tests.app.simulated_robot import simulated_robot_yaml  # noqa: E402

ROOT = Path(__file__).resolve().parents[2]
TASK = "pick up the red cube"


@pytest.fixture(autouse=True)
def _fresh_simulated_devices():
    SimulatedMotorsBus.forget_devices()
    yield
    SimulatedMotorsBus.forget_devices()


def _robot_yaml(tmp_path: Path, *, wait_for_operator: bool = False) -> str:
    return simulated_robot_yaml(tmp_path, task=TASK, port="/dev/simulated-improve", arm_id="improve_arm",
                                wait_for_operator=wait_for_operator)


class ScriptedPolicy:
    """A teleoperator's stand-in: every joint moves a fixed step per tick (within the safety limits)."""

    camera_names: list[str] = []
    needs_images = False

    def __init__(self, step: np.ndarray) -> None:
        self.step = np.asarray(step, np.float32)

    def reset(self) -> None:
        pass

    def act(self, observation):
        return np.asarray(observation.state, np.float32) + self.step


def _record_demos(robot_yaml: str, path: Path) -> None:
    """Three demonstrations, one failure and one aborted episode, recorded through run_rollout on the robot env."""
    env = build_env(EnvSection(kind="robot", robot=ConfigFile(robot_yaml, RobotEnvConfig)))
    try:
        with EpisodeStore.open(path, mode="a", durable=False) as store:
            cfg = RolloutConfig(max_steps=8, time_limit_s=5.0, capture="every_step")
            for i, verdict in enumerate([None, True, False, None, True]):
                meta = EpisodeMeta(task=TASK, source="demo", policy_id="teleop", operator_verdict=verdict)
                run_rollout(env, ScriptedPolicy([2.0, -1.0, 1.0, 0.5, 0.0, 3.0 + i]), store, meta, config=cfg)
                env.end_episode()
            store.update_meta(3, aborted=True)
    finally:
        env.close()


@pytest.fixture(scope="module")
def teleop_demos(tmp_path_factory) -> Path:
    """The demonstrations store every run here copies from (read only), recorded once."""
    tmp = tmp_path_factory.mktemp("teleop")
    SimulatedMotorsBus.forget_devices()
    _record_demos(_robot_yaml(tmp), tmp / "teleop")
    SimulatedMotorsBus.forget_devices()
    return tmp / "teleop"


def _config(tmp_path: Path, robot_yaml: str, demos: Path, **changes) -> dict:
    data = {
        "output_dir": str(tmp_path / "run"),
        "env": {"kind": "robot", "robot": robot_yaml},
        "demos": {"source": "store", "store": str(demos), "count": 3},
        "policy": {
            "type": "bc",
            "train": {"policy": {"type": "actor_critic", "cameras": [], "hidden_dims": [16, 16], "chunk_size": 2,
                                 "n_action_steps": 2},
                      "steps": 20, "batch_size": 16, "val_fraction": 0.0, "checkpoint_every": 10},
            "finetune": {"steps": 10},
        },
        "judge": {"train": {"dataset": {"modalities": ["completion"], "num_keyframes": 3, "clip_fractions": [0.5],
                                        "val_fraction": 0.0},
                            "model": {"image_size": [32, 32], "cnn_channels": [4, 4], "feature_dim": 8,
                                      "hidden_dim": 8},
                            "train": {"steps": 10, "batch_size": 8}},
                  "calibration_episodes": 2, "calibration_labels": "operator"},
        "rounds": 1,
        "rollouts_per_round": 2,
        "rollout": {"max_steps": 6, "time_limit_s": 5.0, "capture": "on_demand", "stop_on_success": False},
        "eval": {"episodes": 2},
        "durable": False,
        "progress": False,
    }
    for key, value in changes.items():
        section, name = key.split(".")
        data[section][name] = value
    return data


def _load(tmp_path: Path, data: dict) -> ImproveConfig:
    path = tmp_path / "improve.yaml"
    path.write_text(yaml.safe_dump(data))
    return load_config(path, ImproveConfig)


def test_improve_rounds_on_a_simulated_so101_with_operator_labels_and_resume(tmp_path, teleop_demos):
    robot_yaml = _robot_yaml(tmp_path)
    demos = teleop_demos
    config = _load(tmp_path, _config(tmp_path, robot_yaml, demos))
    out = Path(config.output_dir)

    # 1. the calibration stops the run until an operator labels its episodes
    with pytest.raises(UsageError, match="no operator verdict yet"):
        ImproveRun(config).run()
    steps = json.loads((out / "state.json").read_text())["steps"]
    assert list(steps) == ["demos", "train-0"]
    with EpisodeStore.open(out / "store", mode="a", durable=False) as store:
        copied = store.episodes(source="demo")
        # the successful ones only: no verdict (recorded as demos) or the operator's success; not the
        # operator's failure (2), not the aborted one (3)
        assert [r.meta.extra["improve"]["source_index"] for r in copied] == [0, 1, 4]
        assert all(r.meta.task == TASK and r.length == 9 for r in copied)
        calibration = [r for r in store.episodes(round=0) if r.meta.extra["improve"]["phase"] == "calibration"]
        assert len(calibration) == 2 and all(r.meta.source == "robot" for r in calibration)
        assert all(r.meta.oracle_success is None and "summary" in r.meta.extra["robot"] for r in calibration)
        for rec, label in zip(calibration, [True, False], strict=True):
            store.update_meta(rec.index, operator_verdict=label)

    # 2. the same command continues; an emergency stop in the first round's second rollout ends it
    def estop_at(name, info):
        if name == "rollout-step" and info["phase"] == "rollout" and info["slot"] == 1 and info["step"] == 3:
            run.env.emergency_stop("test")

    run = ImproveRun(config, events=estop_at)
    with pytest.raises(EmergencyStop, match="emergency stop during rollout round 1 slot 1"):
        run.run()
    steps = json.loads((out / "state.json").read_text())["steps"]
    assert list(steps) == ["demos", "train-0", "calibration", "judge-train", "eval-0"]
    assert steps["demos"]["demos"] == 3  # counted, not copied again
    assert steps["judge-train"]["trained_on"]["calibration_labels"] == "operator"

    # 3. and again: the stopped slot runs again, nothing is duplicated
    report = ImproveRun(config).run()
    assert report["finished"] and report["success_measure"] == "operator/LRM-judged"
    with EpisodeStore.open(out / "store", mode="r") as store:
        assert len(store.episodes(source="demo")) == 3
        rolls = [r for r in store.episodes(round=1) if r.meta.extra["improve"]["phase"] == "rollout"]
        assert [(r.meta.extra["improve"]["slot"], r.meta.aborted) for r in rolls] == [(0, False), (1, True), (1, False)]
        assert rolls[1].meta.extra["rollout"]["status"] == "emergency_stop"
        assert all(r.meta.source == "robot" and r.meta.oracle_success is None for r in rolls)
        assert all(isinstance(r.meta.lrm_verdict, bool) for r in (rolls[0], rolls[2]))
    with EpisodeStore.open(out / "eval-store", mode="a", durable=False) as evals:
        for r in (0, 1):
            eps = [x for x in evals.episodes(round=r) if x.meta.extra["improve"]["phase"] == "eval"]
            assert sorted(x.meta.extra["improve"]["slot"] for x in eps) == [0, 1]
            assert all(isinstance(x.meta.lrm_verdict, bool) and x.meta.policy_id == f"round-{r}" for x in eps)
        first = evals.episodes(round=1)[0]
        evals.update_meta(first.index, operator_verdict=not first.meta.lrm_verdict)  # the operator overrides
        lrm_success = sum(bool(x.meta.lrm_verdict) for x in evals.episodes(round=1))
    for entry in report["rounds"]:
        assert entry["eval"]["measure"] == "operator/LRM-judged" and entry["eval"]["episodes"] == 2
        assert entry["eval"]["judged_by"] == {"operator": 0, "lrm": 2}
    rollouts = next(e for e in report["rounds"] if e["round"] == 1)["rollouts"]
    assert rollouts["episodes"] == 3 and rollouts["aborted"] == 1 and rollouts["lrm_filter"] is None  # no labels yet
    text = json.dumps(report) + format_table(report)
    assert "oracle" not in text.replace("operator", "") and "dense_reward" not in text
    assert "n/a" in format_table(report)

    # 4. a finished run prints its report again, with the operator's verdict counting over the LRM's
    again = ImproveRun(config).run()
    ev = next(e for e in again["rounds"] if e["round"] == 1)["eval"]
    assert ev["judged_by"] == {"operator": 1, "lrm": 1}
    assert ev["successes"] == lrm_success + (1 if not first.meta.lrm_verdict else -1)
    assert json.loads((out / "report.json").read_text())["rounds"] == json.loads(json.dumps(again["rounds"]))


def test_demonstrations_that_do_not_fit_the_robot_are_one_line_errors(tmp_path):
    robot_yaml = _robot_yaml(tmp_path)
    rng = np.random.default_rng(0)
    wrong = tmp_path / "wrong"
    with EpisodeStore.open(wrong, mode="a", durable=False) as store:
        store.append(Episode(meta=EpisodeMeta(task=TASK, source="demo"),
                             images={"front": rng.integers(0, 255, (4, 24, 32, 3), dtype=np.uint8)},
                             state=np.zeros((4, 6), np.float32), action=np.zeros((4, 6), np.float32),
                             timestamp=np.arange(4) / 30.0))
    config = _load(tmp_path, _config(tmp_path, robot_yaml, wrong, **{"demos.count": 1}))
    with pytest.raises(UsageError) as info:
        ImproveRun(config).run()
    assert "camera 'front' is 24x32, the env's is 48x64" in str(info.value) and "\n" not in str(info.value)
    data = _config(tmp_path, robot_yaml, tmp_path / "nowhere", **{"demos.count": 1})
    config = _load(tmp_path, {**data, "output_dir": str(tmp_path / "run2")})
    with pytest.raises(UsageError, match="demos.store: .*nowhere"):
        ImproveRun(config).run()


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"demos.source": "plan", "demos.store": None}, "demos.source: plan (motion planning) needs the simulator"),
        ({"judge.calibration_labels": "oracle"}, "judge.calibration_labels: oracle needs the simulator"),
        ({"rollout.stop_on_success": True}, "rollout.stop_on_success needs the simulator's oracle"),
        ({"rollout.time_limit_s": None}, "rollout.time_limit_s is required on a robot"),
        ({"selection.rollouts": "oracle"}, "selection.rollouts: oracle needs the simulator"),
        ({"demos.store": None}, "demos.store names no store"),
    ],
)
def test_robot_config_errors_are_one_line(tmp_path, changes, message):
    data = _config(tmp_path, str(ROOT / "configs" / "robot" / "so101.yaml"), tmp_path / "teleop")  # read with the config
    data["selection"] = {}
    for key, value in changes.items():
        section, name = key.split(".")
        data[section][name] = value
    with pytest.raises(ConfigError) as info:
        _load(tmp_path, data)
    assert message in str(info.value) and "\n" not in str(info.value)


def test_the_so101_example_config_loads_and_validates():
    config = load_config(ROOT / "configs" / "improve" / "so101_robot.yaml", ImproveConfig)
    assert config.env.is_robot and (ROOT / config.env.robot).is_file()
    robot = load_config(ROOT / config.env.robot, RobotEnvConfig)
    assert robot.arm.type == "so101_follower" and "front" in robot.cameras
    assert config.demos.source == "store" and config.demos.store
    assert config.judge.backend.type == "lite" and config.judge.train_from_store
    assert config.judge.calibration_episodes > 0 and config.judge.calibration_labels == "operator"
    assert config.rollouts_per_round == 60 and config.rollout.time_limit_s == 30.0
    assert not config.rollout.stop_on_success and config.eval.episodes > 0
    assert config.judge.camera in (None, *robot.cameras)
    assert config.policy.train_config(Path("s"), Path("o"), [], round_=1, init_from=Path("prev"))


def test_the_cli_asks_the_operator_for_each_reset_and_verdict(tmp_path, teleop_demos, monkeypatch, capsys):
    demos = teleop_demos
    robot_yaml = _robot_yaml(tmp_path, wait_for_operator=True)  # the reset phase waits for the operator
    data = _config(tmp_path, robot_yaml, demos)
    path = tmp_path / "improve.yaml"
    path.write_text(yaml.safe_dump(data))
    # 2 calibration, 2 eval-0, 2 rollouts, 2 eval-1 episodes: Enter for each reset, then the verdict
    verdicts = ["y", "n", "y", "", "n", "y", "y", "n"]
    assert main(["improve", "--config", str(path)]) == 2  # nobody would confirm the resets
    assert "run with --operator" in capsys.readouterr().err
    monkeypatch.setattr(sys, "stdin", io.StringIO("".join(f"\n{v}\n" for v in verdicts)))
    assert main(["improve", "--config", str(path), "--operator"]) == 0
    captured = capsys.readouterr()
    assert captured.err.count("reset the scene") == 8 and captured.err.count("success? [y/n") == 8
    assert "success, operator/LRM-judged" in captured.out
    out = Path(data["output_dir"])
    with EpisodeStore.open(out / "store", mode="r") as store:
        asked = [r for r in store.episodes() if r.meta.source == "robot"]
        assert [r.meta.operator_verdict for r in asked] == [True, False, False, True]  # calibration, rollouts
    with EpisodeStore.open(out / "eval-store", mode="r") as evals:
        assert [r.meta.operator_verdict for r in evals.episodes()] == [True, None, True, False]
    report = json.loads((out / "report.json").read_text())
    assert [e["eval"]["judged_by"] for e in report["rounds"]] == [{"operator": 1, "lrm": 1}, {"operator": 2, "lrm": 0}]
    assert [e["eval"]["successes"] for e in report["rounds"]][1] == 1
    rollouts = report["rounds"][1]["rollouts"]
    assert rollouts["operator_verdicts"] == 2 and rollouts["lrm_filter"]["tp"] + rollouts["lrm_filter"]["fn"] == 1


def test_an_arm_fault_ends_the_run_in_one_line_and_the_slot_runs_again(tmp_path, teleop_demos):
    robot_yaml = _robot_yaml(tmp_path)
    demos = teleop_demos
    data = _config(tmp_path, robot_yaml, demos, **{"judge.calibration_episodes": 0, "eval.episodes": 0})
    config = _load(tmp_path, data)

    def unplug_at(name, info):
        if name == "rollout-step" and info["phase"] == "rollout" and info["slot"] == 0 and info["step"] == 2:
            run.env.arm.robot.bus.device.unplug()

    run = ImproveRun(config, events=unplug_at)
    with pytest.raises(UsageError) as failure:
        run.run()
    assert "robot fault (arm) during rollout round 1 slot 0" in str(failure.value)
    assert "\n" not in str(failure.value)
    run.env.arm.robot.bus.device.replug()  # the cable is back
    report = ImproveRun(config).run()
    assert report["finished"]
    with EpisodeStore.open(Path(config.output_dir) / "store", mode="r") as store:
        rolls = [r for r in store.episodes(round=1) if r.meta.extra["improve"]["phase"] == "rollout"]
        assert [(r.meta.extra["improve"]["slot"], r.meta.aborted, r.meta.extra["rollout"]["status"]) for r in rolls] \
            == [(0, True, "error"), (0, False, "step_limit"), (1, False, "step_limit")]
        assert "ArmFault" in rolls[0].meta.extra["rollout"]["reason"]


def test_the_terminal_operator_asks_again_on_a_bad_answer_and_stops_when_input_ends(tmp_path):
    from app.commands.improve import TerminalOperator

    with EpisodeStore.open(tmp_path / "store", mode="a", durable=False) as store:
        store.append(Episode(meta=EpisodeMeta(task=TASK, source="robot"), images={},
                             state=np.zeros((2, 6), np.float32), action=np.zeros((2, 6), np.float32),
                             timestamp=np.arange(2) / 30.0))
        prompts = io.StringIO()
        operator = TerminalOperator(io.StringIO("maybe\nY\n"), prompts)
        operator.run = type("Run", (), {"store": store, "eval_store": None})()
        operator.events("rollout-done", {"phase": "rollout", "round": 1, "slot": 0, "index": 0})
        assert store.record(0).meta.operator_verdict is True and "answer y, n or just Enter" in prompts.getvalue()
        with pytest.raises(UsageError, match="input ended"):
            operator.ready()


def test_demonstrations_from_a_lerobot_dataset(tmp_path, teleop_demos):
    """Teleoperated demos as LeRobot writes them: a LeRobotDataset folder (here exported from a store)."""
    robot_yaml = _robot_yaml(tmp_path)
    demos = teleop_demos
    with EpisodeStore.open(demos, mode="r") as store:
        dataset = store.export_lerobot(tmp_path / "lerobot", fps=50, include_aborted=True)  # as recorded, aborted too
    data = _config(tmp_path, robot_yaml, dataset, **{"judge.calibration_episodes": 0, "eval.episodes": 0})
    config = _load(tmp_path, {**data, "rounds": 0})
    assert ImproveRun(config).run()["finished"]
    with EpisodeStore.open(demos, mode="r") as theirs, \
            EpisodeStore.open(Path(config.output_dir) / "store", mode="r") as mine:
        copied = mine.episodes()
        # LeRobot episodes 0..4 are the store's; the exporter's sidecar keeps the verdicts and the aborted flag
        assert [r.meta.extra["improve"]["source_index"] for r in copied] == [0, 1, 4]
        for rec in copied:
            original, ep = theirs.load_episode(rec.meta.extra["improve"]["source_index"]), mine.load_episode(rec.index)
            assert rec.meta.source == "demo" and rec.meta.task == TASK
            np.testing.assert_array_equal(ep.images["front"], original.images["front"])  # lossless images
            np.testing.assert_array_equal(ep.state, original.state)
            np.testing.assert_array_equal(ep.action, original.action)


def test_operator_labels_earlier_calibration_episodes_when_the_run_resumes(tmp_path, teleop_demos, monkeypatch, capsys):
    robot_yaml = _robot_yaml(tmp_path)
    demos = teleop_demos
    data = {**_config(tmp_path, robot_yaml, demos, **{"eval.episodes": 0}), "rounds": 0}
    path = tmp_path / "improve.yaml"
    path.write_text(yaml.safe_dump(data))
    assert main(["improve", "--config", str(path)]) == 2  # recorded, not labelled: the run stops
    assert "have no operator verdict yet" in capsys.readouterr().err
    monkeypatch.setattr(sys, "stdin", io.StringIO("y\nn\n"))
    assert main(["improve", "--config", str(path), "--operator"]) == 0
    assert capsys.readouterr().err.count("calibration round 0 slot") == 2
    with EpisodeStore.open(Path(data["output_dir"]) / "store", mode="r") as store:
        assert [r.meta.operator_verdict for r in store.episodes(round=0, source="robot")] == [True, False]
