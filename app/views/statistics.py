"""Statistics of each run over a window of recent steps: field-value PDFs, time-mean spectra and distances.

A run that stays on the attractor has a PDF and a time-mean spectrum close to
the truth's over the same window. Drift shows as a widened PDF, or as a spectrum
that rises (noise) or falls (over-smoothing) at high wavenumbers. One number
per run sums each up: the spectral distance (mean |log10 ratio| to the
truth's spectrum) and the PDF distance (L1 between densities).
"""
from __future__ import annotations

import html
import math

import numpy as np
import panel as pn
from bokeh.models import ColumnDataSource

from thermalizer_core.statistics import WindowStatistics

from ..frames import EngineInfo, run_label
from .style import RUN_COLORS, new_figure, positive_or_nan

PLOT_SIZE = {"frame_width": 330, "frame_height": 220}


def format_distance(value: float) -> str:
    return f"{value:.3f}" if math.isfinite(value) else "n/a"


class StatisticsView:
    """PDF and time-mean spectrum plots of one engine and the table of distances to the truth."""

    def __init__(self, info: EngineInfo):
        self.info = info
        self.pdf_sources = {name: ColumnDataSource({"value": np.zeros(0), "density": np.zeros(0)})
                            for name in info.runs}
        self.spectrum_sources = {name: ColumnDataSource({"k": np.zeros(0), "energy": np.zeros(0)})
                                 for name in info.runs}
        self.pdf = new_figure(title="Field-value PDF over the window", x_axis_label="field value",
                              y_axis_label="probability density", y_axis_type="log", **PLOT_SIZE)
        self.spectrum = new_figure(title="Time-mean energy spectrum over the window",
                                   x_axis_label=f"wavenumber (1/{info.length_unit})", y_axis_label="energy",
                                   x_axis_type="log", y_axis_type="log", **PLOT_SIZE)
        for name in info.runs:
            color = RUN_COLORS.get(name)
            self.pdf.line("value", "density", source=self.pdf_sources[name], color=color, line_width=2,
                          legend_label=run_label(name))
            self.spectrum.line("k", "energy", source=self.spectrum_sources[name], color=color, line_width=2)
        self.pdf.legend.label_text_font_size = "8pt"
        self.summary = pn.pane.HTML("Press <b>Compute statistics</b> to compare the runs over the window.",
                                    css_classes=["statistics-summary"], width=380)
        self.panel = pn.Row(pn.pane.Bokeh(self.pdf), pn.pane.Bokeh(self.spectrum), self.summary)

    def show(self, statistics: WindowStatistics, run_settings=None) -> None:
        """Draw the PDFs and spectra of ``statistics`` and list each run's distances to the reference run."""
        centers = 0.5 * (statistics.edges[:-1] + statistics.edges[1:])
        wavenumbers = self.info.wavenumbers
        for name in self.info.runs:
            if name not in statistics.pdfs:
                continue
            self.pdf_sources[name].data = {"value": centers, "density": positive_or_nan(statistics.pdfs[name])}
            spectrum = np.asarray(statistics.mean_spectra[name], dtype=np.float64)
            count = min(spectrum.size, wavenumbers.size)
            keep = wavenumbers[:count] > 0
            self.spectrum_sources[name].data = {"k": wavenumbers[:count][keep],
                                                "energy": positive_or_nan(spectrum[:count][keep])}
        rows = "".join(
            f"<tr class='statistics-row' data-run='{html.escape(name)}'><td>{html.escape(run_label(name, run_settings))}"
            f"</td><td class='spectral-distance'>{format_distance(statistics.spectral_distances[name])}</td>"
            f"<td>{format_distance(statistics.pdf_distances[name])}</td></tr>"
            for name in self.info.runs if name in statistics.spectral_distances)
        self.summary.object = (
            f"<b>Steps {statistics.first_step}–{statistics.last_step}</b> ({statistics.window} saved steps), "
            f"compared with {html.escape(run_label(statistics.reference_run))}."
            "<table><tr><th>run</th><th>spectral distance</th><th>PDF distance</th></tr>"
            f"{rows}</table>"
            "<small>Spectral distance: mean |log10(E/E_truth)| over wavenumbers. PDF distance: "
            "∫|p − p_truth|, from 0 (same) to 2 (disjoint).</small>")

    def show_error(self, message: str) -> None:
        self.summary.object = f"<span style='color:#b00020'>{html.escape(message)}</span>"
