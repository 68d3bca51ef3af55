"""A progress bar per round for an unattended session (`lrm-robot operate --headless`), fed by its events.

With no screen, nothing else shows how far the rounds have got: one bar per
round counts its committed rollouts, its postfix says the phase (fine-tune,
evaluate) and, at the end of the round, the success rate. The bar is drawn
on the terminal the command started on (only if it is one), even while the
headless app holds sys.stderr; log lines go to OUTPUT/operate.log meanwhile.
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from typing import Any, TextIO

from app.operator.events import PhaseChanged, RolloutStarted, RoundStats, SessionEvent
from common.progress import progress_bar

__all__ = ["HeadlessProgress"]

ENDED = ("done", "stopped", "error")


class HeadlessProgress:
    """Wraps a session's `emit`: shows every event on the round's bar, then passes it on."""

    def __init__(self, emit: Callable[[SessionEvent], None], *, file: TextIO | None = None,
                 enabled: bool = True) -> None:
        self.emit = emit
        self.file = file if file is not None else sys.stderr
        self.enabled = enabled
        self.bar: Any = None
        self.round: int | None = None

    def __call__(self, event: SessionEvent) -> None:
        self.show(event)
        self.emit(event)

    def show(self, event: SessionEvent) -> None:
        if isinstance(event, RolloutStarted) and event.round != self.round:
            self.close()
            self.round = event.round
            self.bar = progress_bar(event.slots, desc=f"round {event.round}", unit="rollout", enabled=self.enabled,
                                    file=self.file)
        elif isinstance(event, RoundStats) and self.bar is not None and event.round == self.round:
            self.bar.n = min(event.rollouts, self.bar.total or event.rollouts)
            if not event.live:
                rate = event.success_rate
                self.bar.set_postfix_str(f"accepted {event.accepted}, success {'-' if rate is None else f'{rate:.0%}'}"
                                         + ("" if event.eval_success is None else f", eval {event.eval_success:.0%}"),
                                         refresh=False)
            self.bar.refresh()
        elif isinstance(event, PhaseChanged) and self.bar is not None:
            if event.phase in ENDED:
                self.close()
            elif event.phase in ("finetune", "evaluate"):
                self.bar.set_postfix_str(event.phase)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()
            self.bar = None
