"""Snapshot tests (pytest-textual-snapshot) of the operator app's main screens, fed fixed session events.

The session is not started: every value on screen (times, rewards, image,
verdicts, paths) comes from the events below, so the screenshots are stable.
Update them after an intended change with `pytest tests/app/test_operator_snapshots.py --snapshot-update`.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from app.operator.app import OperatorApp
from app.operator.config import OperateConfig
from app.operator.events import (
    CameraStats,
    Notice,
    PhaseChanged,
    RolloutEnded,
    RolloutStarted,
    RoundStats,
    StepUpdate,
    StoreInfo,
    VerdictChanged,
)
from app.operator.session import OperatorSession, thumbnail
from app.operator.widgets import RolloutPanel

SIZE = (130, 34)
TASK = "pick up the red cube and move it to the goal position"


def _image() -> np.ndarray:
    """The thumbnail of a fixed 128x128 'camera' frame: a colour gradient with a small red cube."""
    y, x = np.mgrid[0:128, 0:128]
    img = np.stack([x * 2, y * 2, np.full_like(x, 90)], axis=-1).astype(np.uint8)
    img[70:80, 56:66] = (220, 30, 30)
    return thumbnail(img)


def _app() -> OperatorApp:
    session = OperatorSession(OperateConfig(output_dir=Path("outputs/operate/snapshot")))
    return OperatorApp(session, start=False)


def _rollout_events(steps: int) -> list:
    events = [
        StoreInfo("outputs/operate/snapshot/store", 12, 2412),
        RoundStats(round=0, eval_success=0.3, source="improve"),
        RoundStats(round=1, rollouts=9, aborted=1, lrm_accepted=4, operator_marked=2, accepted=5, oracle_successes=4,
                   train_loss=0.0132, selected=55, eval_success=0.35),
        RoundStats(round=2, rollouts=2, lrm_accepted=1, accepted=1, oracle_successes=1, live=True),
        RolloutStarted(round=2, slot=2, slots=10, seed=200012, task=TASK, max_steps=200, time_limit_s=30.0),
        PhaseChanged("rollout"),
    ]
    for t in range(1, steps + 1):
        progress = min(1.0, t / 60)
        rewards = {"lite_progress": round(progress, 3), "lite_completion": round(progress**3, 3)}
        events.append(StepUpdate(episode=12, step=t, time_s=t / 20, wall_s=t / 18, rewards=rewards,
                                 cameras={"base_camera": CameraStats(101.25, 3, 251)}, thumbnail=_image()))
    return events


def _feed(events: list):
    async def run_before(pilot) -> None:
        for event in events:
            pilot.app.show(event)
        pilot.app.query_one(RolloutPanel).flush()  # draw the last step now, not at the next redraw tick
        await pilot.pause()

    return run_before


def test_snapshot_starting(snap_compare):
    assert snap_compare(_app(), terminal_size=SIZE)


def test_snapshot_live_rollout(snap_compare):
    assert snap_compare(_app(), terminal_size=SIZE, run_before=_feed(_rollout_events(45)))


def test_snapshot_review_with_verdict_and_override(snap_compare):
    events = _rollout_events(60) + [
        PhaseChanged("judging"),
        RolloutEnded(12, "success", 60, lrm_verdict=False, lrm_score=0.31, oracle_success=True),
        PhaseChanged("review", "episode 12: s/f to mark, r to redo, n for the next rollout"),
        VerdictChanged(12, operator_verdict=True, lrm_verdict=False, lrm_score=0.31),
        Notice("saved outputs/operate/snapshot/rerun/episode-12.rrd"),
    ]
    assert snap_compare(_app(), terminal_size=SIZE, run_before=_feed(events))


def test_snapshot_paused(snap_compare):
    events = _rollout_events(20) + [PhaseChanged("rollout", "press p to resume", paused=True)]
    assert snap_compare(_app(), terminal_size=SIZE, run_before=_feed(events))


def test_snapshot_emergency_stop(snap_compare):
    events = _rollout_events(30) + [
        PhaseChanged("stopped", "operator emergency stop"),
        RolloutEnded(12, "emergency_stop", 30, "operator emergency stop"),
        PhaseChanged("done", "must not replace the stop"),
    ]
    assert snap_compare(_app(), terminal_size=SIZE, run_before=_feed(events))
