"""Statistics of runs over a window of steps: value PDFs, time-mean spectra and distances to a reference run.

NumPy in, NumPy out, so that the dashboard can call these on recorded
histories without torch. Fields have shape ``(K, B, C, *grid)`` and spectra
``(K, B, n_k)``, for ``K`` saved steps of ``B`` trajectories, where ``n_k`` counts the
wavenumbers of the system's :meth:`energy_spectrum`.
"""
from __future__ import annotations

import dataclasses
import logging
from typing import Mapping, Sequence

import numpy as np

logger = logging.getLogger(__name__)

#: Default number of histogram bins of :func:`shared_bins` and :func:`window_statistics`.
DEFAULT_BIN_COUNT = 60
#: Modes whose reference energy is at most this fraction of the largest are left out of
#: :func:`spectral_distance`. They hold a negligible share of the energy, and their ratios
#: compare round-off: the k = 0 mode of KS (its mean is conserved at zero, about 1e-17 of the
#: peak) and the KS dissipation range, where the float64 solver's energy falls to 1e-16 of the
#: peak while a float32 emulator's stays near its round-off floor, 10 orders of magnitude higher.
SPECTRUM_RELATIVE_FLOOR = 1e-6


def shared_bins(arrays: Sequence[np.ndarray], count: int = DEFAULT_BIN_COUNT) -> np.ndarray:
    """Return ``count + 1`` equally spaced bin edges spanning the finite values of all ``arrays``.

    NaN and infinite values are ignored. When every finite value is the same
    number ``c``, the edges span ``[c - 0.5, c + 0.5]``, as ``numpy.histogram``
    does. When no array has a finite value they span ``[-0.5, 0.5]``.
    """
    if count < 1:
        raise ValueError(f"count = {count} bins is invalid: use at least 1")
    if len(arrays) == 0:
        raise ValueError("arrays is empty: pass at least one array of values")

    low, high = np.inf, -np.inf
    for array in arrays:
        finite = _finite_values(array)
        if finite.size:
            low = min(low, float(finite.min()))
            high = max(high, float(finite.max()))

    if low > high:
        logger.debug("no finite values in %d arrays, so the bins span [-0.5, 0.5]", len(arrays))
        low, high = -0.5, 0.5
    elif low == high:
        low, high = low - 0.5, high + 0.5
    return np.linspace(low, high, count + 1)


def value_pdf(values: np.ndarray, edges: np.ndarray) -> np.ndarray:
    """Return the probability density ``(count,)`` of the finite ``values`` in the bins ``edges`` ``(count + 1,)``.

    The density is in 1 / (unit of the values) and integrates to 1 over the
    edges: values outside ``[edges[0], edges[-1]]`` are not counted. When no
    finite value falls inside the edges, every entry is NaN.
    """
    edges = _checked_edges(edges)
    finite = _finite_values(values)
    counts, _ = np.histogram(finite, bins=edges)
    total = counts.sum()
    if total == 0:
        return np.full(len(edges) - 1, np.nan)
    return counts / (total * np.diff(edges))


def time_mean_spectrum(spectra: np.ndarray) -> np.ndarray:
    """Return the mean spectrum ``(n_k,)`` of ``spectra`` ``(K, B, n_k)`` or ``(K, n_k)`` over steps and trajectories.

    A row (one step of one trajectory) with any non-finite value is left out,
    so a trajectory that blew up counts only up to its last finite spectrum.
    When no row is finite, every entry is NaN.
    """
    spectra = np.asarray(spectra, dtype=np.float64)
    if spectra.ndim not in (2, 3):
        raise ValueError(f"spectra must have shape (K, B, n_k) or (K, n_k), got {spectra.shape}")
    rows = spectra.reshape(-1, spectra.shape[-1])
    finite_rows = rows[np.isfinite(rows).all(axis=1)]
    if finite_rows.shape[0] == 0:
        return np.full(spectra.shape[-1], np.nan)
    return finite_rows.mean(axis=0)


