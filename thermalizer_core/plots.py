"""PNG plots of headless rollouts (matplotlib, no display needed)."""
from __future__ import annotations

import pathlib
from typing import TYPE_CHECKING

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

if TYPE_CHECKING:
    from .engine import RolloutEngine
    from .rollout import RolloutRecord

RUN_COLOURS = {"truth": "black", "emulator": "tab:red", "thermalized": "tab:blue"}


def plot_measure(engine: "RolloutEngine", record: "RolloutRecord", path: pathlib.Path) -> None:
    """Plot the energy or enstrophy of every trajectory against step, with the stable band shaded."""
    figure, axis = plt.subplots(figsize=(8, 4), constrained_layout=True)
    steps = np.array(record.steps)
    for name, rows in record.series.items():
        values = np.stack(rows["measure"])
        axis.plot(steps, values, color=RUN_COLOURS[name], alpha=0.5, linewidth=0.8)
        axis.plot([], [], color=RUN_COLOURS[name], label=name)
    if engine.band is not None:
        axis.axhspan(engine.band.lower, engine.band.upper, color="grey", alpha=0.15, label="stable band")
        axis.axhspan(engine.band.measure_min, engine.band.measure_max, color="grey", alpha=0.2,
                     label="range of long true runs")
        axis.set_ylim(0, engine.band.upper * 2)
    axis.set_xlabel("emulator step")
    axis.set_ylabel(engine.system.measure_name)
    axis.set_title(f"{engine.system.name}: {engine.system.measure_name} of {engine.batch} trajectories")
    axis.legend(loc="upper left", fontsize="small")
    figure.savefig(path, dpi=110)
    plt.close(figure)


def plot_spectra(engine: "RolloutEngine", record: "RolloutRecord", path: pathlib.Path) -> None:
    """Plot the batch-mean spectrum of each run at a few steps against the true time-mean spectrum."""
    names = list(record.spectra)
    figure, axes = plt.subplots(1, len(names), figsize=(4 * len(names), 3.6), sharey=True,
                                constrained_layout=True, squeeze=False)
    wavenumbers = engine.system.wavenumbers.cpu().numpy()
    colours = plt.cm.viridis(np.linspace(0, 1, len(record.spectrum_steps)))
    for axis, name in zip(axes[0], names):
        for colour, step in zip(colours, sorted(record.spectra[name])):
            axis.loglog(wavenumbers[1:], record.spectra[name][step].mean(axis=0)[1:], color=colour,
                        label=f"step {step}")
        if engine.band is not None:
            axis.loglog(wavenumbers[1:], np.array(engine.band.reference_spectrum)[1:], "k--", label="true mean")
        axis.set_title(name)
        axis.set_xlabel("wavenumber")
    axes[0, 0].set_ylabel("energy spectrum")
    axes[0, -1].legend(fontsize="small")
    figure.savefig(path, dpi=110)
    plt.close(figure)


def plot_ticker_tape(record: "RolloutRecord", path: pathlib.Path) -> None:
    """Plot the denoising steps applied per trajectory and saved step (the "ticker tape")."""
    tape = np.stack(record.series["thermalized"]["denoising_steps"], axis=1)
    figure, axis = plt.subplots(figsize=(8, 2 + 0.15 * tape.shape[0]), constrained_layout=True)
    image = axis.imshow(tape, aspect="auto", interpolation="nearest", cmap="magma",
                        extent=(record.steps[0] - 0.5, record.steps[-1] + 0.5, tape.shape[0] - 0.5, -0.5))
    figure.colorbar(image, ax=axis, label="denoising steps")
    axis.set_xlabel("emulator step")
    axis.set_ylabel("trajectory")
    axis.set_title(f"denoising steps at every {record.save_every}th step")
    figure.savefig(path, dpi=110)
    plt.close(figure)
