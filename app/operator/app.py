"""The Textual operator app: a live rollout panel, the round dashboard, and the operator's keys.

The session (app.operator.session) runs in a Textual thread worker; its
events arrive as `SessionMessage`s through `post_message` (thread-safe, and
the rollout thread never waits for the screen). Key handlers only call the
session's command methods, which return at once, so the app never blocks.
The emergency stop is a priority binding: it reaches the session whatever
has focus, while paused, and while the rollout thread is inside a step.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from textual.app import App, ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal
from textual.message import Message
from textual.widgets import Footer, Static

from app.operator.events import (
    Notice,
    PhaseChanged,
    RolloutEnded,
    RolloutStarted,
    RoundStats,
    SessionEvent,
    StepUpdate,
    StoreInfo,
    VerdictChanged,
)
from app.operator.widgets import PhaseBanner, RolloutPanel, RoundDashboard
from recordings.store import EpisodeStore

log = logging.getLogger(__name__)

__all__ = ["OperatorApp", "SessionMessage"]


class SessionMessage(Message):
    """A session event, delivered on the app's thread."""

    def __init__(self, event: SessionEvent) -> None:
        super().__init__()
        self.event = event


class OperatorApp(App[None]):
    TITLE = "lrm-robot operate"
    ENABLE_COMMAND_PALETTE = False  # every key belongs to the operator
    CSS = """
    #main { height: 1fr; }
    RolloutPanel { width: 1fr; }
    RoundDashboard { width: 64; }
    #notice { height: 1; padding: 0 1; color: $text-muted; }
    #notice.warning { color: $warning; }
    #notice.error { color: $error; text-style: bold; }
    """
    BINDINGS = [
        Binding("e", "emergency_stop", "E-STOP", priority=True),
        Binding("escape", "emergency_stop", "E-STOP", show=False, priority=True),
        Binding("s", "mark(True)", "Success"),
        Binding("f", "mark(False)", "Failure"),
        Binding("r", "rerecord", "Re-record"),
        Binding("p", "pause", "Pause/Resume"),
        Binding("a", "abort", "Abort"),
        Binding("n", "next", "Next"),
        Binding("v", "viewer", "Rerun viewer"),
        Binding("w", "save_rrd", "Save .rrd"),
        Binding("q", "quit_session", "Quit"),
    ]

    def __init__(self, session: Any, *, start: bool = True, rrd_dir: Path | None = None,
                 exit_when_done: bool = False) -> None:
        """`session`: an OperatorSession (its `emit` is replaced by this app's). `start`: run it on mount
        (False shows the screens fed by hand, e.g. for snapshots). `rrd_dir`: where `w` saves recordings.
        `exit_when_done`: leave once the session has finished, stopped or failed (unattended runs)."""
        super().__init__()
        self.session = session
        self.exit_when_done = exit_when_done
        session.emit = self._emit
        self.start_session = start
        self.rrd_dir = Path(rrd_dir) if rrd_dir else Path(session.config.output_dir) / "rerun"
        self.last_episode: int | None = None
        self.paused = False
        self.phase = "starting"

    def compose(self) -> ComposeResult:
        yield PhaseBanner(f"STARTING  {self.session.starting_detail()}", id="phase", classes="starting")
        with Horizontal(id="main"):
            yield RolloutPanel()
            yield RoundDashboard()
        yield Static("", id="notice")
        yield Footer()

    def on_mount(self) -> None:
        if self.start_session:
            self.run_worker(self.session.run, thread=True, name="operator-session", exit_on_error=False)

    def on_unmount(self) -> None:
        self.session.shutdown()  # however the app closes, the session's thread ends at its next safe point

    def _emit(self, event: SessionEvent) -> None:
        self.post_message(SessionMessage(event))

    # -- session events -> widgets ------------------------------------------------------------------

    def on_session_message(self, message: SessionMessage) -> None:
        self.show(message.event)

    def show(self, event: SessionEvent) -> None:
        """Display one session event (also how tests feed fixed content to the screens)."""
        panel, board = self.query_one(RolloutPanel), self.query_one(RoundDashboard)
        if isinstance(event, PhaseChanged):
            if self.phase == "stopped" and event.phase != "stopped":
                return  # an emergency stop stays on the screen
            self.phase, self.paused = event.phase, event.paused
            self.query_one(PhaseBanner).show(event.phase, event.detail, event.paused)
            self.refresh_bindings()  # the footer greys out the keys this phase cannot act on
            if self.exit_when_done and event.phase in ("done", "stopped", "error"):
                self.exit()
        elif isinstance(event, RolloutStarted):
            panel.started(event)
        elif isinstance(event, StepUpdate):
            panel.step(event)
        elif isinstance(event, RolloutEnded):
            if event.episode is not None:
                self.last_episode = event.episode
            panel.ended(event)
        elif isinstance(event, VerdictChanged):
            panel.verdict(event)
        elif isinstance(event, RoundStats):
            board.round(event)
        elif isinstance(event, StoreInfo):
            board.store(event)
        elif isinstance(event, Notice):
            self.notice(event.text, event.severity)

    def notice(self, text: str, severity: str = "information") -> None:
        line = self.query_one("#notice", Static)
        line.set_class(severity == "warning", "warning")
        line.set_class(severity == "error", "error")
        line.update(text)

    # -- keys -----------------------------------------------------------------------------------------

    # what still works once the session is over: leaving, and looking at what was recorded
    AFTER_END = {"quit_session", "viewer", "save_rrd", "emergency_stop"}

    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        """None (shown greyed out in the footer, and ignored) for a key that cannot act after the session ended,
        so that after an emergency stop an operator sees at a glance that nothing will move."""
        if self.phase in ("stopped", "done", "error") and action not in self.AFTER_END:
            return None
        return True

    def action_emergency_stop(self) -> None:
        self.session.emergency_stop()

    def action_mark(self, success: bool) -> None:
        self.session.mark(success)

    def action_rerecord(self) -> None:
        self.session.rerecord()

    def action_pause(self) -> None:
        self.session.toggle_pause()

    def action_abort(self) -> None:
        self.session.abort()

    def action_next(self) -> None:
        self.session.next()

    def action_viewer(self) -> None:
        self._rerun(spawn=True)

    def action_save_rrd(self) -> None:
        self._rerun(spawn=False)

    def action_quit_session(self) -> None:
        self.session.shutdown()
        self.exit()

    def _rerun(self, *, spawn: bool) -> None:
        """Log the last committed episode to rerun from its own thread and read-only store handle."""
        index = self.last_episode
        if index is None:
            self.notice("no committed episode to show yet", "warning")
            return
        path = self.session.config.store_path
        target = self.rrd_dir / f"episode-{index}.rrd"
        if spawn:
            from app.operator.rerun import viewer_problem

            problem = viewer_problem()
            if problem:
                self.notice(problem, "warning")
                return

        def work() -> None:
            from app.operator.rerun import save_episode, spawn_episode
            try:
                with EpisodeStore.open(path, mode="r") as store:
                    frames = spawn_episode(store, index) if spawn else save_episode(store, index, target)
            except Exception as exc:  # a viewer that cannot start must not take the app down
                self.post_message(SessionMessage(Notice(f"rerun: {type(exc).__name__}: {exc}", "error")))
                return
            where = "the rerun viewer" if spawn else str(target)
            self.post_message(SessionMessage(Notice(f"episode {index} ({frames} frames) -> {where}")))

        self.run_worker(work, thread=True, name="rerun", group="rerun", exit_on_error=False)