def spectral_modes(reference: np.ndarray, wavenumbers: np.ndarray | None = None) -> np.ndarray:
    """Return the boolean mask ``(n_k,)`` of the modes that :func:`spectral_distance` compares.

    A mode is compared when its reference is finite and above
    :data:`SPECTRUM_RELATIVE_FLOOR` times the largest reference value and, if
    ``wavenumbers`` ``(n_k,)`` are given, when its wavenumber is positive (k = 0
    is the mean, not a scale of the flow).
    """
    reference = np.asarray(reference, dtype=np.float64)
    finite = np.isfinite(reference)
    if not finite.any():
        return np.zeros(reference.shape, dtype=bool)
    floor = SPECTRUM_RELATIVE_FLOOR * reference[finite].max()
    modes = finite & (reference > max(floor, 0.0))
    if wavenumbers is not None:
        wavenumbers = np.asarray(wavenumbers, dtype=np.float64)
        if wavenumbers.shape != reference.shape:
            raise ValueError(f"wavenumbers have shape {wavenumbers.shape} but the reference spectrum has "
                             f"{reference.shape}: pass the system's wavenumbers of this spectrum")
        modes &= wavenumbers > 0
    return modes


def spectral_distance(spectrum: np.ndarray, reference: np.ndarray, wavenumbers: np.ndarray | None = None) -> float:
    """Return the mean over modes of ``|log10(spectrum / reference)|`` for spectra of shape ``(n_k,)``.

    The modes are those of :func:`spectral_modes`. A value of ``log10(2)``, about
    0.30, means a spectrum off by a factor of 2 on average. Returns NaN when the
    spectrum is not finite or not positive on a compared mode, or when no mode
    is compared.

    This is the mean absolute log ratio. :func:`thermalizer_core.diagnostics.spectral_distance`
    (torch, used in training reports) is the root-mean-square of the same log
    ratio. Both give ``|log10(c)|`` for a spectrum off by a constant factor ``c``,
    and the root-mean-square is never smaller.
    """
    spectrum = np.asarray(spectrum, dtype=np.float64)
    reference = np.asarray(reference, dtype=np.float64)
    if spectrum.ndim != 1 or spectrum.shape != reference.shape:
        raise ValueError(f"spectrum {spectrum.shape} and reference {reference.shape} must have the same "
                         f"shape (n_k,): average over steps first with time_mean_spectrum")

    modes = spectral_modes(reference, wavenumbers)
    compared = spectrum[modes]
    if compared.size == 0 or not (np.isfinite(compared).all() and (compared > 0).all()):
        return float("nan")
    return float(np.abs(np.log10(compared / reference[modes])).mean())


def pdf_distance(pdf: np.ndarray, reference_pdf: np.ndarray, edges: np.ndarray) -> float:
    """Return the L1 distance ``sum |pdf - reference_pdf| * bin width`` between two densities ``(count,)``.

    This is twice the total variation distance: 0 for equal densities and 2
    for densities with disjoint support. NaN in either density gives NaN.
    """
    edges = _checked_edges(edges)
    pdf = np.asarray(pdf, dtype=np.float64)
    reference_pdf = np.asarray(reference_pdf, dtype=np.float64)
    expected = (len(edges) - 1,)
    if pdf.shape != expected or reference_pdf.shape != expected:
        raise ValueError(f"pdf {pdf.shape} and reference_pdf {reference_pdf.shape} must both have shape "
                         f"{expected}, one value per bin of edges")
    return float(np.sum(np.abs(pdf - reference_pdf) * np.diff(edges)))


@dataclasses.dataclass(frozen=True, eq=False)
class WindowStatistics:
    """Statistics of each run over the last steps of a history, and their distances to the reference run.

    ``edges`` ``(bins + 1,)`` are shared by every run's ``pdfs[name]`` ``(bins,)``,
    a density in 1 / (field unit). ``mean_spectra[name]`` ``(n_k,)`` is the
    time- and batch-mean spectrum. ``spectral_distances`` and ``pdf_distances``
    compare each run with ``reference_run`` (0 for the reference itself). The
    window covers ``window`` saved steps, from ``first_step`` to ``last_step``
    inclusive.
    """

    edges: np.ndarray
    pdfs: dict[str, np.ndarray]
    mean_spectra: dict[str, np.ndarray]
    spectral_distances: dict[str, float]
    pdf_distances: dict[str, float]
    reference_run: str
    first_step: int
    last_step: int
    window: int


