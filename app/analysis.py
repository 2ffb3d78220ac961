"""Work that the page requests on demand: window statistics, the classifier check and the exports.

The ``*_of`` functions take the session's engine and run on its worker thread
between two steps (see :meth:`app.worker.RolloutWorker.submit`), so they read
a consistent state. :func:`view_png` draws a published :class:`~app.frames.Frame`
and can run on any thread.
"""
from __future__ import annotations

import io
import logging
import pathlib
import tempfile

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import torch  # noqa: E402

from thermalizer_core import animation, export  # noqa: E402
from thermalizer_core.classifier_check import ConfusionResult, classifier_confusion  # noqa: E402
from thermalizer_core.engine import RolloutEngine  # noqa: E402
from thermalizer_core.statistics import WindowStatistics, window_statistics  # noqa: E402

from .frames import Frame, run_label  # noqa: E402
from .views.fields import color_limit  # noqa: E402
from .views.series import level_or_nan  # noqa: E402
from .views.style import RUN_COLORS  # noqa: E402

logger = logging.getLogger(__name__)

#: True noise levels of the classifier check: the low levels where s_init and s_stop usually sit.
CALIBRATION_LEVELS = tuple(range(0, 41, 4))
#: Clean true states noised per level in the classifier check (taken from the recent truth).
CALIBRATION_STATES = 16
#: Frames of the animated GIF at most, whatever the engine keeps.
MAX_GIF_FRAMES = 200


def aligned_histories(engine: RolloutEngine) -> tuple[np.ndarray, dict[str, np.ndarray], dict[str, np.ndarray]]:
    """Return the steps ``(K,)`` kept both as fields and as spectra, with each run's fields and spectra there."""
    fields, spectra = {}, {}
    steps = None
    for name in engine.run_names:
        field_steps, run_fields = engine.recent_fields(name)
        spectrum_steps, run_spectra = engine.recent_spectra(name)
        # The spectrum history is at least as long, and both end at the current step.
        keep = np.isin(spectrum_steps, field_steps)
        fields[name] = run_fields[np.isin(field_steps, spectrum_steps)]
        spectra[name] = run_spectra[keep]
        steps = spectrum_steps[keep]
    return steps, fields, spectra


def statistics_of(engine: RolloutEngine, window: int, channel: int | None = None) -> WindowStatistics:
    """Return the value PDFs, time-mean spectra and distances to the truth over the last ``window`` steps."""
    steps, fields, spectra = aligned_histories(engine)
    wavenumbers = engine.system.wavenumbers.detach().cpu().numpy()
    reference = "truth" if "truth" in fields else engine.run_names[0]
    return window_statistics(steps, fields, spectra, window, reference_run=reference, wavenumbers=wavenumbers,
                             channel=channel)


def calibration_of(engine: RolloutEngine, levels=CALIBRATION_LEVELS, states: int = CALIBRATION_STATES,
                   seed: int = 0) -> ConfusionResult:
    """Noise recent true states to known ``levels`` and tabulate what the thermalizer's classifier reads."""
    if engine.thermalizer is None:
        raise ValueError("this engine has no thermalizer, so there is no classifier to check")
    if "truth" not in engine.runs:
        raise ValueError("the classifier check needs the true run, which this engine does not advance")
    _, truth = engine.recent_fields("truth")
    clean = torch.from_numpy(truth.reshape(-1, *truth.shape[2:]))
    # Evenly spaced rows of the recent truth: neighbouring steps are nearly the same state.
    rows = np.linspace(0, clean.shape[0] - 1, min(states, clean.shape[0])).round().astype(int)
    clean = clean[np.unique(rows)].to(engine.device)
    generator = torch.Generator(device=engine.device)
    generator.manual_seed(seed)
    return classifier_confusion(engine.thermalizer, clean, levels, generator=generator)


def netcdf_of(engine: RolloutEngine) -> bytes:
    """Return the recent trajectory of every run as netCDF bytes (h5netcdf), with the settings as attributes."""
    dataset = export.engine_dataset(engine)
    with tempfile.TemporaryDirectory() as folder:
        path = pathlib.Path(folder) / "trajectory.nc"
        export.write_netcdf(dataset, path)
        return path.read_bytes()


