"""The operator app driven by Textual's own pilot over a real ManiSkill env, a real store and a real lite judge.

Keys start and review real rollouts end to end (rollout -> live rewards ->
judge -> operator override -> fine-tune), the override lands in the store
next to the LRM's verdict, and the emergency stop wins while paused and
while the rollout thread is inside a step.
"""

from __future__ import annotations

import dataclasses
import json
import threading
import time
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from policies.factory import PolicyConfig
from app.operator.app import OperatorApp
from app.operator.config import EnvSection, JudgeSection, LiveRewardsConfig, OperateConfig, OperatorPolicy
from app.operator.events import RoundStats
from app.operator.session import OperatorSession
from app.operator.widgets import PhaseBanner, RewardTraces, RolloutPanel, RoundDashboard
from recordings.selection import SelectionConfig
from app.rollout import RolloutConfig
from lrm.backends import RewardBackendConfig
from lrm.backends.lite_config import LiteBackendConfig
from recordings.store import EpisodeStore
from sim.maniskill_env import SimEnvConfig

CAMERA = 32  # pixels: the tests check the plumbing, not image content


def sim_config() -> SimEnvConfig:
    return SimEnvConfig(env_id="PickCube-v1", cameras=["base_camera"], camera_width=CAMERA, camera_height=CAMERA)


def make_lite_judge(path: Path) -> Path:
    """A real compact reward model with random weights (seeded), saved the way train_lite saves one."""
    import torch

    from lrm.backends.lite import LiteRewardModel
    from lrm.backends.lite_config import LiteConfig

    torch.manual_seed(0)
    model = LiteRewardModel(LiteConfig(image_size=(32, 32), cnn_channels=[8, 8], feature_dim=16, hidden_dim=16,
                                       task_embedding_dim=0))
    return model.save_pretrained(path)


def operate_config(out: Path, judge: Path, **overrides: Any) -> OperateConfig:
    values: dict[str, Any] = dict(
        output_dir=out,
        env=EnvSection(sim=sim_config()),
        policy=OperatorPolicy(improve=PolicyConfig(
            train={"steps": 5, "batch_size": 8, "val_fraction": 0.0, "policy": {"hidden_dims": [16]}})),
        judge=JudgeSection(backend=RewardBackendConfig(type="lite", lite=LiteBackendConfig(checkpoint=str(judge)))),
        rewards=LiveRewardsConfig(every=2),
        rounds=1,
        rollouts_per_round=2,
        rollout=RolloutConfig(max_steps=6, time_limit_s=None, capture="every_step"),
        durable=False,
    )
    values.update(overrides)
    return OperateConfig(**values)


class EnvProxy:
    """The real env, shared between tests (close() does not close it); optionally stalls inside one step.

    `stall_at=k`: step k (0-based) signals `in_step` and waits for `release`, the way a slow robot
    command keeps the rollout thread inside env.step. `emergency_stop()` records when it was called.
    """

    def __init__(self, env: Any, stall_at: int | None = None) -> None:
        self._env = env
        self.stall_at = stall_at
        self.steps = 0
        self.resets = 0
        self.in_step = threading.Event()
        self.release = threading.Event()
        self.estops: list[dict[str, Any]] = []
        self._inside = False

    def __getattr__(self, name: str) -> Any:
        return getattr(self._env, name)

    def reset(self, seed: int | None = None) -> Any:
        self.steps = 0
        self.resets += 1
        return self._env.reset(seed=seed)

    def step(self, action: Any) -> Any:
        self._inside = True
        try:
            if self.steps == self.stall_at:
                self.in_step.set()
                self.release.wait(30)
            out = self._env.step(action)
            self.steps += 1
            return out
        finally:
            self._inside = False

    def emergency_stop(self) -> None:
        self.estops.append({"during_step": self._inside, "thread": threading.current_thread().name})

    def close(self) -> None:
        pass


