"""Snapshots that a session's worker thread publishes and its views render.

A :class:`Frame` contains NumPy copies only, so the event loop can read it while
the worker goes on stepping. :class:`EngineInfo` is the part that stays fixed
for one engine (system, grid, reference statistics, checkpoints), built once
per engine and shared by all its frames.
"""
from __future__ import annotations

import dataclasses
import math
from typing import Any

import numpy as np

from thermalizer_core.engine import RolloutEngine, ThermalizerSettings
from thermalizer_core.history import RingBuffer
from thermalizer_core.stability import HARD_LIMIT, NON_FINITE

from .checkpoints import ModelChoice

#: Names of the thermalized variants that the page can add for comparison, in order.
VARIANT_NAMES = ("variant A", "variant B", "variant C")
#: Run labels as the page shows them.
RUN_LABELS = {"truth": "Truth (solver)", "emulator": "Emulator only", "thermalized": "Thermalized",
              **{name: f"Thermalized, {name}" for name in VARIANT_NAMES}}


@dataclasses.dataclass(frozen=True)
class EngineInfo:
    """Fixed facts of one engine: the system, its grid, references and the loaded checkpoints."""

    generation: int
    system: str
    measure_name: str
    channels: tuple[str, ...]
    field_shape: tuple[int, ...]
    #: Domain length per spatial dimension in ``length_unit``, in the fields' axis order: y, x in 2D.
    extent: tuple[float, ...]
    length_unit: str
    #: Wavenumbers of the spectra in ``1/length_unit`` (QG's 1/m are converted to 1/km).
    wavenumbers: np.ndarray
    reference_spectrum: np.ndarray | None
    spectrum_p05: np.ndarray | None
    spectrum_p95: np.ndarray | None
    band_lower: float | None
    band_upper: float | None
    lyapunov_time_steps: float | None
    runs: tuple[str, ...]
    choice: ModelChoice
    emulator_sigma: float
    num_levels: int
    batch: int
    device: str

    @property
    def is_1d(self) -> bool:
        return len(self.field_shape) == 2


@dataclasses.dataclass(frozen=True)
class Frame:
    """The newest state of one session's runs, copied off the engine."""

    sequence: int
    info: EngineInfo
    #: Counts resets of the same engine, so views know when a run started over.
    run_id: int
    step: int
    steps_per_second: float
    running: bool
    settings: ThermalizerSettings
    fields: dict[str, np.ndarray]
    spectra: dict[str, np.ndarray]
    history: dict[str, dict[str, np.ndarray]]
    exits: dict[str, list[tuple[int | None, str | None]]]
    #: KS only: per run, the recorded steps ``(R,)`` and fields ``(R, B, n)``, oldest first.
    space_time: dict[str, tuple[np.ndarray, np.ndarray]] | None
    #: Settings of every thermalized run (the main one and the variants).
    run_settings: dict[str, ThermalizerSettings] = dataclasses.field(default_factory=dict)
    #: Noise added by hand since the run started, oldest first (``app.worker.Perturbation`` items).
    perturbations: tuple = ()


def domain_extent(system: Any) -> tuple[tuple[float, ...], str]:
    """Return the domain length per spatial dimension and its unit, for plot axes."""
    params = system.params
    if system.name == "ks":
        return (float(params.L),), "length"
    if system.name == "qg":
        # Fields are indexed [layer, y, x]. W = 0 means a square domain, as W=None does in pyqg.
        width = params.W if params.W > 0 else params.L
        return (float(width) / 1e3, float(params.L) / 1e3), "km"
    dims = len(system.field_shape) - 1
    return tuple(2 * math.pi for _ in range(dims)), "length"


def reference_arrays(system: Any) -> dict[str, np.ndarray | None]:
    """Return the true time-mean spectrum and its p05/p95 band from the system's reference, or None each."""
    reference = system.reference()
    if reference is None:
        return {"reference_spectrum": None, "spectrum_p05": None, "spectrum_p95": None}
    statistics = reference.get("statistics", {})

    def array(values: Any) -> np.ndarray | None:
        return None if values is None else np.asarray(values, dtype=np.float64)

    return {"reference_spectrum": array(reference.get("stable_band", {}).get("reference_spectrum")),
            "spectrum_p05": array(statistics.get("spectrum_p05")),
            "spectrum_p95": array(statistics.get("spectrum_p95"))}


