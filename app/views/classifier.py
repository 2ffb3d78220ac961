"""Views of the thermalizer's classifier: live level histograms per run, and its check on noised truth.

The histogram counts the predicted noise levels of every trajectory over the
last ``window`` steps of the engine's history, for the true states and for each
emulated run (before any denoising of that step). A classifier that reads the
truth near level 0 and the drifting emulator higher is what lets the
thermalizer tell them apart. The check noises recent true states to known
levels and shows what the classifier reads for each (a confusion plot).
"""
from __future__ import annotations

import html

import numpy as np
import panel as pn
from bokeh.models import ColumnDataSource, LinearColorMapper, Range1d
from bokeh.palettes import Viridis256

from thermalizer_core.classifier_check import ConfusionResult

from ..frames import EngineInfo, Frame, run_label
from .style import RUN_COLORS, new_figure

PLOT_SIZE = {"frame_width": 330, "frame_height": 220}
#: Lowest upper end of the histogram's level axis.
MIN_LEVEL_AXIS = 20


def level_histograms(frame: Frame, window: int) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    """Return the level axis ``(L,)`` and, per run, the fraction of readings at each level over ``window`` rows.

    Rows where a run was not classified (level -1) are left out. Readings above the axis count in its last bin.
    """
    readings = {}
    for name in frame.info.runs:
        levels = frame.history[name]["level"][-window:].ravel()
        readings[name] = levels[levels >= 0]
    highest = max([MIN_LEVEL_AXIS, 2 * frame.settings.s_init]
                  + [int(np.percentile(values, 99)) + 1 for values in readings.values() if values.size])
    axis = np.arange(highest + 1)
    fractions = {}
    for name, values in readings.items():
        counts = np.bincount(np.minimum(values, highest), minlength=highest + 1).astype(np.float64)
        fractions[name] = counts / counts.sum() if counts.sum() > 0 else np.full(axis.size, np.nan)
    return axis, fractions


class ClassifierView:
    """The level histograms of one engine and the result of its latest classifier check."""

    def __init__(self, info: EngineInfo):
        self.info = info
        self.sources = {name: ColumnDataSource({"level": np.zeros(0), "fraction": np.zeros(0)}) for name in info.runs}
        self.histogram = new_figure(title="Predicted levels over the window (all trajectories)",
                                    x_axis_label="predicted noise level s", y_axis_label="fraction of readings",
                                    **PLOT_SIZE)
        for name, source in self.sources.items():
            self.histogram.step("level", "fraction", source=source, mode="center", color=RUN_COLORS.get(name),
                                line_width=2, legend_label=run_label(name))
        self.histogram.legend.label_text_font_size = "8pt"
        self.histogram.legend.location = "top_right"

        self.confusion_source = ColumnDataSource({"image": [np.zeros((1, 1))], "x": [0.0], "y": [0.0], "dw": [1.0],
                                                  "dh": [1.0]})
        self.color_mapper = LinearColorMapper(palette=Viridis256, low=0.0, high=1.0)
        self.confusion = new_figure(title="Classifier check: reading vs true level (noised truth)",
                                    x_axis_label="predicted level (last column: above)", y_axis_label="true level",
                                    **PLOT_SIZE)
        self.confusion.image(image="image", x="x", y="y", dw="dw", dh="dh", color_mapper=self.color_mapper,
                             source=self.confusion_source)
        self.diagonal_source = ColumnDataSource({"level": np.zeros(0), "mean": np.zeros(0)})
        self.confusion.line("level", "level", source=self.diagonal_source, color="white", line_dash="dashed")
        self.confusion.scatter("mean", "level", source=self.diagonal_source, color="#D55E00", size=6,
                               legend_label="mean reading")
        self.confusion.legend.label_text_font_size = "8pt"
        self.confusion.legend.location = "top_left"
        self.summary = pn.pane.HTML("Press <b>Check the classifier</b> to noise recent true states to known levels "
                                    "and see what the classifier reads.", css_classes=["classifier-summary"],
                                    width=380)
        self.panel = pn.Row(pn.pane.Bokeh(self.histogram), pn.Column(pn.pane.Bokeh(self.confusion), self.summary))

    def update(self, frame: Frame, window: int) -> None:
        axis, fractions = level_histograms(frame, window)
        for name, source in self.sources.items():
            source.data = {"level": axis.astype(np.float64), "fraction": fractions[name]}

    def show_confusion(self, result: ConfusionResult) -> None:
        """Draw each true level's row of readings as fractions, with the mean reading per level."""
        counts = np.asarray(result.counts, dtype=np.float64)
        fractions = counts / np.maximum(counts.sum(axis=1, keepdims=True), 1)
        levels = np.asarray(result.levels, dtype=np.float64)
        spacing = float(np.min(np.diff(levels))) if levels.size > 1 else 1.0
        columns = counts.shape[1]
        self.confusion_source.data = {"image": [fractions], "x": [-0.5], "y": [levels[0] - spacing / 2],
                                      "dw": [float(columns)], "dh": [spacing * levels.size]}
        self.confusion.x_range = Range1d(-0.5, columns - 0.5)
        self.confusion.y_range = Range1d(levels[0] - spacing / 2, levels[-1] + spacing / 2)
        self.diagonal_source.data = {"level": levels, "mean": np.asarray(result.mean_predicted, dtype=np.float64)}
        rows = "".join(f"<tr><td>{int(level)}</td><td>{mean:.1f}</td><td>{error:.1f}</td></tr>"
                       for level, mean, error in zip(levels, result.mean_predicted, result.mean_abs_error))
        self.summary.object = (
            f"<b>Classifier check</b> on {result.samples_per_level} noised true states per level "
            "(columns: true level, mean reading, mean absolute error in levels)."
            f"<table class='confusion-table'><tr><th>true</th><th>mean read</th><th>|error|</th></tr>{rows}</table>")

    def show_error(self, message: str) -> None:
        self.summary.object = f"<span style='color:#b00020'>{html.escape(message)}</span>"