async def wait_for(pilot: Any, condition: Any, timeout: float = 90.0, what: str = "condition") -> None:
    """Let the app run until `condition()` holds (the session works in its own thread meanwhile)."""
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await pilot.pause(0.05)


pytestmark = [pytest.mark.sim, pytest.mark.anyio, pytest.mark.filterwarnings("ignore::DeprecationWarning:mani_skill")]


@pytest.fixture(scope="module")
def real_env():
    from sim.maniskill_env import make_sim_env

    env = make_sim_env(sim_config())
    env.reset(seed=0)
    env.capture()  # the first render compiles the shaders (seconds on lavapipe); do it once per module
    yield env
    env.close()


@pytest.fixture(scope="module")
def judge(tmp_path_factory) -> Path:
    return make_lite_judge(tmp_path_factory.mktemp("judge") / "lite")


def _app(config: OperateConfig, env: EnvProxy) -> tuple[OperatorApp, OperatorSession]:
    session = OperatorSession(config, env_factory=lambda cfg: env)
    return OperatorApp(session), session


async def _settled(pilot: Any, value: Any, quiet: float = 0.5, timeout: float = 30.0) -> Any:
    """The value once it has not changed for `quiet` seconds."""
    deadline = time.monotonic() + timeout
    last = value()
    while time.monotonic() < deadline:
        await pilot.pause(quiet)
        if value() == last:
            return last
        last = value()
    raise AssertionError("the value kept changing")


def _banner(app: OperatorApp) -> str:
    return str(app.query_one(PhaseBanner).render())


def _verdict_line(app: OperatorApp) -> str:
    return str(app.query_one(RolloutPanel).query_one("#verdict").render())


async def test_keys_run_real_rollouts_and_the_override_lands_in_the_store(real_env, judge, tmp_path):
    config = operate_config(tmp_path / "run", judge, rerun_dir=tmp_path / "auto-rrd")
    app, session = _app(config, EnvProxy(real_env))
    async with app.run_test(size=(120, 40)) as pilot:
        await wait_for(pilot, lambda: app.phase == "ready", what="the ready phase")
        assert session.store.num_episodes == 0  # nothing moves before the operator says so
        await pilot.press("n")
        await wait_for(pilot, lambda: app.phase == "review", what="the first review")
        assert app.last_episode == 0
        # the sparklines end at the terminal frame (6 steps + the frame after the last one)
        live = dict(app.query_one(RewardTraces).series)
        assert len(live["lite_progress"]) == 7
        assert "P(completed)=" in _verdict_line(app) and "operator: —" in _verdict_line(app)
        lrm0 = session.store.record(0).meta.lrm_verdict
        assert lrm0 is not None
        await pilot.press("f" if lrm0 else "s")  # the operator disagrees with the LRM
        await wait_for(pilot, lambda: "operator: —" not in _verdict_line(app), what="the override on screen")
        await pilot.press("w")  # save the reviewed episode as .rrd
        rrd = config.output_dir / "rerun" / "episode-0.rrd"
        await wait_for(pilot, lambda: "episode 0 (7 frames)" in str(app.query_one("#notice").render()), what="rrd")
        await pilot.press("n")
        await wait_for(pilot, lambda: app.phase == "review" and app.last_episode == 1, what="the second review")
        await pilot.press("s")
        await wait_for(pilot, lambda: "operator: success" in _verdict_line(app), what="the second mark")
        await pilot.press("n")
        await wait_for(pilot, lambda: app.phase == "done", timeout=120, what="the end of the round")
        stats = app.query_one(RoundDashboard).stats[1]
        table = app.query_one(RoundDashboard).query_one("DataTable")
        assert table.row_count == 1
    assert session.done.wait(30)
    assert rrd.stat().st_size > 0

    with EpisodeStore.open(config.store_path, mode="r") as store:
        assert store.num_episodes == 2
        first, second = store.record(0).meta, store.record(1).meta
        ep = store.load_episode(0)
    # the override is stored and the LRM's own verdict and score are kept beside it
    assert first.operator_verdict is (not lrm0) and first.lrm_verdict is lrm0
    assert 0.0 < first.lrm_score < 1.0 and first.extra["judge"]["frames"] == [6]
    assert second.operator_verdict is True and second.lrm_verdict is not None
    assert first.extra["operator"] == {"round": 1, "slot": 0} and first.round == 1
    # live reward traces went into the store every 2 steps (NaN between queries), on the camera's frames
    # (next to the simulator's own traces, which every sim rollout records at every frame)
    assert sorted(ep.rewards) == ["dense_reward", "lite_completion", "lite_progress", "success"]
    assert not np.isnan(ep.rewards["dense_reward"]).any()
    queried = ~np.isnan(ep.rewards["lite_progress"])
    assert queried.tolist() == [True, False, True, False, True, False, True]
    assert len(ep) == 7 and ep.images["base_camera"][3].any()
    # the dashboard and the report agree with the store: accepted = verdicts that count
    accepted = int(bool(first.accepted)) + 1
    assert stats.rollouts == 2 and stats.accepted == accepted and stats.operator_marked == 2
    assert stats.selected == accepted and stats.train_loss is not None and np.isfinite(stats.train_loss)
    report = json.loads((config.output_dir / "operate-report.json").read_text())
    assert report["rounds"][0]["train_loss"] == stats.train_loss
    assert (config.output_dir / "policy" / "round-1" / "checkpoints" / "last").is_dir()
    # the saved .rrd: every camera frame, and each reward trace at its queried frames with the stored values
    frames, traces = _read_rrd(rrd)
    assert frames == list(range(7))
    stored = ep.rewards["lite_progress"]
    assert traces["/reward/lite_progress"] == [(t, pytest.approx(float(stored[t]))) for t in (0, 2, 4, 6)]
    assert live["lite_progress"][-1] == pytest.approx(float(stored[6]))
    # the automatic .rrd is written once the operator has given the verdict, and carries it
    assert '"operator_verdict": ' + json.dumps(not lrm0) in _rrd_texts(tmp_path / "auto-rrd" / "episode-0.rrd")


