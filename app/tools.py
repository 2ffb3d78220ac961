"""Controls of the teaching and debugging tools: perturbing the runs, comparing thermalizer settings, analysis.

Each group is a ``param.Parameterized`` owned by one session's
:class:`~app.state.DashboardState`, so the widgets are made from parameters as
for the main controls. The groups act on the session's worker only.
"""
from __future__ import annotations

import dataclasses
import logging
from typing import Callable

import param

from thermalizer_core.engine import InvalidSettingsError, ThermalizerSettings

from .frames import VARIANT_NAMES
from .worker import RolloutWorker

logger = logging.getLogger(__name__)

#: Highest diffusion level a perturbation may add; the schedule has 1000 levels.
MAX_PERTURBATION_LEVEL = 500
#: Thresholds (s_init, s_stop) of the variants when first switched on: a low pair that denoises almost
#: every step, a high pair that steps in late, and the default s_init 10 denoising down to level 0.
VARIANT_DEFAULTS = {"variant A": (2, 0), "variant B": (60, 4), "variant C": (10, 0)}


class PerturbControls(param.Parameterized):
    """Noise added by hand to the emulator-only and every thermalized run at once."""

    level = param.Integer(default=80, bounds=(1, MAX_PERTURBATION_LEVEL), label="Perturbation noise level",
                          doc="Diffusion level of the added noise (of 1000); the classifier should read about this.")
    width = param.Number(default=0.08, bounds=(0.02, 0.5), step=0.01, label="Local width (fraction of the domain)",
                         doc="Standard deviation of the Gaussian window of a local perturbation.")
    on_click = param.Boolean(default=True, label="Click a field to perturb there",
                             doc="A click on a field plot adds noise locally around the clicked point.")
    perturb = param.Action(lambda controls: controls.perturb_everywhere(), label="Perturb everywhere",
                           doc="Add noise of the chosen level to the whole domain of every emulated run.")

    def __init__(self, worker: RolloutWorker, **params):
        super().__init__(**params)
        self.worker = worker

    def perturb_everywhere(self) -> None:
        logger.info("%s: global perturbation at level %d", self.name, self.level)
        self.worker.perturb(self.level)

    def perturb_at(self, center: tuple[float, ...]) -> None:
        """Add noise around ``center`` (domain fractions, y then x in 2D) if clicking is switched on."""
        if not self.on_click:
            return
        logger.info("%s: local perturbation at level %d around %s", self.name, self.level, center)
        self.worker.perturb(self.level, center=tuple(float(value) for value in center), width=self.width)


class CompareControls(param.Parameterized):
    """Up to three extra thermalized runs with their own thresholds, started from the same initial condition.

    Switching a variant on or off rebuilds the engine through ``rebuild``, since all runs must start
    together. Moving a variant's thresholds reaches its run from the next step, as for the main run.
    """

    variant_a = param.Boolean(default=False, label="Variant A")
    variant_a_s_init = param.Integer(default=VARIANT_DEFAULTS["variant A"][0], bounds=(0, 200), label="A: s_init")
    variant_a_s_stop = param.Integer(default=VARIANT_DEFAULTS["variant A"][1], bounds=(0, 200), label="A: s_stop")
    variant_b = param.Boolean(default=False, label="Variant B")
    variant_b_s_init = param.Integer(default=VARIANT_DEFAULTS["variant B"][0], bounds=(0, 200), label="B: s_init")
    variant_b_s_stop = param.Integer(default=VARIANT_DEFAULTS["variant B"][1], bounds=(0, 200), label="B: s_stop")
    variant_c = param.Boolean(default=False, label="Variant C")
    variant_c_s_init = param.Integer(default=VARIANT_DEFAULTS["variant C"][0], bounds=(0, 200), label="C: s_init")
    variant_c_s_stop = param.Integer(default=VARIANT_DEFAULTS["variant C"][1], bounds=(0, 200), label="C: s_stop")
    error = param.String(default="", precedence=-1, doc="Why the last variant setting was rejected, if it was.")

    def __init__(self, worker: RolloutWorker, rebuild: Callable[[], None],
                 base_settings: Callable[[], ThermalizerSettings], **params):
        super().__init__(**params)
        self.worker = worker
        self.rebuild = rebuild
        self.base_settings = base_settings

    @staticmethod
    def prefix(name: str) -> str:
        return "variant_" + name.split()[-1].lower()

    def enabled(self) -> tuple[str, ...]:
        return tuple(name for name in VARIANT_NAMES if getattr(self, self.prefix(name)))

    def settings_of(self, name: str) -> ThermalizerSettings:
        """Return the variant's settings: the main run's, with the variant's own thresholds."""
        prefix = self.prefix(name)
        return dataclasses.replace(self.base_settings(), s_init=getattr(self, f"{prefix}_s_init"),
                                   s_stop=getattr(self, f"{prefix}_s_stop"))

    def variants(self) -> tuple[tuple[str, ThermalizerSettings], ...]:
        """Return the ``(name, settings)`` pairs of the variants switched on, for an engine request."""
        return tuple((name, self.settings_of(name)) for name in self.enabled())

    @param.depends("variant_a", "variant_b", "variant_c", watch=True)
    def _switch(self) -> None:
        self.error = ""
        self.rebuild()

    @param.depends("variant_a_s_init", "variant_a_s_stop", "variant_b_s_init", "variant_b_s_stop",
                   "variant_c_s_init", "variant_c_s_stop", watch=True)
    def _update_thresholds(self) -> None:
        for name in self.enabled():
            try:
                self.worker.update_variant(name, self.settings_of(name))
            except InvalidSettingsError as error:
                logger.info("rejected settings of %s: %s", name, error)
                self.error = f"{name}: {error}"
                return
        self.error = ""


class AnalysisControls(param.Parameterized):
    """Window of the statistics and length of the exported animation."""

    window = param.Integer(default=100, bounds=(2, 500), label="Statistics window (steps)",
                           doc="The statistics use the last this many steps that the engine keeps.")
    gif_frames = param.Integer(default=60, bounds=(2, 200), label="Animation length (frames)",
                               doc="Steps in the exported GIF, the newest ones the engine keeps.")