def build_info(engine: RolloutEngine, generation: int, choice: ModelChoice, device_label: str) -> EngineInfo:
    """Collect the fixed facts of ``engine`` for the views."""
    system = engine.system
    extent, unit = domain_extent(system)
    wavenumbers = system.wavenumbers.detach().cpu().numpy().astype(np.float64)
    if unit == "km":
        wavenumbers = wavenumbers * 1e3
    lyapunov = engine.lyapunov_time_steps
    return EngineInfo(
        generation=generation,
        system=system.name,
        measure_name=system.measure_name,
        channels=tuple(system.channels),
        field_shape=tuple(system.field_shape),
        extent=extent,
        length_unit=unit,
        wavenumbers=wavenumbers,
        band_lower=engine.band.lower if engine.band is not None else None,
        band_upper=engine.band.upper if engine.band is not None else None,
        lyapunov_time_steps=float(lyapunov) if lyapunov is not None else None,
        runs=engine.run_names,
        choice=choice,
        emulator_sigma=float(engine.emulator.sigma),
        num_levels=engine.num_levels,
        batch=engine.batch,
        device=device_label,
        **reference_arrays(system),
    )


def capture(engine: RolloutEngine, info: EngineInfo, sequence: int, run_id: int, steps_per_second: float,
            running: bool, space_time: dict[str, RingBuffer] | None,
            space_time_steps: RingBuffer | None, perturbations: tuple = ()) -> Frame:
    """Copy the engine's current fields, spectra, histories and exits into a Frame."""
    names = engine.run_names
    recorded = None
    if space_time is not None and space_time_steps is not None:
        steps = space_time_steps.values()
        recorded = {name: (steps, space_time[name].values()) for name in names}
    return Frame(
        sequence=sequence,
        info=info,
        run_id=run_id,
        step=engine.step_count,
        steps_per_second=steps_per_second,
        running=running,
        settings=engine.settings,
        fields={name: engine.runs[name].field.detach().cpu().numpy().astype(np.float32) for name in names},
        spectra={name: engine.runs[name].spectrum.detach().cpu().numpy() for name in names},
        history={name: engine.history(name) for name in names},
        exits={name: engine.exits(name) for name in names},
        space_time=recorded,
        run_settings={name: engine.run_settings(name) for name in engine.thermalized_names},
        perturbations=perturbations,
    )


def run_label(name: str, run_settings: dict[str, ThermalizerSettings] | None = None) -> str:
    """Return the page label of run ``name``; a variant's label names its thresholds."""
    label = RUN_LABELS.get(name, name)
    settings = (run_settings or {}).get(name)
    if name in VARIANT_NAMES and settings is not None:
        label += f" (s_init {settings.s_init}, s_stop {settings.s_stop})"
    return label


def describe_exit(exit_step: int | None, reason: str | None) -> str:
    """Return a trajectory's stability, e.g. "stable" or "left the stable band at step 34 (out of band)"."""
    if exit_step is None:
        return "stable"
    if reason == NON_FINITE:
        return f"diverged at step {exit_step} (non-finite), held at its last finite state"
    if reason == HARD_LIMIT:
        return f"stopped at step {exit_step} (noise level above the hard limit)"
    return f"left the stable band at step {exit_step} ({reason})"


def short_exit(exit_step: int | None, reason: str | None) -> str:
    """Return a title-sized form of :func:`describe_exit`, or "" while stable."""
    if exit_step is None:
        return ""
    if reason == NON_FINITE:
        return f"diverged at step {exit_step}"
    if reason == HARD_LIMIT:
        return f"stopped at step {exit_step} (hard limit)"
    return f"left at step {exit_step} ({reason})"