def _rrd_texts(path: Path) -> str:
    """Every text logged in a recording (the episode's metadata document among them), joined."""
    from rerun.experimental import RrdReader

    out = []
    for chunk in RrdReader(path).store().stream().to_chunks():
        batch = chunk.to_record_batch()
        for name in batch.column_names:
            out += [str(v) for v in batch.column(name).to_pylist() if isinstance(v, (str, list))]
    return "\n".join(out)


def _read_rrd(path: Path) -> tuple[list[int], dict[str, list[tuple[int, float]]]]:
    from rerun.experimental import RrdReader

    frames: list[int] = []
    traces: dict[str, list[tuple[int, float]]] = {}
    for chunk in RrdReader(path).store().stream().to_chunks():
        batch = chunk.to_record_batch()
        if chunk.entity_path == "/camera/base_camera":
            frames += batch.column("frame").to_pylist()
        elif chunk.entity_path.startswith("/reward/"):
            values = [v[0] for v in batch.column("Scalars:scalars").to_pylist()]
            traces.setdefault(chunk.entity_path, []).extend(zip(batch.column("frame").to_pylist(), values, strict=True))
    return sorted(frames), {k: sorted(v) for k, v in traces.items()}


async def test_rerecord_discards_and_abort_keeps_the_frames(real_env, judge, tmp_path):
    config = operate_config(tmp_path / "run", judge, auto_next=True, finetune=False, rollouts_per_round=1,
                            rollout=RolloutConfig(max_steps=400, time_limit_s=None, capture="every_step"))
    env = EnvProxy(real_env)
    app, session = _app(config, env)
    async with app.run_test(size=(120, 40)) as pilot:
        await wait_for(pilot, lambda: app.phase == "rollout" and env.steps >= 2, what="the first steps")
        await pilot.press("r")
        await wait_for(pilot, lambda: env.resets == 2 and env.steps >= 3, what="the same slot again")
        await pilot.press("a")
        await wait_for(pilot, lambda: app.phase == "done", timeout=120, what="the end")
    assert env.resets == 2  # the discarded try, then the aborted one
    with EpisodeStore.open(config.store_path, mode="r") as store:
        assert store.num_episodes == 1  # the discarded try left nothing behind
        meta, length = store.record(0).meta, store.record(0).length
    assert meta.extra["operator"]["slot"] == 0 and meta.seed == config.rollout_seed  # the same slot, the same seed
    assert meta.aborted and meta.extra["rollout"]["status"] == "aborted" and meta.lrm_verdict is None
    assert length == meta.extra["rollout"]["steps"] + 1 >= 4  # every frame kept, plus the terminal frame


