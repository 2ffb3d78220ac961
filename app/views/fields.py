"""The fields of truth, emulator-only and thermalized runs, side by side on one colour scale.

2D systems show one image per run. KS shows a space-time diagram per run (step
on the horizontal axis, x on the vertical, the last rows the worker kept) and
the current u(x) of the three runs overlaid. The colour scale is fixed per
run start from the truth's range, so a rollout that blows up saturates
instead of rescaling the others.
"""
from __future__ import annotations

from typing import Callable

import numpy as np
import panel as pn
from bokeh.events import Tap
from bokeh.models import BasicTickFormatter, ColorBar, ColumnDataSource, LinearColorMapper, Range1d

from ..frames import RUN_LABELS, EngineInfo, Frame, run_label, short_exit
from .style import DIVERGING_PALETTE, RUN_COLORS, TOOLS, finite_or_nan, new_figure

#: Caption above the fields, per channel.
CHANNEL_CAPTIONS = {
    "u": "velocity u(x, t)",
    "vorticity": "vorticity ω",
    "q1": "upper-layer potential vorticity anomaly q1 (1/s)",
    "q2": "lower-layer potential vorticity anomaly q2 (1/s)",
}
#: Colour limits are this factor times the largest absolute value of the truth at the run's start.
COLOR_MARGIN = 1.2
IMAGE_SIZE = 250
#: The field plots take clicks (to perturb there), so their toolbar has the tap tool.
TAP_TOOLS = TOOLS + ",tap"


def field_title(label: str, exit_step: int | None, reason: str | None) -> str:
    """Return a panel title: the run's label, and how it left the stable band if it did."""
    if exit_step is None:
        return label
    return f"{label}: {short_exit(exit_step, reason)}"


def color_limit(fields: dict[str, np.ndarray], channel: int) -> float:
    """Return the symmetric colour limit for ``channel``: the truth's largest absolute value, with a margin."""
    reference = fields.get("truth", next(iter(fields.values())))[:, channel]
    finite = reference[np.isfinite(reference)]
    largest = float(np.abs(finite).max()) if finite.size else 0.0
    return COLOR_MARGIN * largest if largest > 0 else 1.0


