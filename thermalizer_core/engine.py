"""The rollout engine: truth, emulator alone and thermalized emulators, advanced in lockstep.

For a batch of initial conditions the engine keeps these runs on one device:

``truth``
    the numerical solver, mapped to the emulator grid after every step. With
    ``classify_truth`` the thermalizer classifies it too, as a reference reading;
``emulator``
    the emulator applied to its own output; the thermalizer classifies it too,
    without changing it, so both runs show the predicted noise level ``s``;
``thermalized``
    the same emulator, and after each step the thermalizer's algorithm
    (Pedersen, Zanna & Bruna, ICML 2025, Algorithm 1): classify every
    trajectory, and denoise those whose level ``s`` exceeds ``s_init`` from ``s``
    down to ``s_stop``, all in one batched reverse loop;
variants
    up to :data:`MAX_VARIANTS` more thermalized runs, each with its own
    :class:`ThermalizerSettings` and named by the caller, to compare thresholds
    side by side.

All runs start from the same initial condition. Every emulated run draws its
emulator noise from its own generator with the same seed, and every thermalized
run denoises with its own generator seeded alike. So with ``s_init`` above every
level a thermalized run equals the emulator run exactly, and a variant with the
settings of ``thermalized`` equals it bit for bit. A trajectory that turns
non-finite is frozen at its last finite state. One whose level exceeds
``hard_limit`` is stopped where it is. Both are marked with the step and reason,
and the rest of the batch goes on.

:meth:`RolloutEngine.perturb` adds diffusion noise to every emulated run at
once, to show how the thermalizer pulls a rollout back. Per-step records live in
ring buffers of ``history`` rows, and the recent fields in a ring buffer sized
by a memory budget (:data:`FIELD_HISTORY_BYTES`).
"""
from __future__ import annotations

import dataclasses
import logging
import math
import numbers
import time
from typing import Any, Iterable, Mapping, Sequence

import numpy as np
import torch

from . import diagnostics
from .history import RingBuffer
from .models import ddpm
from .models.emulator import Emulator
from .models.thermalizer import Thermalizer
from .stability import HARD_LIMIT, NON_FINITE, SOLVER_ERROR, StabilityMonitor, StableBand
from .systems import System

logger = logging.getLogger(__name__)

RUNS = ("truth", "emulator", "thermalized")
#: Quantities recorded per step and trajectory, in every run's history.
RECORDS = ("measure", "mse", "correlation", "level", "denoising_steps", "stable")
#: Maximum number of thermalized variants next to the main thermalized run.
MAX_VARIANTS = 3
#: Memory budget of the recent-fields ring buffers of all runs together, in bytes, when
#: ``field_history`` is None. The rows it gives are clamped to the range below.
FIELD_HISTORY_BYTES = 32 * 2**20
MIN_FIELD_HISTORY_ROWS = 16
MAX_FIELD_HISTORY_ROWS = 500
#: Mixed into the default seed of a perturbation, so its noise stream differs from the emulator noise.
PERTURBATION_STREAM = 7


class InvalidSettingsError(ValueError):
    """A thermalizer setting is out of range."""


@dataclasses.dataclass(frozen=True)
class ThermalizerSettings:
    """Settings that can change between any two steps; levels count from 0 of ``T`` (1000)."""

    #: Denoise a trajectory when its predicted level exceeds this.
    s_init: int = 10
    #: Level where denoising stops (0 denoises down to the lowest level of the schedule).
    s_stop: int = 4
    #: Noise a treated trajectory to its predicted level before denoising it.
    forward_diffuse: bool = False
    #: Stop a thermalized trajectory whose predicted level exceeds this (None: never).
    hard_limit: int | None = None
    #: Emulator noise in normalized units (None: the checkpoint's sigma).
    emulator_sigma: float | None = None
    #: Classify (and so thermalize) only every this many steps.
    classify_every: int = 1

    def validate(self, num_levels: int) -> None:
        """Raise InvalidSettingsError naming the first setting out of range."""
        if not 0 <= self.s_stop < num_levels:
            raise InvalidSettingsError(f"s_stop = {self.s_stop} is out of range: use 0 to {num_levels - 1}")
        if not 0 <= self.s_init < num_levels:
            raise InvalidSettingsError(f"s_init = {self.s_init} is out of range: use 0 to {num_levels - 1}")
        if self.hard_limit is not None and not 0 <= self.hard_limit < num_levels:
            raise InvalidSettingsError(f"hard_limit = {self.hard_limit} is out of range: use 0 to {num_levels - 1} "
                                       "or None")
        if self.emulator_sigma is not None and not (self.emulator_sigma >= 0 and math.isfinite(self.emulator_sigma)):
            raise InvalidSettingsError(f"emulator_sigma = {self.emulator_sigma} is invalid: use a value >= 0 or None")
        if self.classify_every < 1:
            raise InvalidSettingsError(f"classify_every = {self.classify_every} is invalid: use 1 or more")