async def test_emergency_stop_wins_over_pause(real_env, judge, tmp_path):
    config = operate_config(tmp_path / "run", judge, auto_next=True, rollouts_per_round=3,
                            rollout=RolloutConfig(max_steps=400, time_limit_s=None, capture="every_step"))
    env = EnvProxy(real_env)
    app, session = _app(config, env)
    async with app.run_test(size=(120, 40)) as pilot:
        await wait_for(pilot, lambda: app.phase == "rollout" and env.steps >= 3, what="a running rollout")
        await pilot.press("p")
        await wait_for(pilot, lambda: app.paused and "PAUSED" in _banner(app), what="the pause")
        held = await _settled(pilot, lambda: env.steps)  # a step already under way may still finish
        await pilot.pause(1.0)
        assert env.steps == held  # paused means no step
        await pilot.press("e")
        await wait_for(pilot, session.done.is_set, what="the session to stop")
        await pilot.pause(0.1)
        assert app.phase == "stopped" and "EMERGENCY STOP" in _banner(app)
        await pilot.press("p", "n", "s")  # nothing restarts a stopped session
        await pilot.pause(0.2)
        assert app.phase == "stopped" and session.paused and env.steps == held  # p did not resume it
        # the keys that can no longer act are shown as such (greyed out); leaving still works
        assert app.check_action("next", ()) is None and app.check_action("mark", (True,)) is None
        assert app.check_action("quit_session", ()) is True
    # the report the CLI announces is there, with the phase it ended in
    assert json.loads((config.output_dir / "operate-report.json").read_text())["phase"] == "stopped"
    assert env.estops and env.estops[0]["during_step"] is False
    with EpisodeStore.open(config.store_path, mode="r") as store:
        assert store.num_episodes == 1  # no further rollout started
        meta, length = store.record(0).meta, store.record(0).length
    assert meta.aborted and meta.extra["rollout"]["status"] == "emergency_stop"
    assert meta.extra["rollout"]["steps"] == held and length == held + 1  # frames kept, plus the terminal frame


async def test_emergency_stop_reaches_the_env_during_a_step(real_env, judge, tmp_path):
    config = operate_config(tmp_path / "run", judge, auto_next=True,
                            rollout=RolloutConfig(max_steps=50, time_limit_s=None, capture="every_step"))
    env = EnvProxy(real_env, stall_at=3)
    app, session = _app(config, env)
    async with app.run_test(size=(120, 40)) as pilot:
        await wait_for(pilot, env.in_step.is_set, what="the rollout thread inside step 3")
        await pilot.press("e")
        # the env heard the stop while its step was still running, from the app's thread, not after it
        assert env.estops[0]["during_step"] is True and not env.release.is_set()
        await wait_for(pilot, lambda: "EMERGENCY STOP" in _banner(app), what="the stop on screen")
        env.release.set()
        await wait_for(pilot, session.done.is_set, what="the session to stop")
        assert app.phase == "stopped"
    with EpisodeStore.open(config.store_path, mode="r") as store:
        assert store.num_episodes == 1
        meta = store.record(0).meta
    assert meta.aborted and meta.extra["rollout"]["status"] == "emergency_stop"
    assert meta.extra["rollout"]["steps"] == 4  # the step in flight finished; no step after it


