"""Bokeh plots of a session's frames: fields, spectra and time series.

The plots are plain Bokeh figures whose ColumnDataSources are replaced or
streamed in place. Re-rendering HoloViews DynamicMaps for every frame took
15 ms (one image) to 32 ms (one overlay of curves and lines) each on a loaded
2-core CPU, against well under 1 ms for a ColumnDataSource update, and the
page has about ten plots per frame.
"""
from .fields import FieldsView
from .series import TimeSeriesView
from .spectrum import SpectrumView

__all__ = ["FieldsView", "SpectrumView", "TimeSeriesView"]
