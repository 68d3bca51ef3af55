"""The operator app's widgets: the live rollout panel and the round dashboard.

They only display session events (app.operator.events); they never call the session.
"""

from __future__ import annotations

import numpy as np
from rich.color import Color
from rich.style import Style
from rich.text import Text
from textual.app import ComposeResult
from textual.containers import Horizontal, Vertical
from textual.widget import Widget
from textual.widgets import DataTable, Label, Static

from app.operator.events import RolloutEnded, RolloutStarted, RoundStats, StepUpdate, StoreInfo, VerdictChanged

__all__ = ["FixedSparkline", "PhaseBanner", "RewardTraces", "RolloutPanel", "RoundDashboard", "Thumbnail", "verdict_text"]

SPARK_POINTS = 60  # the sparkline shows the last N steps
REDRAW_S = 0.25  # the live panel redraws at most 4 times a second (each redraw holds the GIL the rollout needs)


def _yes_no(value: bool | None, yes: str = "success", no: str = "failure") -> str:
    return "—" if value is None else (yes if value else no)


def verdict_text(lrm: bool | None, score: float | None, operator: bool | None, oracle: bool | None,
                 status: str = "") -> Text:
    """One line: the LRM's verdict with P(completed), the operator's override, the oracle (sim)."""
    text = Text()
    if lrm is None:
        text.append("LRM: not judged" + (f" ({status})" if status else ""), style="dim")
    else:
        text.append(f"LRM: {_yes_no(lrm)}", style="bold green" if lrm else "bold red")
        if score is not None:
            text.append(f"  P(completed)={score:.2f}")
    text.append("   operator: ")
    text.append(_yes_no(operator), style="bold" if operator is not None else "dim")
    if oracle is not None:
        text.append(f"   oracle: {_yes_no(oracle)}", style="dim")
    return text


class PhaseBanner(Static):
    """What the session is doing; red and loud after an emergency stop."""

    DEFAULT_CSS = """
    PhaseBanner { height: 1; padding: 0 1; background: $panel; }
    PhaseBanner.stopped { background: $error; color: $text; text-style: bold; }
    PhaseBanner.paused { background: $warning; color: $background; text-style: bold; }
    PhaseBanner.starting { background: $accent; color: $text; text-style: bold; }
    """

    def show(self, phase: str, detail: str, paused: bool) -> None:
        self.set_class(phase == "stopped", "stopped")
        self.set_class(paused and phase != "stopped", "paused")
        self.set_class(phase == "starting", "starting")  # the long start must not look like a hung app
        if phase == "stopped":
            label = "EMERGENCY STOP"
        else:
            label = phase.upper() + (" · PAUSED" if paused else "")
        self.update(f"{label}  {detail}".rstrip())


class Thumbnail(Widget):
    """A small RGB image drawn with half blocks: two pixel rows per text line, sized to the image."""

    DEFAULT_CSS = "Thumbnail { width: auto; height: auto; }"

    def __init__(self, **kwargs) -> None:
        super().__init__(**kwargs)
        self.image: np.ndarray | None = None

    def set_image(self, image: np.ndarray | None) -> None:
        resized = image is None or self.image is None or image.shape != self.image.shape
        self.image = image
        self.refresh(layout=resized)  # a camera of another shape changes the widget's size

    def get_content_width(self, container, viewport) -> int:
        return 12 if self.image is None else self.image.shape[1]

    def get_content_height(self, container, viewport, width) -> int:
        return 1 if self.image is None else (self.image.shape[0] + 1) // 2

    def render(self) -> Text:
        if self.image is None:
            return Text("no frame yet", style="dim")
        img = self.image
        if img.shape[0] % 2:
            img = np.concatenate([img, img[-1:]], axis=0)
        out = Text()
        rgb = img.tolist()
        for y in range(0, len(rgb), 2):
            for top, bottom in zip(rgb[y], rgb[y + 1], strict=True):
                out.append("▀", style=Style(color=Color.from_rgb(*top), bgcolor=Color.from_rgb(*bottom)))
            if y + 2 < img.shape[0]:
                out.append("\n")
        return out


BARS = " ▁▂▃▄▅▆▇█"


def reward_range(name: str) -> tuple[float, float]:
    """The fixed scale of a trace: contrastive answers in [-1, 1], progress and completion in [0, 1]."""
    return (-1.0, 1.0) if "contrastive" in name else (0.0, 1.0)