class CrashingEnv(EnvProxy):
    """The real env until its `crash_at`-th reset, which fails the way a simulator or robot process dies."""

    def __init__(self, env: Any, crash_at: int) -> None:
        super().__init__(env)
        self.crash_at = crash_at

    def reset(self, seed: int | None = None) -> Any:
        if self.resets + 1 == self.crash_at:
            raise RuntimeError("simulated crash")
        return super().reset(seed=seed)


def test_a_crashed_round_resumes_mid_round_as_improve_does(real_env, judge, tmp_path):
    """A session that dies after two of three rollouts: the next continues round 1 at slot 2, then fine-tunes."""
    config = operate_config(tmp_path / "out", judge, rollouts_per_round=3, auto_next=True,
                            rewards=LiveRewardsConfig(enabled=False), selection=SelectionConfig(rollouts="all"))
    seen = []
    crashed = OperatorSession(config, env_factory=lambda cfg: CrashingEnv(real_env, crash_at=3), emit=seen.append)
    crashed.run()
    assert crashed.phase == "error"
    with EpisodeStore.open(config.store_path, mode="r") as store:
        assert [(r.meta.round, r.meta.extra["improve"]["slot"]) for r in store.episodes()] == [(1, 0), (1, 1)]
    assert not (tmp_path / "out" / "policy").exists()

    resumed = OperatorSession(config, env_factory=lambda cfg: EnvProxy(real_env), emit=seen.append)
    resumed.run()
    assert resumed.phase == "done", resumed.phase
    # the dashboard's running counts after each finished rollout, the resumed session's counting the store's
    live = [(s.round, s.rollouts) for s in seen if isinstance(s, RoundStats) and s.live]
    assert live == [(1, 1), (1, 2), (1, 3)]
    with EpisodeStore.open(config.store_path, mode="r") as store:
        slots = [(r.meta.round, r.meta.extra["improve"]["slot"], r.meta.seed) for r in store.episodes()]
        assert all(r.meta.lrm_verdict is not None for r in store.episodes())
    seed0 = config.rollout_seed
    assert slots == [(1, 0, seed0), (1, 1, seed0 + 1), (1, 2, seed0 + 2)]  # the missing slot, its own seed
    assert [s.round for s in resumed.rounds] == [1] and resumed.rounds[0].rollouts == 3
    assert (tmp_path / "out" / "policy" / "round-1" / "checkpoints" / "last").is_dir()

    # the output directory moved whole: a new session finds round 1's fine-tuned policy there and goes on from it
    (tmp_path / "out").rename(tmp_path / "moved")
    recorded = json.loads((tmp_path / "moved" / "operate-state.json").read_text())["steps"]["train-1"]["checkpoint"]
    assert not Path(recorded).is_absolute()
    report = json.loads((tmp_path / "moved" / "operate-report.json").read_text())
    assert report["store"] == "store" and not Path(report["checkpoint"]).is_absolute()
    moved = dataclasses.replace(config, output_dir=tmp_path / "moved")
    later = OperatorSession(moved, env_factory=lambda cfg: EnvProxy(real_env))
    try:
        later._setup()
        assert later._first_round() == 2
        assert later.checkpoint == tmp_path / "moved" / "policy" / "round-1" / "checkpoints" / "last"
    finally:
        later._close()


def test_an_improve_run_provides_the_policy_and_the_judge(tmp_path, judge):
    run = tmp_path / "improve"
    run.mkdir()
    steps = {"train-0": {"checkpoint": str(run / "p0")}, "train-2": {"checkpoint": str(run / "p2")},
             "train-1": {"checkpoint": str(run / "p1")}, "judge-train": {"checkpoint": str(run / "judge")}}
    (run / "state.json").write_text(json.dumps({"format": "lrm-robot-improve-state", "steps": steps}))
    config = operate_config(tmp_path / "out", judge, improve_run=run)
    config.judge.backend.lite.checkpoint = ""
    resolved = config.resolved()
    assert resolved.policy.checkpoint == str(run / "p2")  # the newest round's policy
    assert resolved.judge.backend.lite.checkpoint == str(run / "judge")
    assert resolved.store_path == run / "store"
    (run / "state.json").write_text(json.dumps({"steps": {}}))
    with pytest.raises(ValueError, match="no trained policy"):
        config.resolved()


