"""Current energy spectra of the three runs against the true time-mean spectrum and its p05–p95 band."""
from __future__ import annotations

import numpy as np
import panel as pn
from bokeh.models import ColumnDataSource, Range1d

from ..frames import EngineInfo, Frame
from .style import BAND_COLOR, REFERENCE_COLOR, RUN_COLORS, new_figure, positive_or_nan

#: Decades shown below the smallest and above the largest reference value.
MARGIN_DECADES = 2.0
#: Most decades the y axis spans, so modes at round-off level do not squeeze the energetic ones.
MAX_DECADES = 18.0


def spectrum_range(lowest: float, highest: float) -> tuple[float, float]:
    """Return fixed log-axis limits around ``[lowest, highest]``, so a blow-up leaves the plot."""
    factor = 10.0 ** MARGIN_DECADES
    top = highest * factor
    return max(lowest / factor, top / 10.0 ** MAX_DECADES), top


class SpectrumView:
    """Log-log plot of the shown trajectory's spectra, with the reference when the system has one."""

    def __init__(self, info: EngineInfo):
        self.info = info
        wavenumbers = info.wavenumbers
        self.mask = wavenumbers > 0
        self.wavenumbers = wavenumbers[self.mask]
        self.range_key: int | None = None
        self.figure = new_figure(title="Energy spectrum", frame_width=250, frame_height=160, x_axis_type="log",
                                 y_axis_type="log", x_axis_label=f"wavenumber k (1/{info.length_unit})",
                                 y_axis_label="E(k)", y_range=Range1d(1e-6, 1.0))
        # Few ticks: within one decade a log axis labels every integer, and the labels collide.
        self.figure.xaxis.ticker.desired_num_ticks = 4
        self.add_reference()
        self.sources = {}
        for name in info.runs:
            source = ColumnDataSource({"k": np.zeros(0), "energy": np.zeros(0)})
            self.figure.line("k", "energy", source=source, color=RUN_COLORS[name], line_width=2)
            self.sources[name] = source
        self.panel = pn.pane.Bokeh(self.figure)

    def trim(self, values: np.ndarray | None) -> np.ndarray | None:
        """Return the positive-wavenumber part of ``values``, matched to the wavenumbers' length."""
        if values is None:
            return None
        values = np.asarray(values, dtype=np.float64)
        count = min(values.shape[-1], self.mask.size)
        return positive_or_nan(values[..., :count][..., self.mask[:count]])

    def add_reference(self) -> None:
        info = self.info
        low, high, mean = self.trim(info.spectrum_p05), self.trim(info.spectrum_p95), self.trim(info.reference_spectrum)
        if low is not None and high is not None:
            k = self.wavenumbers[: low.size]
            self.figure.varea(x=k, y1=low, y2=high[: low.size], color=BAND_COLOR, alpha=0.3)
        if mean is not None:
            self.figure.line(x=self.wavenumbers[: mean.size], y=mean, color=REFERENCE_COLOR, line_dash="dashed",
                             line_width=2)

    def update(self, frame: Frame, trajectory: int) -> None:
        self.update_range(frame)
        for name, source in self.sources.items():
            energy = self.trim(frame.spectra[name][trajectory])
            source.data = {"k": self.wavenumbers[: energy.size], "energy": energy}

    def update_range(self, frame: Frame) -> None:
        """Fix the y range once per run start, from the reference band or else the truth's spectra."""
        if self.range_key == frame.run_id:
            return
        reference = [self.trim(self.info.spectrum_p05), self.trim(self.info.spectrum_p95),
                     self.trim(self.info.reference_spectrum)]
        values = [v for v in reference if v is not None]
        if not values:
            truth = frame.spectra.get("truth", frame.spectra[self.info.runs[0]])
            values = [self.trim(truth)]
        stacked = np.concatenate([np.ravel(v) for v in values])
        stacked = stacked[np.isfinite(stacked)]
        if stacked.size:
            low, high = spectrum_range(float(stacked.min()), float(stacked.max()))
            self.figure.y_range.update(start=low, end=high)
        self.range_key = frame.run_id