class FixedSparkline(Widget):
    """A one-line bar chart on a fixed scale: unlike Textual's Sparkline, which stretches whatever the
    data spans to full height, a flat 0.05 reads as low and a flat 0.95 as high. One bar per step,
    the newest at the right edge (as many as the widget is wide)."""

    def __init__(self, low: float, high: float, **kwargs) -> None:
        super().__init__(**kwargs)
        self.low, self.high = low, high
        self.values: list[float] = []

    def set_data(self, values: list[float]) -> None:
        self.values = list(values)
        self.refresh()

    def render(self) -> Text:
        span = self.high - self.low
        bars = []
        for v in self.values[-max(1, self.size.width):]:
            level = 0.0 if not np.isfinite(v) else min(1.0, max(0.0, (v - self.low) / span))
            bars.append(BARS[round(level * (len(BARS) - 1))])
        return Text("".join(bars), style="green")


class RewardTraces(Vertical):
    """One sparkline per reward trace, created when the trace first appears."""

    DEFAULT_CSS = """
    RewardTraces { height: auto; }
    RewardTraces Horizontal { height: 1; }
    RewardTraces Label { width: 32; }
    RewardTraces FixedSparkline { width: 1fr; height: 1; background: $boost; }
    """

    def __init__(self, **kwargs) -> None:
        super().__init__(**kwargs)
        self.series: dict[str, list[float]] = {}
        self._labels: dict[str, Label] = {}
        self._sparks: dict[str, FixedSparkline] = {}

    def clear(self) -> None:
        self.series.clear()
        for name in self._sparks:
            self._sparks[name].set_data([])
            self._labels[name].update(f"{name} —")

    def record(self, values: dict[str, float]) -> None:
        """Append one step's values; the screen catches up at the next `show()`."""
        for name, value in values.items():
            series = self.series.setdefault(name, [])
            series.append(float(value))
            del series[:-SPARK_POINTS]

    def show(self) -> None:
        for name, series in self.series.items():
            if name not in self._sparks:
                self._labels[name] = Label()
                self._sparks[name] = FixedSparkline(*reward_range(name))
                self.mount(Horizontal(self._labels[name], self._sparks[name]))
            if series:
                low, high = reward_range(name)
                self._labels[name].update(f"{name} {series[-1]:6.3f} [{low:g},{high:g}]")
                self._sparks[name].set_data(list(series))


class RolloutPanel(Vertical):
    """Task, episode, step and time, camera statistics and thumbnail, reward sparklines, the verdict."""

    DEFAULT_CSS = """
    RolloutPanel { border: round $primary; padding: 0 1; height: 1fr; }
    RolloutPanel #cams { height: auto; }
    RolloutPanel #verdict { margin-top: 1; }
    """

    def compose(self) -> ComposeResult:
        yield Static("waiting for the first rollout", id="title")
        yield Static("", id="task")
        yield Static("", id="progress")
        yield Static("", id="cams")
        yield Thumbnail(id="thumb")
        yield RewardTraces(id="rewards")
        yield Static("", id="verdict")

    def on_mount(self) -> None:
        self.border_title = "rollout"
        self._started: RolloutStarted | None = None
        self._episode: int | None = None
        self._ended: RolloutEnded | None = None
        self._pending: StepUpdate | None = None
        self._cameras: dict = {}
        self._thumbnail: np.ndarray | None = None
        self.set_interval(REDRAW_S, self.flush)

    def started(self, event: RolloutStarted) -> None:
        self.flush()
        self._started = event
        self._episode, self._ended = None, None
        self.query_one("#title", Static).update(
            f"round {event.round} · rollout {event.slot + 1}/{event.slots} · seed {event.seed}")
        self.query_one("#task", Static).update(Text(f"task: {event.task}"))
        self.query_one("#progress", Static).update(f"step 0/{event.max_steps}")
        self.query_one("#verdict", Static).update("")
        self.query_one(RewardTraces).clear()

    def step(self, event: StepUpdate) -> None:
        """Take one step's update; the widgets redraw at most every REDRAW_S (see `flush`)."""
        self._pending = event
        if event.cameras:
            self._cameras = event.cameras
        if event.thumbnail is not None:
            self._thumbnail = event.thumbnail
        if event.rewards:
            self.query_one(RewardTraces).record(event.rewards)

    def flush(self) -> None:
        """Draw the newest step: redrawing on every step would take CPU from the rollout thread."""
        event, self._pending = self._pending, None
        if event is None:
            return
        self._episode = event.episode
        total = f"/{self._started.max_steps}" if self._started else ""
        cap = f" (cap {self._started.time_limit_s:g} s)" if self._started and self._started.time_limit_s else ""
        self.query_one("#progress", Static).update(f"episode {event.episode} · step {event.step}{total} · "
                                                   f"t {event.time_s:.2f} s · wall {event.wall_s:.1f} s{cap}")
        if self._cameras:
            lines = [f"camera {name}: mean {s.mean:.1f}  min {s.min}  max {s.max}" for name, s in self._cameras.items()]
            self.query_one("#cams", Static).update("\n".join(lines))
        if self._thumbnail is not None:
            self.query_one(Thumbnail).set_image(self._thumbnail)
            self._thumbnail = None
        self.query_one(RewardTraces).show()

    def ended(self, event: RolloutEnded) -> None:
        self.flush()  # the last step first, then the verdict under it
        self._ended = event
        if event.episode is None:
            line = Text(f"discarded ({event.status}): {event.reason}", style="yellow")
            self.query_one("#verdict", Static).update(line)
            return
        head = Text(f"episode {event.episode} ended: {event.status} after {event.steps} steps\n")
        head.append_text(verdict_text(event.lrm_verdict, event.lrm_score, None, event.oracle_success, event.status))
        self.query_one("#verdict", Static).update(head)

    def verdict(self, event: VerdictChanged) -> None:
        if self._ended is None or self._ended.episode != event.episode:
            return
        head = Text(f"episode {event.episode} ended: {self._ended.status} after {self._ended.steps} steps\n")
        head.append_text(verdict_text(event.lrm_verdict, event.lrm_score, event.operator_verdict,
                                      self._ended.oracle_success))
        self.query_one("#verdict", Static).update(head)