def test_cli_bad_configs_are_one_line_errors(tmp_path, capsys):
    from app.cli import main

    cfg = tmp_path / "op.yaml"
    cfg.write_text("judge:\n  backend:\n    type: lite\n    lite:\n      checkpoint: /nonexistent/lite\n")
    assert main(["operate", "--config", str(cfg)]) == 2
    err = capsys.readouterr().err.strip()
    assert "\n" not in err and "judge.backend.lite.checkpoint: /nonexistent/lite does not exist" in err
    cfg.write_text("env:\n  kind: robot\n")
    assert main(["operate", "--config", str(cfg)]) == 2
    assert "env.robot names no robot YAML" in capsys.readouterr().err
    cfg.write_text("rewards:\n  every: 0\n")
    assert main(["operate", "--config", str(cfg)]) == 2
    assert "rewards.every" in capsys.readouterr().err


def test_cli_headless_run_saves_rrd_and_prints_the_rounds(tmp_path, judge, capsys):
    import yaml

    from app.cli import main
    from common.config import config_to_dict

    config = operate_config(tmp_path / "run", judge, finetune=False, rollouts_per_round=1,
                            rollout=RolloutConfig(max_steps=4, time_limit_s=None, capture="every_step"))
    path = tmp_path / "operate.yaml"
    path.write_text(yaml.safe_dump(config_to_dict(config)))
    assert main(["operate", "--config", str(path), "--headless"]) == 2  # nobody there to press n
    assert "--auto-next" in capsys.readouterr().err
    rc = main(["operate", "--config", str(path), "--headless", "--auto-next", "--rrd", str(tmp_path / "rrd")])
    out = capsys.readouterr().out
    assert rc == 0, out
    assert "phase: done" in out and "round 1: 1 rollouts" in out
    assert f"report: {tmp_path / 'run' / 'operate-report.json'};" in out  # announced, and there
    assert json.loads((tmp_path / "run" / "operate-report.json").read_text())["phase"] == "done"
    assert (tmp_path / "rrd" / "episode-0.rrd").stat().st_size > 0
    assert (tmp_path / "run" / "operate.log").is_file()
    with EpisodeStore.open(config.store_path, mode="r") as store:
        assert store.num_episodes == 1 and store.record(0).length == 5
        assert store.record(0).meta.lrm_verdict is not None


def test_an_improve_run_with_relative_paths_can_be_moved(tmp_path, judge):
    """improve now records checkpoints relative to its run directory; operate resolves them against it."""
    run = tmp_path / "improve"
    run.mkdir()
    steps = {"train-1": {"checkpoint": "policy/round-1/checkpoints/last"}, "judge-train": {"checkpoint": "judge"}}
    (run / "state.json").write_text(json.dumps({"format": "lrm-robot-improve-state", "steps": steps}))
    moved = tmp_path / "elsewhere"
    run.rename(moved)
    config = operate_config(tmp_path / "out", judge, improve_run=moved)
    config.judge.backend.lite.checkpoint = ""
    resolved = config.resolved()
    assert resolved.policy.checkpoint == str(moved / "policy/round-1/checkpoints/last")
    assert resolved.judge.backend.lite.checkpoint == str(moved / "judge")


