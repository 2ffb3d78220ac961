"""Bokeh plots of a session's frames: fields, spectra and time series.

The plots are plain Bokeh figures whose ColumnDataSources are replaced or
streamed in place, because that is much cheaper per frame. In a measurement on
a loaded 2-core CPU (Panel 1.9, HoloViews 1.23), re-rendering a HoloViews
DynamicMap took 15 ms for one image and 32 ms for an overlay of curves and
lines, against under 1 ms for a ColumnDataSource update. The page has about
ten plots per frame.
"""
from .fields import FieldsView
from .series import TimeSeriesView
from .spectrum import SpectrumView

__all__ = ["FieldsView", "SpectrumView", "TimeSeriesView"]