@dataclasses.dataclass
class RunTimer:
    """Wall time of one run and the part of it spent in network evaluations."""

    total_s: float = 0.0
    network_s: float = 0.0
    network_calls: int = 0
    sample_evaluations: int = 0


class Run:
    """One trajectory batch of the engine: its current fields, exits and history.

    ``recent_fields`` keeps the last ``field_history`` fields ``(B, C, *grid)``
    (None when ``field_history`` is 0) and ``recent_spectra`` the last
    ``history`` energy spectra ``(B, n_k)``, both float32 and starting at step 0.
    """

    def __init__(self, name: str, field: torch.Tensor, band: StableBand | None, history: int, field_history: int,
                 spectrum_length: int):
        batch = field.shape[0]
        self.name = name
        self.field = field
        self.active = torch.ones(batch, dtype=torch.bool, device=field.device)
        self.monitor = StabilityMonitor(band, batch, field.device)
        self.level = torch.full((batch,), -1, dtype=torch.long, device=field.device)
        self.denoising_steps = torch.zeros(batch, dtype=torch.long, device=field.device)
        self.spectrum: torch.Tensor | None = None
        self.timer = RunTimer()
        self.thermalized_total = 0
        self.denoising_total = 0
        self.history = {name: RingBuffer(history, (batch,), np.int32 if name in ("level", "denoising_steps")
                                         else (np.bool_ if name == "stable" else np.float32)) for name in RECORDS}
        self.recent_fields = (RingBuffer(field_history, tuple(field.shape), np.float32) if field_history > 0
                              else None)
        self.recent_spectra = RingBuffer(history, (batch, spectrum_length), np.float32)


def perturbation_window(grid: Sequence[int], center: Sequence[float], width: float) -> torch.Tensor:
    """Return the periodic Gaussian window ``(*grid)`` float64 that peaks at 1 at ``center``.

    ``center`` contains one fraction of the domain per grid axis and ``width`` is
    the standard deviation, also as a fraction of the domain. Along each axis the
    distance to the centre is the shortest one on the periodic domain, at most
    half the domain, and the window is the product of the axes' Gaussians.
    """
    window = torch.ones(tuple(grid), dtype=torch.float64)
    for axis, (points, fraction) in enumerate(zip(grid, center)):
        position = torch.arange(points, dtype=torch.float64) / points
        distance = torch.remainder(position - fraction + 0.5, 1.0) - 0.5
        profile = torch.exp(-0.5 * (distance / width) ** 2)
        shape = [1] * len(grid)
        shape[axis] = points
        window = window * profile.reshape(shape)
    return window


