"""Time series of the shown trajectory over the engine's bounded history.

Five plots share one ColumnDataSource and one step axis:

- the measure (energy for KS, enstrophy in 2D) with the stable band's bounds;
- the MSE to the truth, with the Lyapunov time marked;
- the correlation with the truth, with the Lyapunov time marked;
- the predicted noise level ``s`` of every run (the truth's too) with ``s_init``,
  ``s_stop`` and a mark at each perturbation;
- the denoising steps per step of the main thermalized run (the "ticker tape").

New rows are streamed with a rollover of the history length, so the browser
keeps as many rows as the engine.
"""
from __future__ import annotations

import numpy as np
import panel as pn
from bokeh.models import ColumnDataSource, DataRange1d, Label, Range1d, Span

from ..frames import EngineInfo, Frame
from .style import BAND_COLOR, RUN_COLORS, finite_or_nan, new_figure, positive_or_nan

PERTURBATION_COLOR = "#7f3fbf"
PLOT_SIZE = {"frame_width": 250, "frame_height": 160}
#: Factor between the stable band's bounds and the measure plot's fixed limits.
BAND_MARGIN = 10.0
#: Headroom of the level axis above the highest level or threshold shown.
LEVEL_AXIS_MARGIN = 1.15


def level_or_nan(levels: np.ndarray) -> np.ndarray:
    """Return predicted levels as floats, with -1 (not classified at that step) as NaN."""
    levels = np.asarray(levels, dtype=np.float64)
    return np.where(levels >= 0, levels, np.nan)


def emulated_runs(runs) -> list[str]:
    """Return the runs that an emulator advances: all but the truth."""
    return [name for name in runs if name != "truth"]


def series_columns(frame: Frame, trajectory: int, rows: np.ndarray | slice) -> dict[str, np.ndarray]:
    """Return the plotted columns of ``trajectory`` for the history ``rows`` of ``frame``."""
    runs = frame.info.runs
    first = frame.history[runs[0]]
    columns = {"step": first["step"][rows].astype(np.float64)}
    for name in runs:
        history = frame.history[name]
        columns[f"measure_{name}"] = positive_or_nan(history["measure"][rows, trajectory])
        columns[f"level_{name}"] = level_or_nan(history["level"][rows, trajectory])
        if name != "truth":
            columns[f"mse_{name}"] = positive_or_nan(history["mse"][rows, trajectory])
            columns[f"correlation_{name}"] = finite_or_nan(history["correlation"][rows, trajectory])
            columns[f"denoising_{name}"] = history["denoising_steps"][rows, trajectory].astype(np.float64)
    return columns