def gif_of(engine: RolloutEngine, trajectory: int, channel: int, frames: int) -> bytes:
    """Return an animated GIF of the last ``frames`` kept steps of every run, for one trajectory and channel."""
    frames = max(1, min(frames, MAX_GIF_FRAMES))
    run_settings = {name: engine.run_settings(name) for name in engine.thermalized_names}
    frames_by_run = {}
    steps = None
    for name in engine.run_names:
        steps, fields = engine.recent_fields(name)
        frames_by_run[run_label(name, run_settings)] = fields[-frames:, trajectory, channel]
        steps = steps[-frames:]
    title = f"{engine.system.name}, trajectory {trajectory}"
    return animation.gif_bytes(frames_by_run, steps, title=title)


def view_png(frame: Frame, trajectory: int, channel: int) -> bytes:
    """Draw the frame as the page shows it (fields of every run, spectra, predicted levels) and return a PNG."""
    names = frame.info.runs
    figure = plt.figure(figsize=(3.2 * len(names), 6.4), constrained_layout=True)
    grid = figure.add_gridspec(2, len(names))
    limit = color_limit(frame.fields, channel)
    for column, name in enumerate(names):
        axis = figure.add_subplot(grid[0, column])
        draw_field(axis, frame, name, trajectory, channel, limit)
        axis.set_title(run_label(name, frame.run_settings), fontsize=9)
    draw_spectra(figure.add_subplot(grid[1, : len(names) // 2 or 1]), frame, trajectory)
    draw_levels(figure.add_subplot(grid[1, len(names) // 2 or 1:]), frame, trajectory)
    figure.suptitle(f"{frame.info.system}: step {frame.step}, trajectory {trajectory}, s_init "
                    f"{frame.settings.s_init}, s_stop {frame.settings.s_stop}", fontsize=11)
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=100)
    plt.close(figure)
    return buffer.getvalue()


def draw_field(axis, frame: Frame, name: str, trajectory: int, channel: int, limit: float) -> None:
    """Draw a 2D field, or for KS the space-time diagram the page keeps (step across, x up)."""
    extent = frame.info.extent
    if frame.info.is_1d and frame.space_time is not None:
        steps, rows = frame.space_time[name]
        image = rows[:, trajectory, :].T if steps.size else np.zeros((1, 1))
        first, last = (float(steps[0]), float(steps[-1]) + 1) if steps.size else (0.0, 1.0)
        axis.imshow(image, origin="lower", aspect="auto", cmap="RdBu_r", vmin=-limit, vmax=limit,
                    extent=(first, last, 0.0, extent[0]))
        axis.set_xlabel("step")
        axis.set_ylabel(f"x ({frame.info.length_unit})")
        return
    image = frame.fields[name][trajectory, channel]
    axis.imshow(image, origin="lower", cmap="RdBu_r", vmin=-limit, vmax=limit,
                extent=(0.0, extent[-1], 0.0, extent[-2]))
    axis.set_xlabel(f"x ({frame.info.length_unit})")
    axis.set_ylabel(f"y ({frame.info.length_unit})")


def draw_spectra(axis, frame: Frame, trajectory: int) -> None:
    wavenumbers = frame.info.wavenumbers
    for name in frame.info.runs:
        spectrum = np.asarray(frame.spectra[name][trajectory], dtype=np.float64)
        count = min(spectrum.size, wavenumbers.size)
        positive = (wavenumbers[:count] > 0) & (spectrum[:count] > 0)
        axis.loglog(wavenumbers[:count][positive], spectrum[:count][positive], color=RUN_COLORS.get(name),
                    label=run_label(name, frame.run_settings))
    if frame.info.reference_spectrum is not None:
        reference = frame.info.reference_spectrum
        count = min(reference.size, wavenumbers.size)
        positive = (wavenumbers[:count] > 0) & (reference[:count] > 0)
        axis.loglog(wavenumbers[:count][positive], reference[:count][positive], color="grey", linestyle="--",
                    label="true time mean")
    axis.set_xlabel(f"wavenumber (1/{frame.info.length_unit})")
    axis.set_ylabel("energy spectrum")
    axis.legend(fontsize=7)


def draw_levels(axis, frame: Frame, trajectory: int) -> None:
    for name in frame.info.runs:
        history = frame.history[name]
        axis.plot(history["step"], level_or_nan(history["level"][:, trajectory]), color=RUN_COLORS.get(name),
                  linewidth=1)
    axis.axhline(frame.settings.s_init, color="#009E73", linewidth=1.5, label="s_init")
    axis.axhline(frame.settings.s_stop, color="#009E73", linewidth=1.5, linestyle="--", label="s_stop")
    axis.set_xlabel("step")
    axis.set_ylabel("predicted noise level s")
    axis.legend(fontsize=7)
