"""Colours and figure defaults shared by the views."""
from __future__ import annotations

import numpy as np
from bokeh.palettes import RdBu11, interp_palette
from bokeh.plotting import figure

#: Okabe–Ito colours, distinguishable with the common colour-vision deficiencies.
RUN_COLORS = {"truth": "#222222", "emulator": "#D55E00", "thermalized": "#0072B2",
              "variant A": "#CC79A7", "variant B": "#E69F00", "variant C": "#56B4E9"}
#: Blue for negative, white for zero, red for positive values.
DIVERGING_PALETTE = interp_palette(RdBu11, 256)
REFERENCE_COLOR = "#555555"
BAND_COLOR = "#999999"
TOOLS = "pan,wheel_zoom,box_zoom,reset,save"


def new_figure(**options) -> figure:
    """Return a figure with the dashboard's tools and a quiet toolbar."""
    options.setdefault("tools", TOOLS)
    options.setdefault("toolbar_location", "right")
    plot = figure(**options)
    plot.toolbar.logo = None
    plot.title.text_font_size = "10pt"
    return plot


def finite_or_nan(values: np.ndarray) -> np.ndarray:
    """Return ``values`` as float64 with infinities replaced by NaN, which Bokeh draws as a gap."""
    values = np.asarray(values, dtype=np.float64)
    return np.where(np.isfinite(values), values, np.nan)


def positive_or_nan(values: np.ndarray) -> np.ndarray:
    """Return ``values`` with non-positive and non-finite entries replaced by NaN, for log axes."""
    values = finite_or_nan(values)
    return np.where(values > 0, values, np.nan)