def window_statistics(
    steps: np.ndarray,
    fields_by_run: Mapping[str, np.ndarray],
    spectra_by_run: Mapping[str, np.ndarray],
    window: int,
    reference_run: str = "truth",
    bins: int = DEFAULT_BIN_COUNT,
    *,
    wavenumbers: np.ndarray | None = None,
    channel: int | None = None,
) -> WindowStatistics:
    """Compute value PDFs, time-mean spectra and distances to ``reference_run`` over the last ``window`` steps.

    Args:
        steps: emulator steps ``(K,)`` of the saved rows.
        fields_by_run: per run, fields ``(K, B, C, *grid)`` at ``steps``.
        spectra_by_run: per run, energy spectra ``(K, B, n_k)`` at ``steps``, with the same run names.
        window: number of saved rows to use, counted back from the last and clipped to ``K``.
        reference_run: the run that the distances compare with.
        bins: number of histogram bins, shared by all runs (:func:`shared_bins`).
        wavenumbers: the spectra's wavenumbers ``(n_k,)``. If given, k = 0 is left
            out of the spectral distance (see :func:`spectral_modes`).
        channel: the field channel of the PDFs, or None to pool all channels.
    """
    steps = np.asarray(steps)
    rows = _window_rows(steps, window)
    _check_runs(fields_by_run, spectra_by_run, reference_run, len(steps))

    windowed_fields = {name: _select_channel(np.asarray(fields)[rows], channel) for name, fields in fields_by_run.items()}
    edges = shared_bins(list(windowed_fields.values()), bins)
    pdfs = {name: value_pdf(fields, edges) for name, fields in windowed_fields.items()}
    mean_spectra = {name: time_mean_spectrum(np.asarray(spectra)[rows]) for name, spectra in spectra_by_run.items()}

    reference_spectrum = mean_spectra[reference_run]
    reference_pdf = pdfs[reference_run]
    return WindowStatistics(
        edges=edges,
        pdfs=pdfs,
        mean_spectra=mean_spectra,
        spectral_distances={name: spectral_distance(spectrum, reference_spectrum, wavenumbers)
                            for name, spectrum in mean_spectra.items()},
        pdf_distances={name: pdf_distance(pdf, reference_pdf, edges) for name, pdf in pdfs.items()},
        reference_run=reference_run,
        first_step=int(steps[rows][0]),
        last_step=int(steps[rows][-1]),
        window=len(steps[rows]),
    )


def _finite_values(values: np.ndarray) -> np.ndarray:
    values = np.asarray(values, dtype=np.float64).ravel()
    return values[np.isfinite(values)]


def _checked_edges(edges: np.ndarray) -> np.ndarray:
    edges = np.asarray(edges, dtype=np.float64)
    if edges.ndim != 1 or edges.size < 2 or not (np.isfinite(edges).all() and (np.diff(edges) > 0).all()):
        raise ValueError(f"edges must be at least 2 finite, increasing values (count + 1,), got {edges!r}: "
                         f"build them with shared_bins")
    return edges


def _window_rows(steps: np.ndarray, window: int) -> slice:
    """Return the slice of the last ``window`` rows (all rows when fewer are saved)."""
    if window < 1:
        raise ValueError(f"window = {window} rows is invalid: use at least 1")
    if steps.ndim != 1 or steps.size == 0:
        raise ValueError(f"steps must be a non-empty 1D array (K,), got shape {steps.shape}")
    return slice(max(steps.size - window, 0), steps.size)


def _check_runs(fields_by_run: Mapping[str, np.ndarray], spectra_by_run: Mapping[str, np.ndarray],
                reference_run: str, step_count: int) -> None:
    if set(fields_by_run) != set(spectra_by_run):
        raise ValueError(f"fields_by_run has runs {sorted(fields_by_run)} but spectra_by_run has "
                         f"{sorted(spectra_by_run)}: pass both for the same runs")
    if reference_run not in fields_by_run:
        raise ValueError(f"reference_run {reference_run!r} not found among the runs {sorted(fields_by_run)}")
    for name in fields_by_run:
        fields_shape = np.shape(fields_by_run[name])
        spectra_shape = np.shape(spectra_by_run[name])
        if len(fields_shape) < 4 or fields_shape[0] != step_count:
            raise ValueError(f"fields of run {name!r} have shape {fields_shape}, but expected "
                             f"({step_count}, B, C, *grid), one row per step")
        if len(spectra_shape) != 3 or spectra_shape[0] != step_count:
            raise ValueError(f"spectra of run {name!r} have shape {spectra_shape}, but expected "
                             f"({step_count}, B, n_k), one row per step")


def _select_channel(fields: np.ndarray, channel: int | None) -> np.ndarray:
    if channel is None:
        return fields
    if not -fields.shape[2] <= channel < fields.shape[2]:
        raise ValueError(f"channel = {channel} is out of range for fields with {fields.shape[2]} channels")
    return fields[:, :, channel]