class TimeSeriesView:
    """The five time-series plots of one engine."""

    def __init__(self, info: EngineInfo, history_rows: int):
        self.info = info
        self.history_rows = history_rows
        self.key: tuple[int, int] | None = None
        self.last_step = -1
        self.emulated = emulated_runs(info.runs)
        empty = {"step": np.zeros(0)}
        for name in info.runs:
            empty[f"measure_{name}"] = np.zeros(0)
            empty[f"level_{name}"] = np.zeros(0)
            if name != "truth":
                for prefix in ("mse", "correlation", "denoising"):
                    empty[f"{prefix}_{name}"] = np.zeros(0)
        self.source = ColumnDataSource(empty)
        self.perturbation_source = ColumnDataSource({"step": np.zeros(0)})
        self.x_range = DataRange1d(only_visible=True)
        self.measure = self.make_measure_figure()
        self.mse = self.make_error_figure("mse", "MSE to the truth", "MSE", y_axis_type="log")
        self.correlation = self.make_error_figure("correlation", "Correlation with the truth", "Pearson r",
                                                  y_range=Range1d(-1.05, 1.05))
        self.level, self.s_init_span, self.s_stop_span = self.make_level_figure()
        self.ticker = self.make_ticker_figure()
        self.panes = {name: pn.pane.Bokeh(getattr(self, name))
                      for name in ("measure", "ticker", "mse", "correlation", "level")}

    # -- construction -----------------------------------------------------------
    def runs_present(self, names=None) -> list[str]:
        return [name for name in (names or self.info.runs) if name in self.info.runs]

    def add_lines(self, plot, prefix: str, names) -> None:
        for name in self.runs_present(names):
            plot.line("step", f"{prefix}_{name}", source=self.source, color=RUN_COLORS[name], line_width=1.5)

    def make_measure_figure(self):
        info = self.info
        options = {}
        if info.band_lower is not None and info.band_upper is not None:
            options["y_range"] = Range1d(info.band_lower / BAND_MARGIN, info.band_upper * BAND_MARGIN)
        plot = new_figure(title=f"{info.measure_name.capitalize()} and stable band", x_range=self.x_range,
                          y_axis_type="log", x_axis_label="step", y_axis_label=info.measure_name, **PLOT_SIZE,
                          **options)
        self.add_lines(plot, "measure", info.runs)
        if "y_range" in options:
            for bound in (info.band_lower, info.band_upper):
                plot.add_layout(Span(location=bound, dimension="width", line_color=BAND_COLOR, line_dash="dashed",
                                     line_width=2))
        return plot

    def make_error_figure(self, prefix: str, title: str, label: str, **options):
        plot = new_figure(title=title, x_range=self.x_range, x_axis_label="step", y_axis_label=label, **PLOT_SIZE,
                          **options)
        self.add_lines(plot, prefix, self.emulated)
        plot.yaxis.ticker.desired_num_ticks = 4
        lyapunov = self.info.lyapunov_time_steps
        if lyapunov is not None:
            plot.add_layout(Span(location=lyapunov, dimension="height", line_color=BAND_COLOR, line_dash="dotted",
                                 line_width=2))
            plot.add_layout(Label(x=lyapunov, y=4, y_units="screen", text=" Lyapunov time", text_font_size="8pt",
                                  text_color=BAND_COLOR))
        return plot

    def make_level_figure(self):
        plot = new_figure(title="Predicted noise level s", x_range=self.x_range, x_axis_label="step",
                          y_axis_label="s", y_range=Range1d(-1, 20), **PLOT_SIZE)
        self.add_lines(plot, "level", self.info.runs)
        plot.vspan(x="step", source=self.perturbation_source, line_color=PERTURBATION_COLOR, line_width=2,
                   line_dash="dotdash")
        s_init = Span(location=0, dimension="width", line_color="#009E73", line_width=2)
        s_stop = Span(location=0, dimension="width", line_color="#009E73", line_width=2, line_dash="dashed")
        plot.add_layout(s_init)
        plot.add_layout(s_stop)
        self.s_init_label = Label(x=4, y=0, x_units="screen", text="s_init", text_font_size="8pt",
                                  text_color="#009E73")
        self.s_stop_label = Label(x=40, y=0, x_units="screen", text="s_stop", text_font_size="8pt",
                                  text_color="#009E73")
        plot.add_layout(self.s_init_label)
        plot.add_layout(self.s_stop_label)
        return plot, s_init, s_stop

    def make_ticker_figure(self):
        plot = new_figure(title="Denoising steps (ticker tape)", x_range=self.x_range, x_axis_label="step",
                          y_axis_label="denoising steps", y_range=DataRange1d(start=0), **PLOT_SIZE)
        if "thermalized" in self.info.runs:
            plot.vbar(x="step", top="denoising_thermalized", width=1.0, source=self.source,
                      color=RUN_COLORS["thermalized"])
        return plot

    # -- updates --------------------------------------------------------------------
    def update(self, frame: Frame, trajectory: int) -> None:
        """Show ``trajectory``'s history: stream new rows, or replace all after a reset or a new selection."""
        steps = frame.history[self.info.runs[0]]["step"]
        key = (frame.run_id, trajectory)
        if key != self.key or steps.size == 0 or steps[-1] < self.last_step:
            self.source.data = series_columns(frame, trajectory, slice(None))
        else:
            new = np.flatnonzero(steps > self.last_step)
            if new.size:
                self.source.stream(series_columns(frame, trajectory, new), rollover=self.history_rows)
        self.key = key
        self.last_step = int(steps[-1]) if steps.size else -1
        self.update_thresholds(frame, trajectory)
        perturbed = np.array([perturbation.step for perturbation in frame.perturbations], dtype=np.float64)
        if len(self.perturbation_source.data["step"]) != perturbed.size:
            self.perturbation_source.data = {"step": perturbed}

    def update_thresholds(self, frame: Frame, trajectory: int) -> None:
        """Move the s_init and s_stop lines to the engine's settings and fit the level axis to them and the data."""
        settings = frame.settings
        self.s_init_span.location = settings.s_init
        self.s_stop_span.location = settings.s_stop
        self.s_init_label.y = settings.s_init
        self.s_stop_label.y = settings.s_stop
        highest = max(settings.s_init, settings.s_stop)
        for name in self.info.runs:
            levels = frame.history[name]["level"][:, trajectory]
            if levels.size:
                highest = max(highest, int(levels.max()))
        self.level.y_range.update(start=-1, end=LEVEL_AXIS_MARGIN * highest + 2)