class FieldsView:
    """One row of field plots for an engine, updated from frames.

    ``on_tap`` (optional) receives the clicked point as fractions of the domain, one per spatial axis in
    the fields' order (y, x in 2D; x for KS, from the space-time diagrams or the u(x) plot).
    """

    def __init__(self, info: EngineInfo, space_time_rows: int,
                 on_tap: Callable[[tuple[float, ...]], None] | None = None):
        self.info = info
        self.space_time_rows = space_time_rows
        self.on_tap = on_tap
        self.color_mapper = LinearColorMapper(palette=DIVERGING_PALETTE, low=-1.0, high=1.0, nan_color="#000000")
        self.color_key: tuple[int, int] | None = None
        self.caption = pn.pane.Markdown("", margin=(0, 10))
        self.image_sources = {name: ColumnDataSource(self.empty_image()) for name in info.runs}
        self.figures = {name: self.make_image_figure(name) for name in info.runs}
        last = info.runs[-1]
        color_bar = ColorBar(color_mapper=self.color_mapper, width=10, formatter=BasicTickFormatter(precision=1))
        self.figures[last].add_layout(color_bar, "right")
        # Rows of at most three plots. A FlexBox would wrap by itself, but Bokeh then maps clicks to infinite
        # data coordinates (Bokeh 3.9, Panel 1.9.4), so the plots could not take clicks.
        for name, plot in self.figures.items():
            plot.css_classes = ["field-plot", f"field-{name.replace(' ', '-')}"]
        panes = [pn.pane.Bokeh(self.figures[name]) for name in info.runs]
        row = pn.Column(*[pn.Row(*panes[start:start + 3]) for start in range(0, len(panes), 3)])
        self.profile_sources: dict[str, ColumnDataSource] = {}
        if info.is_1d:
            self.profile_figure = self.make_profile_figure()
            self.profile_figure.css_classes = ["profile-plot"]
            self.panel = pn.Column(self.caption, row, pn.pane.Bokeh(self.profile_figure))
        else:
            self.panel = pn.Column(self.caption, row)

    # -- construction -----------------------------------------------------------
    @staticmethod
    def empty_image() -> dict:
        return {"image": [np.zeros((1, 1), dtype=np.float32)], "x": [0.0], "y": [0.0], "dw": [1.0], "dh": [1.0]}

    def make_image_figure(self, name: str):
        info = self.info
        if info.is_1d:
            plot = new_figure(title=RUN_LABELS[name], frame_width=250, frame_height=170, tools=TAP_TOOLS,
                              x_axis_label="step", y_axis_label=f"x ({info.length_unit})",
                              x_range=Range1d(0, self.space_time_rows), y_range=Range1d(0, info.extent[0]))
        else:
            length_x, length_y = info.extent[-1], info.extent[-2]
            plot = new_figure(title=RUN_LABELS[name], frame_width=IMAGE_SIZE, frame_height=IMAGE_SIZE,
                              tools=TAP_TOOLS,
                              x_axis_label=f"x ({info.length_unit})", y_axis_label=f"y ({info.length_unit})",
                              x_range=Range1d(0, length_x), y_range=Range1d(0, length_y), match_aspect=True)
        plot.image(image="image", x="x", y="y", dw="dw", dh="dh", color_mapper=self.color_mapper,
                   source=self.image_sources[name])
        plot.grid.visible = False
        plot.on_event(Tap, self.tapped_image)
        return plot

    def make_profile_figure(self):
        info = self.info
        plot = new_figure(title="u(x) now, shown trajectory", frame_width=3 * 250 + 2 * 75 + 40, frame_height=150,
                          tools=TAP_TOOLS,
                          x_axis_label=f"x ({info.length_unit})", y_axis_label="u",
                          x_range=Range1d(0, info.extent[0]), y_range=Range1d(-1.0, 1.0))
        for name in info.runs:
            source = ColumnDataSource({"x": np.zeros(0), "u": np.zeros(0)})
            plot.line("x", "u", source=source, color=RUN_COLORS[name], line_width=2)
            self.profile_sources[name] = source
        plot.on_event(Tap, lambda event: self.report_tap((event.x / info.extent[0],)))
        return plot

    # -- clicks -----------------------------------------------------------------------
    def tapped_image(self, event) -> None:
        """Turn a click on an image into domain fractions; in a KS space-time diagram x is the vertical axis."""
        if self.info.is_1d:
            self.report_tap((event.y / self.info.extent[0],))
        else:
            self.report_tap((event.y / self.info.extent[-2], event.x / self.info.extent[-1]))

    def report_tap(self, center: tuple[float, ...]) -> None:
        if self.on_tap is None or any(value is None for value in center):
            return
        if all(0.0 <= value < 1.0 for value in center):
            self.on_tap(center)

    # -- updates --------------------------------------------------------------------
    def update(self, frame: Frame, trajectory: int, channel: int) -> None:
        """Show ``trajectory`` (and ``channel`` of 2D fields) of ``frame``."""
        channel = min(channel, len(self.info.channels) - 1)
        self.update_color_range(frame, channel)
        channel_name = self.info.channels[channel]
        self.caption.object = f"**Fields**: {CHANNEL_CAPTIONS.get(channel_name, channel_name)}"
        for name in self.info.runs:
            exit_step, reason = frame.exits[name][trajectory]
            self.figures[name].title.text = field_title(run_label(name, frame.run_settings), exit_step, reason)
            if self.info.is_1d:
                self.update_space_time(frame, name, trajectory)
                self.update_profile(frame, name, trajectory)
            else:
                self.update_image(frame, name, trajectory, channel)

    def update_color_range(self, frame: Frame, channel: int) -> None:
        key = (frame.run_id, channel)
        if key == self.color_key:
            return
        limit = color_limit(frame.fields, channel)
        self.color_mapper.update(low=-limit, high=limit)
        if self.info.is_1d:
            self.profile_figure.y_range.update(start=-limit, end=limit)
        self.color_key = key

    def update_image(self, frame: Frame, name: str, trajectory: int, channel: int) -> None:
        image = finite_or_nan(frame.fields[name][trajectory, channel]).astype(np.float32)
        length_x, length_y = self.info.extent[-1], self.info.extent[-2]
        self.image_sources[name].data = {"image": [image], "x": [0.0], "y": [0.0], "dw": [length_x],
                                         "dh": [length_y]}

    def update_space_time(self, frame: Frame, name: str, trajectory: int) -> None:
        steps, rows = frame.space_time[name]
        if steps.size == 0:
            return
        # Rows are (step, x); Bokeh images are indexed [y, x], with y the vertical axis (x here).
        image = finite_or_nan(rows[:, trajectory, :].T).astype(np.float32)
        first = float(steps[0])
        self.image_sources[name].data = {"image": [image], "x": [first], "y": [0.0], "dw": [float(steps.size)],
                                         "dh": [self.info.extent[0]]}
        end = max(float(steps[-1]) + 1, first + self.space_time_rows)
        self.figures[name].x_range.update(start=end - self.space_time_rows, end=end)

    def update_profile(self, frame: Frame, name: str, trajectory: int) -> None:
        u = finite_or_nan(frame.fields[name][trajectory, 0])
        x = np.arange(u.size) * (self.info.extent[0] / u.size)
        self.profile_sources[name].data = {"x": x, "u": u}
