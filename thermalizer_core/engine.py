"""The rollout engine: truth, emulator alone and thermalized emulator, advanced in lockstep.

For a batch of initial conditions the engine keeps up to three runs on one
device:

``truth``
    the numerical solver, mapped to the emulator grid after every step;
``emulator``
    the emulator applied to its own output; the thermalizer classifies it too,
    without changing it, so both runs show the predicted noise level ``s``;
``thermalized``
    the same emulator, and after each step the thermalizer's algorithm
    (Pedersen, Zanna & Bruna, ICML 2025, Algorithm 1): classify every
    trajectory, and denoise those whose level ``s`` exceeds ``s_init`` from ``s``
    down to ``s_stop``, all in one batched reverse loop.

Both emulator runs draw their emulator noise from generators with the same
seed, so with ``s_init`` above every level the thermalized run equals the
emulator run exactly. A trajectory that turns non-finite is frozen at its last
finite state. One whose level exceeds ``hard_limit`` is stopped where it is.
Both are marked with the step and reason, and the rest of the batch goes on.
Per-step records live in ring buffers of ``history`` rows.
"""
from __future__ import annotations

import dataclasses
import logging
import math
import time
from typing import Any, Iterable

import numpy as np
import torch

from . import diagnostics
from .history import RingBuffer
from .models.emulator import Emulator
from .models.thermalizer import Thermalizer
from .stability import HARD_LIMIT, NON_FINITE, SOLVER_ERROR, StabilityMonitor, StableBand
from .systems import System

logger = logging.getLogger(__name__)

RUNS = ("truth", "emulator", "thermalized")
#: Quantities recorded per step and trajectory, in every run's history.
RECORDS = ("measure", "mse", "correlation", "level", "denoising_steps", "stable")


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
    """One trajectory batch of the engine: its current fields, exits and history."""

    def __init__(self, name: str, field: torch.Tensor, band: StableBand | None, history: int):
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


class RolloutEngine:
    """Advances truth, emulator-only and thermalized runs of one batch in lockstep.

    ``system`` gives the truth and the diagnostics. ``emulator`` and
    ``thermalizer`` are the loaded models. The thermalizer may be None, and then
    there is no thermalized run and no level is predicted. ``runs`` selects
    which of :data:`RUNS` to advance. Everything runs on ``device`` (default:
    CUDA when present). The same ``seed`` gives the same run on the same device.
    """

    def __init__(self, system: System, emulator: Emulator, thermalizer: Thermalizer | None, *, batch: int = 4,
                 seed: int = 0, device: torch.device | str | None = None, runs: Iterable[str] = RUNS,
                 settings: ThermalizerSettings | None = None, history: int = 2000):
        runs = tuple(runs)
        unknown = [run for run in runs if run not in RUNS]
        if unknown:
            raise ValueError(f"unknown runs {unknown}; choose from {', '.join(RUNS)}")
        if thermalizer is None and "thermalized" in runs:
            raise ValueError("the thermalized run needs a thermalizer; pass one or leave 'thermalized' out of runs")
        if batch < 1:
            raise ValueError(f"batch = {batch} is invalid: use 1 or more")
        self.system = system
        self.device = torch.device(device) if device is not None else torch.device(
            "cuda" if torch.cuda.is_available() else "cpu")
        self.emulator = emulator.to(self.device).eval()
        self.thermalizer = thermalizer.to(self.device).eval() if thermalizer is not None else None
        self.run_names = tuple(run for run in RUNS if run in runs)
        self.batch = batch
        self.history_length = history
        reference = system.reference()
        self.band = StableBand.from_reference(reference) if reference is not None else None
        self.lyapunov_time_steps = reference.get("lyapunov_time_steps") if reference is not None else None
        self._settings = settings or ThermalizerSettings()
        self._settings.validate(self.num_levels)
        self.reset(seed)

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

    # -- set-up ---------------------------------------------------------------
    def reset(self, seed: int | None = None) -> None:
        """Start again from step 0 with new initial states drawn from ``seed`` (default: the current seed)."""
        if seed is not None:
            self.seed = int(seed)
        self.step_count = 0
        self.steps_record = RingBuffer(self.history_length, (), np.int64)
        truth_state = self.system.initial_state(self.batch, seed=self.seed, device=self.device)
        field = self.system.to_emulator_grid(truth_state).float()
        self.truth_state = truth_state if "truth" in self.run_names else None
        self.truth_states = self.system.trajectory(truth_state) if "truth" in self.run_names else None
        self.runs = {name: Run(name, field.clone(), self.band, self.history_length) for name in self.run_names}
        self.generators = {name: self.make_generator(self.seed) for name in ("emulator", "thermalized")}
        self.denoising_generator = self.make_generator(self.seed + 1)
        for run in self.runs.values():
            run.spectrum = self.system.energy_spectrum(run.field.double())

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
        settings = self._settings
        self.step_count += 1
        if "truth" in self.runs:
            self.advance_truth()
        for name in ("emulator", "thermalized"):
            if name in self.runs:
                self.advance_emulated(self.runs[name], settings, thermalize=(name == "thermalized"))
        self.record()

    def synchronize(self) -> None:
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)

    def advance_truth(self) -> None:
        run = self.runs["truth"]
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
        self.synchronize()
        run.timer.total_s += time.perf_counter() - started

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
            level = self.timed(run, self.batch, lambda: self.thermalizer.classify(field))
            # Frozen and stopped members are classified with the batch, but their reading is not recorded.
            run.level = torch.where(run.active, level, torch.full_like(level, -1))
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
        denoised, steps = self.timed(run, evaluations, lambda: self.thermalizer.denoise(
            field, start_levels, settings.s_stop, settings.forward_diffuse, generator=self.denoising_generator),
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

    def steps_per_second(self, name: str) -> float:
        timer = self.runs[name].timer
        return self.step_count / timer.total_s if timer.total_s > 0 else float("nan")

    def summary(self) -> dict[str, Any]:
        """Return per-run stable horizons, exit reasons, throughput and thermalization statistics."""
        runs = {}
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
            if name == "thermalized":
                trajectory_steps = max(self.step_count * self.batch, 1)
                entry["thermalized_fraction"] = run.thermalized_total / trajectory_steps
                entry["mean_denoising_steps"] = run.denoising_total / trajectory_steps
            runs[name] = entry
        return {"system": self.system.name, "steps": self.step_count, "batch": self.batch,
                "settings": dataclasses.asdict(self._settings), "seed": self.seed, "device": str(self.device),
                "runs": runs}