def test_run_paths_are_relative_inside_the_run_and_old_absolute_ones_still_read(tmp_path):
    from app.improve.state import in_run, run_path

    assert in_run(tmp_path / "policy" / "round-1", tmp_path) == "policy/round-1"
    assert in_run("/somewhere/else", tmp_path) == "/somewhere/else"
    assert run_path("policy/round-1", tmp_path) == tmp_path / "policy" / "round-1"
    assert run_path("/old/absolute/ckpt", tmp_path) == Path("/old/absolute/ckpt")


def test_the_dashboard_gets_the_runs_earlier_rounds(tmp_path, judge):
    run = tmp_path / "improve"
    run.mkdir()
    (run / "report.json").write_text(json.dumps({"rounds": [
        {"round": 0, "eval": {"success_rate": 0.3}},
        {"round": 1, "eval": {"success_rate": 0.45},
         "rollouts": {"episodes": 10, "aborted": 1, "kept": 4, "oracle_successes": 5, "operator_verdicts": 0}}]}))
    (run / "state.json").write_text(json.dumps({"format": "lrm-robot-improve-state", "steps": {}}))
    out = tmp_path / "out"
    out.mkdir()
    (out / "operate-report.json").write_text(json.dumps({"rounds": [
        {"round": 2, "rollouts": 3, "accepted": 2, "train_loss": 0.5, "success_rate": 0.67},
        {"round": 3, "rollouts": 1, "accepted": 0}]}))  # round 3 is the one about to continue
    seen = []
    session = OperatorSession(operate_config(out, judge, improve_run=run, policy=OperatorPolicy(checkpoint="p")),
                              emit=seen.append)
    session._earlier_rounds(3)
    rows = [(s.source, s.round, s.rollouts, s.accepted, s.eval_success) for s in seen]
    assert rows == [("improve", 0, 0, 0, 0.3), ("improve", 1, 9, 4, 0.45), ("operator", 2, 3, 2, None)]
    assert [s.round for s in session.rounds] == [2]  # this session's report keeps the earlier round


def test_v_says_in_one_line_when_there_is_no_display():
    from app.operator.rerun import viewer_executable, viewer_problem

    line = viewer_problem(env={}, platform="linux")
    assert line and "\n" not in line and "no display" in line and "w" in line
    if viewer_executable() is not None:  # the rerun-sdk wheel ships the viewer beside this Python
        assert viewer_problem(env={"DISPLAY": ":0"}, platform="linux") is None


def test_thumbnail_keeps_the_cameras_aspect_and_a_small_object():
    from app.operator.session import thumb_size, thumbnail

    assert thumb_size(128, 128) == (36, 36) and thumb_size(480, 640) == (28, 36)
    image = np.zeros((128, 128, 3), np.uint8)
    image[60:64, 60:64] = (255, 0, 0)  # a 4-pixel cube: nearest-neighbour sampling would drop it
    small = thumbnail(image)
    assert small.shape == (36, 36, 3) and small[..., 0].max() > 40 and small.dtype == np.uint8
    assert thumbnail(np.full((480, 640, 3), 7, np.uint8)).shape == (28, 36, 3)


async def test_sparklines_are_on_a_fixed_scale():
    from textual.app import App

    from app.operator.widgets import FixedSparkline

    class One(App):
        def compose(self):
            yield FixedSparkline(0.0, 1.0, id="s")

    async with One().run_test() as pilot:
        spark = pilot.app.query_one(FixedSparkline)
        spark.set_data([0.1, 0.1, 0.9, 1.5, -1.0])
        assert str(spark.render()) == "▁▁▇█ "  # 0.1 stays low however flat the data; out of range is clamped


def test_the_default_config_operates_on_the_run_the_main_command_writes():
    import re

    import yaml

    root = Path(__file__).resolve().parents[2]
    main_out = re.search(r'LRM_OUT:-([^}]+)\}', (root / "scripts" / "main.sh").read_text()).group(1)
    from app.commands.operate import DEFAULT_CONFIG

    shipped = yaml.safe_load(DEFAULT_CONFIG.read_text())
    assert shipped["improve_run"] == main_out == "outputs/improve-pushcube-cpu"