class RolloutEngine:
    """Advances truth, emulator-only and thermalized runs of one batch in lockstep.

    ``system`` gives the truth and the diagnostics. ``emulator`` and
    ``thermalizer`` are the loaded models. The thermalizer may be None, and then
    there is no thermalized run and no level is predicted. ``runs`` selects
    which of :data:`RUNS` to advance. Everything runs on ``device`` (default:
    CUDA when present). The same ``seed`` gives the same run on the same device.

    ``variants`` maps names to the settings of extra thermalized runs (at most
    :data:`MAX_VARIANTS`; they need a thermalizer). With ``classify_truth`` the
    thermalizer, if there is one, also classifies the truth, every
    ``classify_every`` steps of the main settings. ``field_history`` is the number of recent steps whose fields
    are kept (:meth:`recent_fields`): None sizes it from
    :data:`FIELD_HISTORY_BYTES`, and 0 keeps none.
    """

    def __init__(self, system: System, emulator: Emulator, thermalizer: Thermalizer | None, *, batch: int = 4,
                 seed: int = 0, device: torch.device | str | None = None, runs: Iterable[str] = RUNS,
                 settings: ThermalizerSettings | None = None, history: int = 2000,
                 variants: Mapping[str, ThermalizerSettings] | None = None, classify_truth: bool = False,
                 field_history: int | None = None):
        runs = tuple(runs)
        unknown = [run for run in runs if run not in RUNS]
        if unknown:
            raise ValueError(f"unknown runs {unknown}; choose from {', '.join(RUNS)}")
        if thermalizer is None and "thermalized" in runs:
            raise ValueError("the thermalized run needs a thermalizer; pass one or leave 'thermalized' out of runs")
        if batch < 1:
            raise ValueError(f"batch = {batch} is invalid: use 1 or more")
        if field_history is not None and field_history < 0:
            raise ValueError(f"field_history = {field_history} is invalid: use 0 (keep no fields), a positive "
                             "number of rows, or None (size from the memory budget)")
        self.system = system
        self.device = torch.device(device) if device is not None else torch.device(
            "cuda" if torch.cuda.is_available() else "cpu")
        self.emulator = emulator.to(self.device).eval()
        self.thermalizer = thermalizer.to(self.device).eval() if thermalizer is not None else None
        self.builtin_run_names = tuple(run for run in RUNS if run in runs)
        self._variants = self.validated_variants(variants)
        self.classify_truth = bool(classify_truth)
        self.batch = batch
        self.history_length = history
        self.field_history = field_history
        reference = system.reference()
        self.band = StableBand.from_reference(reference) if reference is not None else None
        self.lyapunov_time_steps = reference.get("lyapunov_time_steps") if reference is not None else None
        self._settings = settings or ThermalizerSettings()
        self._settings.validate(self.num_levels)
        self.reset(seed)

    # -- run names ------------------------------------------------------------
    @property
    def run_names(self) -> tuple[str, ...]:
        """Names of the runs: those of :data:`RUNS` that were selected, then the variants in insertion order."""
        return self.builtin_run_names + tuple(self._variants)

    @property
    def variant_names(self) -> tuple[str, ...]:
        return tuple(self._variants)

    @property
    def thermalized_names(self) -> tuple[str, ...]:
        """Names of the thermalized runs: ``thermalized`` if selected, then the variants."""
        main = ("thermalized",) if "thermalized" in self.builtin_run_names else ()
        return main + self.variant_names

    @property
    def emulated_names(self) -> tuple[str, ...]:
        """Names of the runs the emulator advances: ``emulator`` if selected, then the thermalized runs."""
        alone = ("emulator",) if "emulator" in self.builtin_run_names else ()
        return alone + self.thermalized_names

    # -- settings -------------------------------------------------------------
    @property
    def num_levels(self) -> int:
        return self.thermalizer.T if self.thermalizer is not None else 1000

    @property
    def settings(self) -> ThermalizerSettings:
        return self._settings

    @settings.setter
    def settings(self, settings: ThermalizerSettings) -> None:
        settings.validate(self.num_levels)
        self._settings = settings

    def update_settings(self, **changes: Any) -> ThermalizerSettings:
        """Change some settings; they take effect from the next step. Returns the new settings."""
        self.settings = dataclasses.replace(self._settings, **changes)
        return self._settings

    def run_settings(self, name: str) -> ThermalizerSettings:
        """Return the settings that run ``name`` steps with.

        A variant has its own settings. Every other run uses the main settings:
        the truth only their ``classify_every`` (with ``classify_truth``), and the
        emulator run their ``emulator_sigma`` and ``classify_every``.
        """
        if name in self._variants:
            return self._variants[name]
        if name not in self.builtin_run_names:
            raise ValueError(f"unknown run {name!r}; this engine has the runs {', '.join(self.run_names)}")
        return self._settings

    def validated_variants(self, variants: Mapping[str, ThermalizerSettings] | None) -> dict[str, ThermalizerSettings]:
        """Return ``variants`` as a new dict after checking the names, the count and each variant's settings."""
        variants = dict(variants or {})
        if not variants:
            return variants
        if self.thermalizer is None:
            raise ValueError(f"the variants {', '.join(map(repr, variants))} are thermalized runs and need a "
                             "thermalizer; pass one or no variants")
        if len(variants) > MAX_VARIANTS:
            raise ValueError(f"{len(variants)} variants requested ({', '.join(map(repr, variants))}); "
                             f"use at most {MAX_VARIANTS}")
        for name, settings in variants.items():
            if not isinstance(name, str) or not name.strip():
                raise ValueError(f"variant name {name!r} is invalid: use a non-empty string")
            if name in RUNS:
                raise ValueError(f"variant name {name!r} is the name of a built-in run; use a name other than "
                                 f"{', '.join(RUNS)}")
            self.check_variant_settings(name, settings)
        return variants

    def check_variant_settings(self, name: str, settings: ThermalizerSettings) -> None:
        if not isinstance(settings, ThermalizerSettings):
            raise TypeError(f"variant {name!r} needs ThermalizerSettings, got {type(settings).__name__}")
        try:
            settings.validate(self.num_levels)
        except InvalidSettingsError as error:
            raise InvalidSettingsError(f"variant {name!r}: {error}") from error

    def update_variant(self, name: str, settings: ThermalizerSettings) -> None:
        """Give variant ``name`` new settings; they take effect from the next step."""
        if name not in self._variants:
            known = ", ".join(map(repr, self._variants)) or "none"
            raise ValueError(f"unknown variant {name!r}; the variants of this engine are: {known}")
        self.check_variant_settings(name, settings)
        self._variants[name] = settings
        logger.info("variant %r: settings changed at step %d to %s", name, self.step_count, settings)

    def set_variants(self, variants: Mapping[str, ThermalizerSettings] | None) -> None:
        """Replace the variants and start every run again from step 0 with the current seed.

        The restart gives the new variants the initial condition of the other
        runs. Invalid variants raise before anything changes.
        """
        self._variants = self.validated_variants(variants)
        logger.info("variants set to %s; restarting from step 0 with seed %d",
                    list(self._variants) or "none", self.seed)
        self.reset()

    # -- set-up ---------------------------------------------------------------
    @property
    def field_history_rows(self) -> int:
        """Capacity of the recent-fields ring buffers, in steps (0 when they are off)."""
        if self.field_history is not None:
            return self.field_history
        step_bytes = max(len(self.run_names), 1) * self.batch * math.prod(self.system.field_shape) * 4
        return min(max(FIELD_HISTORY_BYTES // step_bytes, MIN_FIELD_HISTORY_ROWS), MAX_FIELD_HISTORY_ROWS)

    def reset(self, seed: int | None = None) -> None:
        """Start again from step 0 with new initial states drawn from ``seed`` (default: the current seed)."""
        if seed is not None:
            self.seed = int(seed)
        self.step_count = 0
        self.perturbation_count = 0
        self.steps_record = RingBuffer(self.history_length, (), np.int64)
        truth_state = self.system.initial_state(self.batch, seed=self.seed, device=self.device)
        field = self.system.to_emulator_grid(truth_state).float()
        self.truth_state = truth_state if "truth" in self.run_names else None
        self.truth_states = self.system.trajectory(truth_state) if "truth" in self.run_names else None
        field_rows = self.field_history_rows
        spectrum_length = len(self.system.wavenumbers)
        self.runs = {name: Run(name, field.clone(), self.band, self.history_length, field_rows, spectrum_length)
                     for name in self.run_names}
        self.generators = {name: self.make_generator(self.seed) for name in ("emulator", "thermalized",
                                                                             *self._variants)}
        self.denoising_generators = {name: self.make_generator(self.seed + 1)
                                     for name in ("thermalized", *self._variants)}
        self.field_steps = RingBuffer(field_rows, (), np.int64) if field_rows > 0 else None
        self.spectrum_steps = RingBuffer(self.history_length, (), np.int64)
        for run in self.runs.values():
            run.spectrum = self.system.energy_spectrum(run.field.double())
        self.record_recent()

    @property
    def denoising_generator(self) -> torch.Generator:
        """The denoising noise generator of the ``thermalized`` run."""
        return self.denoising_generators["thermalized"]

    def make_generator(self, seed: int) -> torch.Generator:
        generator = torch.Generator(device=self.device)
        generator.manual_seed(seed)
        return generator

    # -- stepping ---------------------------------------------------------------
    def step(self, count: int = 1) -> None:
        """Advance every run by ``count`` emulator intervals."""
        for _ in range(count):
            self.advance_one()

    def advance_one(self) -> None:
        self.step_count += 1
        if "truth" in self.runs:
            self.advance_truth()
        thermalized = self.thermalized_names
        for name in self.emulated_names:
            self.advance_emulated(self.runs[name], self.run_settings(name), thermalize=name in thermalized)
        self.record()

    def synchronize(self) -> None:
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)

    def advance_truth(self) -> None:
        run = self.runs["truth"]
        run.level.fill_(-1)
        if not bool(run.active.any()):
            return
        started = time.perf_counter()
        try:
            self.truth_state = next(self.truth_states)
        except (ValueError, RuntimeError) as error:
            # The solver rejects non-finite states and time steps past its stability limit;
            # the truth then stops where it is and the emulated runs go on.
            logger.error("true %s run stopped at step %d: %s", self.system.name, self.step_count, error)
            run.monitor.mark(self.step_count, run.active, f"{SOLVER_ERROR}: {error}")
            run.active.zero_()
            return
        field = self.system.to_emulator_grid(self.truth_state).float()
        self.check_and_store(run, field)
        if self.classify_truth and self.thermalizer is not None and \
                self.step_count % self._settings.classify_every == 0:
            self.classify_run(run, run.field)
        self.synchronize()
        run.timer.total_s += time.perf_counter() - started

    def classify_run(self, run: Run, field: torch.Tensor) -> torch.Tensor:
        """Store the predicted level of ``field`` ``(B, C, *grid)`` in ``run.level`` and return it.

        Frozen and stopped members are classified with the batch, but their reading is not recorded (-1).
        """
        level = self.timed(run, self.batch, lambda: self.thermalizer.classify(field))
        run.level = torch.where(run.active, level, torch.full_like(level, -1))
        return run.level

    @torch.no_grad()
    def advance_emulated(self, run: Run, settings: ThermalizerSettings, thermalize: bool) -> None:
        started = time.perf_counter()
        field = self.timed(run, self.batch, lambda: self.emulator.step(
            run.field, generator=self.generators[run.name], sigma=settings.emulator_sigma))
        field = torch.where(self.per_member(run.active, field), field, run.field)
        # Freeze members that the emulator made non-finite before classification, because a NaN field
        # gets a meaningless level and could be denoised or stopped at the hard limit.
        field = self.freeze_non_finite(run, field)

        run.level.fill_(-1)
        run.denoising_steps.zero_()
        if self.thermalizer is not None and self.step_count % settings.classify_every == 0:
            self.classify_run(run, field)
            if thermalize:
                field = self.thermalize(run, field, settings)
        self.check_and_store(run, field)
        self.synchronize()
        run.timer.total_s += time.perf_counter() - started

    def thermalize(self, run: Run, field: torch.Tensor, settings: ThermalizerSettings) -> torch.Tensor:
        """Denoise the active members whose level exceeds ``s_init`` and stop those above the hard limit."""
        if settings.hard_limit is not None:
            over = run.active & (run.level > settings.hard_limit)
            if bool(over.any()):
                run.monitor.mark(self.step_count, over, HARD_LIMIT)
                run.active &= ~over
                field = torch.where(self.per_member(over, field), run.field, field)
        treated = run.active & (run.level > settings.s_init)
        if not bool(treated.any()):
            return field
        # The whole batch goes in, with untreated members at level -1, which the thermalizer returns unchanged.
        # Each member then takes its step noise from its own slice of every full-batch draw, so its
        # result does not depend on which other members are treated.
        # NOTE: it still depends on the deepest level in the batch, because one draw is made per level
        # from that level down (ddpm.denoise_heterogeneous).
        start_levels = torch.where(treated, run.level, torch.full_like(run.level, -1))
        depth = int(start_levels.max()) - settings.s_stop
        evaluations = int((start_levels - settings.s_stop).clamp(min=0).sum())
        generator = self.denoising_generators[run.name]
        denoised, steps = self.timed(run, evaluations, lambda: self.thermalizer.denoise(
            field, start_levels, settings.s_stop, settings.forward_diffuse, generator=generator),
            calls=max(depth, 0))
        run.denoising_steps = steps.to(run.denoising_steps.dtype)
        # A member above s_init but at or below s_stop (possible when s_stop >= s_init) gets no step.
        run.thermalized_total += int((steps > 0).sum())
        run.denoising_total += int(steps.sum())
        return denoised

    def timed(self, run: Run, evaluations: int, function, calls: int = 1):
        """Call ``function`` and add its wall time to the run's network time."""
        self.synchronize()
        started = time.perf_counter()
        result = function()
        self.synchronize()
        run.timer.network_s += time.perf_counter() - started
        run.timer.network_calls += calls
        run.timer.sample_evaluations += evaluations
        return result

    @staticmethod
    def per_member(mask: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
        return mask.reshape(-1, *([1] * (like.dim() - 1)))

    def freeze_non_finite(self, run: Run, field: torch.Tensor) -> torch.Tensor:
        """Mark active members of ``field`` with a non-finite value, stop them and return them at ``run.field``."""
        finite = torch.isfinite(field.reshape(field.shape[0], -1)).all(dim=1)
        broken = run.active & ~finite
        if bool(broken.any()):
            run.monitor.mark(self.step_count, broken, NON_FINITE)
            run.active &= ~broken
            field = torch.where(self.per_member(broken, field), run.field, field)
        return field

    def check_and_store(self, run: Run, field: torch.Tensor) -> None:
        """Freeze members that turned non-finite at their last finite state, then update the stability checks."""
        field = self.freeze_non_finite(run, field)
        run.field = field
        run.spectrum = self.system.energy_spectrum(field.double())
        run.monitor.update(self.step_count, field, self.system.measure(field.double()), run.spectrum)

    def record(self) -> None:
        self.steps_record.append(np.int64(self.step_count))
        truth = self.runs.get("truth")
        for run in self.runs.values():
            values = {
                "measure": self.system.measure(run.field.double()),
                "level": run.level,
                "denoising_steps": run.denoising_steps,
                "stable": run.monitor.stable,
            }
            if truth is not None:
                values["mse"] = diagnostics.mse(run.field, truth.field)
                values["correlation"] = diagnostics.pearson_correlation(run.field, truth.field)
            else:
                values["mse"] = values["correlation"] = torch.full((self.batch,), float("nan"))
            for name, value in values.items():
                run.history[name].append(value.detach().cpu().numpy())
        self.record_recent()

    def record_recent(self) -> None:
        """Append the current step's fields and spectra to the recent-fields and recent-spectra buffers."""
        step = np.int64(self.step_count)
        self.spectrum_steps.append(step)
        if self.field_steps is not None:
            self.field_steps.append(step)
        for run in self.runs.values():
            run.recent_spectra.append(run.spectrum.detach().cpu().numpy())
            if run.recent_fields is not None:
                run.recent_fields.append(run.field.detach().cpu().numpy())

    # -- perturbation -----------------------------------------------------------
    @torch.no_grad()
    def perturb(self, level: int, *, center: Sequence[float] | None = None, width: float = 0.1,
                seed: int | None = None) -> dict[str, torch.Tensor]:
        """Add diffusion noise of level ``level`` to every emulated run, then classify them.

        In the thermalizer's normalized units each active member ``x`` becomes
        ``x_t = sqrt(alphas_cumprod[level]) x + sqrt(1 - alphas_cumprod[level]) eps``
        of the thermalizer's schedule, with the same draw ``eps`` ``(B, C, *grid)``
        for every run. The truth is left alone. With ``center`` (one fraction of
        the domain in [0, 1) per grid axis, in the order of the grid axes) the
        change is local: ``x + w (x_t - x)``. Here ``w`` is the periodic Gaussian
        window of :func:`perturbation_window`, with standard deviation ``width``
        as a fraction of the domain.

        ``eps`` comes from a generator of its own, seeded with ``seed`` (default:
        derived from the engine seed and the number of perturbations since the
        last reset), so the emulator and denoising noise are unchanged. The
        predicted levels are stored in each run's ``level`` and returned as
        ``{run name: (B,) long}``; the next step records its own reading.
        Raises ValueError for a level outside [1, T), an invalid centre or width,
        or an engine without a thermalizer or emulated run.
        """
        if self.thermalizer is None:
            raise ValueError("perturb needs a thermalizer, for its noise schedule and classifier; "
                             "this engine has none")
        self.check_perturbation_level(level)
        window = self.check_perturbation_window(center, width)
        names = self.emulated_names
        if not names:
            raise ValueError(f"this engine has no emulated run to perturb (runs: {', '.join(self.run_names)})")
        if seed is None:
            seed = self.default_perturbation_seed()
        generator = self.make_generator(int(seed))
        self.perturbation_count += 1

        eps = torch.randn((self.batch, *self.system.field_shape), generator=generator, device=self.device,
                          dtype=torch.float32)
        levels = {}
        for name in names:
            run = self.runs[name]
            run.field = self.perturbed_field(run, int(level), eps, window)
            run.spectrum = self.system.energy_spectrum(run.field.double())
            levels[name] = self.classify_run(run, run.field).clone()
        logger.info("perturbed %s at step %d with level %d %s (seed %d); predicted levels %s",
                    ", ".join(names), self.step_count, level,
                    "everywhere" if center is None else f"around {tuple(center)} with width {width}", seed,
                    {name: value.tolist() for name, value in levels.items()})
        return levels

    def check_perturbation_level(self, level: int) -> None:
        if isinstance(level, bool) or not isinstance(level, numbers.Integral) or not 1 <= level < self.num_levels:
            raise ValueError(f"perturbation level {level!r} is invalid: use an integer from 1 to {self.num_levels - 1}")

    def check_perturbation_window(self, center: Sequence[float] | None, width: float) -> torch.Tensor | None:
        """Return the window ``(*grid)`` of a local perturbation (None for a global one) after checking its arguments."""
        if not (isinstance(width, numbers.Real) and math.isfinite(width) and width > 0):
            raise ValueError(f"perturbation width {width!r} is invalid: use a positive fraction of the domain")
        if center is None:
            return None
        grid = self.system.field_shape[1:]
        center = tuple(center)
        if len(center) != len(grid):
            raise ValueError(f"perturbation center {center} has {len(center)} values; {self.system.name} needs "
                             f"{len(grid)}, one fraction in [0, 1) per grid axis")
        for fraction in center:
            if not (isinstance(fraction, numbers.Real) and 0 <= fraction < 1):
                raise ValueError(f"perturbation center {center} is invalid: {fraction!r} is not a fraction "
                                 "of the domain in [0, 1)")
        return perturbation_window(grid, center, width).to(device=self.device, dtype=torch.float32)

    def default_perturbation_seed(self) -> int:
        sequence = np.random.SeedSequence([self.seed % 2**64, PERTURBATION_STREAM, self.perturbation_count])
        return int(sequence.generate_state(1)[0])

    def perturbed_field(self, run: Run, level: int, eps: torch.Tensor, window: torch.Tensor | None) -> torch.Tensor:
        """Return ``run.field`` with the noise of ``level`` added to its active members (see :meth:`perturb`)."""
        normalization = self.thermalizer.normalization
        clean = normalization.normalize(run.field)
        levels = torch.full((self.batch,), level, dtype=torch.long, device=self.device)
        noised = ddpm.q_sample(clean, levels, eps, self.thermalizer.schedule_on(self.device))
        increment = noised - clean
        if window is not None:
            increment = window * increment
        # The increment goes back to physical units alone, so untouched points keep their value exactly.
        std = normalization.std.to(device=self.device, dtype=run.field.dtype)
        field = run.field + std.reshape(1, -1, *([1] * len(self.system.field_shape[1:]))) * increment
        return torch.where(self.per_member(run.active, field), field, run.field)

    # -- results ----------------------------------------------------------------
    def exits(self, name: str) -> list[tuple[int | None, str | None]]:
        """Return ``(exit step, reason)`` per trajectory of run ``name``; ``(None, None)`` while stable."""
        monitor = self.runs[name].monitor
        return [(int(step) if step >= 0 else None, reason)
                for step, reason in zip(monitor.exit_step.tolist(), monitor.exit_reason)]

    def history(self, name: str) -> dict[str, np.ndarray]:
        """Return run ``name``'s recorded rows, oldest first: ``step`` ``(H,)`` and each record ``(H, B)``."""
        rows = {record: buffer.values() for record, buffer in self.runs[name].history.items()}
        rows["step"] = self.steps_record.values()
        return rows

    def checked_run(self, name: str) -> Run:
        if name not in self.runs:
            raise ValueError(f"unknown run {name!r}; this engine has the runs {', '.join(self.run_names)}")
        return self.runs[name]

    def recent_fields(self, name: str) -> tuple[np.ndarray, np.ndarray]:
        """Return the steps ``(K,)`` int64 and fields ``(K, B, C, *grid)`` float32 of run ``name``, oldest first.

        K is at most :attr:`field_history_rows`, and the rows start at step 0
        after a reset. Raises ValueError when the engine keeps no fields.
        """
        run = self.checked_run(name)
        if run.recent_fields is None:
            raise ValueError("this engine keeps no recent fields (field_history=0); create it with "
                             "field_history=None or a positive number of rows")
        return self.field_steps.values(), run.recent_fields.values()

    def recent_spectra(self, name: str) -> tuple[np.ndarray, np.ndarray]:
        """Return the steps ``(K,)`` int64 and energy spectra ``(K, B, n_k)`` float32 of run ``name``, oldest first.

        K is at most ``history``, the rows start at step 0 after a reset, and the
        spectra are indexed by ``system.wavenumbers``.
        """
        run = self.checked_run(name)
        return self.spectrum_steps.values(), run.recent_spectra.values()

    def steps_per_second(self, name: str) -> float:
        timer = self.runs[name].timer
        return self.step_count / timer.total_s if timer.total_s > 0 else float("nan")

    def summary(self) -> dict[str, Any]:
        """Return per-run stable horizons, exit reasons, throughput and thermalization statistics."""
        runs = {}
        thermalized = self.thermalized_names
        for name, run in self.runs.items():
            horizon = run.monitor.horizon(self.step_count)
            entry = {
                "stable_horizon": horizon,
                "median_stable_horizon": float(np.median(horizon)),
                "exit_reasons": list(run.monitor.exit_reason),
                "steps_per_second": self.steps_per_second(name),
                "wall_time_s": run.timer.total_s,
                "network_time_s": run.timer.network_s,
                "network_calls": run.timer.network_calls,
                "sample_evaluations": run.timer.sample_evaluations,
            }
            if name in thermalized:
                trajectory_steps = max(self.step_count * self.batch, 1)
                entry["thermalized_fraction"] = run.thermalized_total / trajectory_steps
                entry["mean_denoising_steps"] = run.denoising_total / trajectory_steps
            runs[name] = entry
        summary = {"system": self.system.name, "steps": self.step_count, "batch": self.batch,
                   "settings": dataclasses.asdict(self._settings), "seed": self.seed, "device": str(self.device),
                   "runs": runs}
        if self._variants:
            summary["variants"] = {name: dataclasses.asdict(settings) for name, settings in self._variants.items()}
        return summary