def _fmt(value: float | int | None, spec: str) -> str:
    return "—" if value is None else format(value, spec)


class RoundDashboard(Vertical):
    """Success per round, store size, episodes accepted, last fine-tune loss."""

    DEFAULT_CSS = """
    RoundDashboard { border: round $secondary; padding: 0 1; height: 1fr; }
    RoundDashboard DataTable { height: auto; max-height: 12; }
    RoundDashboard #store { margin-top: 1; }
    RoundDashboard #legend { color: $text-muted; }
    """

    COLUMNS = ("round", "rollouts", "success", "accepted", "oracle", "eval", "ft loss")

    def compose(self) -> ComposeResult:
        table: DataTable = DataTable(show_cursor=False, zebra_stripes=True)
        table.can_focus = False  # keys belong to the operator's bindings
        yield table
        yield Static("imp: a round of the improve run · …: counts so far", id="legend", classes="dim")
        yield Static("store: —", id="store")
        yield Static("last fine-tune loss: —", id="loss")

    def on_mount(self) -> None:
        self.border_title = "rounds"
        table = self.query_one(DataTable)
        for name in self.COLUMNS:
            table.add_column(name, key=name)
        self.stats: dict[int, RoundStats] = {}

    def round(self, stats: RoundStats) -> None:
        table = self.query_one(DataTable)
        key = f"{stats.source}-{stats.round}"
        rate = stats.success_rate
        oracle = None if stats.oracle_successes is None else f"{stats.oracle_successes}/{stats.rollouts}"
        label = f"{stats.round}" + (" imp" if stats.source == "improve" else "") + (" …" if stats.live else "")
        row = (
            label, f"{stats.rollouts}" + (f" +{stats.aborted} ab." if stats.aborted else ""),
            "—" if rate is None else f"{rate:.0%}", f"{stats.accepted}", oracle or "—",
            "—" if stats.eval_success is None else f"{stats.eval_success:.0%}", _fmt(stats.train_loss, ".4f"),
        )
        if key in table.rows:
            for column, value in zip(self.COLUMNS, row, strict=True):
                table.update_cell(key, column, value)
        else:
            table.add_row(*row, key=key)
        self.stats[stats.round] = stats
        losses = [s.train_loss for _, s in sorted(self.stats.items()) if s.train_loss is not None]
        if losses:
            self.query_one("#loss", Static).update(f"last fine-tune loss: {losses[-1]:.4f}")

    def store(self, info: StoreInfo) -> None:
        self.query_one("#store", Static).update(f"store: {info.episodes} episodes, {info.frames} frames\n{info.path}")
