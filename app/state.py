"""Per-session dashboard state: every control is a parameter here, and changes go to the session's worker.

The widgets are made from these parameters, so this object is the single
source of truth for what the user requested. Threshold parameters reach the
engine at once and take effect from its next step. The system, model and
batch size rebuild the engine, and the seed starts the runs again.
"""
from __future__ import annotations

import logging

import param

from thermalizer_core.engine import InvalidSettingsError, ThermalizerSettings

from .checkpoints import SYSTEM_LABELS, ModelChoice, model_choices, scan_folder, shipped_choice
from .frames import EngineInfo
from .presets import CUSTOM, PRESET_PARAMETERS, PRESETS, Preset, preset_titles, with_preset_values
from .tools import AnalysisControls, CompareControls, PerturbControls
from .worker import EngineRequest, RolloutWorker

logger = logging.getLogger(__name__)

MAX_BATCH = 16
MAX_THRESHOLD = 200
#: Upper end of the emulator-noise slider, in multiples of the checkpoint's sigma.
SIGMA_SLIDER_FACTOR = 4.0


class DashboardState(param.Parameterized):
    """The controls of one browser session and the worker that runs its engine."""

    preset = param.Selector(objects=preset_titles(), default=CUSTOM, label="Teaching preset",
                            doc="Set-up for a lesson: sets the system, seed, thresholds, batch and speed and "
                                "starts again from step 0. Changing one of those by hand shows custom settings.")
    system = param.Selector(objects={label: key for key, label in SYSTEM_LABELS.items()}, default="ks",
                            doc="Ground-truth system whose emulator and thermalizer are shown.")
    model = param.Selector(objects={}, allow_None=True, label="Models",
                           doc="Emulator/thermalizer pair: the shipped one or one from the server's models folder.")
    seed = param.Integer(default=0, bounds=(0, 2**31 - 1), label="Initial-condition seed",
                         doc="Seed of the initial states; changing it starts the runs again from step 0.")
    batch = param.Integer(default=4, bounds=(1, MAX_BATCH), label="Trajectories (batch size)",
                          doc="How many trajectories each run advances together; the plots show one.")
    trajectory = param.Integer(default=0, bounds=(0, 3), label="Shown trajectory",
                               doc="Index of the trajectory that the plots show.")
    s_init = param.Integer(default=10, bounds=(0, MAX_THRESHOLD), label="s_init (denoise above this level)",
                           doc="The thermalizer denoises a trajectory whose predicted noise level exceeds s_init.")
    s_stop = param.Integer(default=4, bounds=(0, MAX_THRESHOLD), label="s_stop (denoise down to this level)",
                           doc="Noise level where denoising stops; 0 removes all noise the model sees.")
    forward_diffuse = param.Boolean(default=False, label="Forward-diffuse before denoising",
                                    doc="Add noise up to the predicted level before denoising a trajectory.")
    limit_noise = param.Boolean(default=False, label="Stop above a hard noise limit",
                                doc="Stop a thermalized trajectory whose predicted level exceeds the hard limit.")
    hard_limit = param.Integer(default=100, bounds=(1, 999), label="Hard noise limit",
                               doc="Predicted level above which a thermalized trajectory counts as beyond saving.")
    emulator_sigma = param.Number(default=0.0, bounds=(0.0, None), softbounds=(0.0, 1.0), step=0.001,
                                  label="Emulator noise sigma (normalized units)",
                                  doc="Standard deviation of the noise a stochastic emulator adds at each step.")
    stochastic = param.Boolean(default=False, precedence=-1,
                               doc="Whether the loaded emulator is stochastic (its checkpoint sigma > 0).")
    layer = param.Selector(objects={"upper layer (q1)": 0, "lower layer (q2)": 1}, default=0, label="QG layer",
                           doc="Which layer's potential vorticity the QG fields show.")
    steps_per_frame = param.Integer(default=10, bounds=(1, 100), label="Steps per frame",
                                    doc="Emulator steps computed between two published frames (about 10 per second "
                                        "at most), so it also caps the speed.")
    start = param.Action(lambda state: state.play(), label="Start", doc="Run steps continuously.")
    pause = param.Action(lambda state: state.worker.pause(), label="Pause", doc="Stop after the current step.")
    single_step = param.Action(lambda state: state.worker.step(1), label="Step", doc="Pause and advance one step.")
    reset = param.Action(lambda state: state.restart(), label="Reset", doc="Start again from step 0 with the seed.")
    error = param.String(default="", precedence=-1, doc="Why the last control change was rejected, if it was.")

    #: True while a preset's values are set, so that they count as one change (see apply_preset).
    _applying_preset = False
    #: Set when the model or batch changed while a preset was applied, so the engine must be built again.
    _engine_request_pending = False

    def __init__(self, models_folder: str | None = None, worker: RolloutWorker | None = None, **params):
        super().__init__(**with_preset_values(params))
        self.models_folder = models_folder
        self.worker = worker or RolloutWorker(settings=self.thermalizer_settings(), name=self.name)
        self.worker.steps_per_frame = self.steps_per_frame
        self.adopted_generation = 0
        self.perturbation = PerturbControls(self.worker)
        self.compare = CompareControls(self.worker, rebuild=self._update_engine, base_settings=self.thermalizer_settings)
        self.analysis = AnalysisControls()
        self.worker.start()
        self._update_model_choices()

    # -- actions ----------------------------------------------------------------------
    def play(self) -> None:
        logger.info("%s: start", self.name)
        self.error = ""
        self.worker.play()

    def restart(self) -> None:
        logger.info("%s: reset with seed %d", self.name, self.seed)
        self.error = ""
        self.worker.reset(self.seed)

    def apply_preset(self, preset: Preset) -> None:
        """Set every control of ``preset`` in one update, then build the engine once (or restart it) from step 0.

        The shipped pair of the preset's system is selected, because the presets were measured with it.
        Set ``preset`` on its own, because values changed in the same ``param.update`` may be overwritten
        by the preset's. To combine a preset with other values, pass both to the constructor.
        """
        logger.info("%s: preset %s", self.name, preset.key)
        self._engine_request_pending = False
        self._applying_preset = True
        try:
            self.param.update(preset.parameter_values())
            shipped = shipped_choice(preset.system)
            # Param sends an event for an assigned dataclass even when it is equal, which would rebuild the engine.
            if self.model != shipped:
                self.model = shipped
        finally:
            self._applying_preset = False
        if self._engine_request_pending:
            self._update_engine()
        else:
            self.restart()

    def close(self, timeout: float = 30.0) -> bool:
        """Stop the worker thread, waiting up to ``timeout`` seconds (0: do not wait); return True if it ended."""
        return self.worker.stop(timeout)

    @property
    def rejected_models(self) -> tuple[tuple[str, str], ...]:
        return scan_folder(self.models_folder).rejected

    # -- derived settings ---------------------------------------------------------------
    def thermalizer_settings(self) -> ThermalizerSettings:
        """Return the engine settings that the controls describe."""
        return ThermalizerSettings(
            s_init=self.s_init,
            s_stop=self.s_stop,
            forward_diffuse=self.forward_diffuse,
            hard_limit=self.hard_limit if self.limit_noise else None,
            emulator_sigma=self.emulator_sigma if self.stochastic else None,
        )

    def adopt_engine(self, info: EngineInfo) -> None:
        """Show the emulator-noise control for a newly built engine, starting at its checkpoint's sigma."""
        if info.generation <= self.adopted_generation:
            return
        self.adopted_generation = info.generation
        sigma = info.emulator_sigma
        if sigma > 0:
            self.param.emulator_sigma.softbounds = (0.0, SIGMA_SLIDER_FACTOR * sigma)
            self.param.emulator_sigma.step = sigma / 20
            self.param.update(emulator_sigma=sigma, stochastic=True)
        else:
            self.stochastic = False

    # -- watchers ---------------------------------------------------------------------
    @param.depends("system", watch=True)
    def _update_model_choices(self) -> None:
        choices = model_choices(self.system, self.models_folder)
        self.param.model.objects = {choice.label: choice for choice in choices}
        if self.model in choices:
            self._update_engine()
        else:
            self.model = choices[0]

    @param.depends("model", "batch", watch=True)
    def _update_engine(self) -> None:
        if self._applying_preset:
            self._engine_request_pending = True
            return
        if not isinstance(self.model, ModelChoice):
            self.model = shipped_choice(self.system)
            return
        self.param.trajectory.bounds = (0, self.batch - 1)
        if self.trajectory >= self.batch:
            self.trajectory = self.batch - 1
        # The old engine's sigma must not reach the new one: it starts with its checkpoint's sigma.
        self.stochastic = False
        self.error = ""
        self.worker.configure(EngineRequest(self.model, self.batch, self.seed, self.compare.variants()))

    @param.depends("seed", watch=True)
    def _update_seed(self) -> None:
        if not self._applying_preset:
            self.restart()

    @param.depends("s_init", "s_stop", "forward_diffuse", "limit_noise", "hard_limit", "emulator_sigma",
                   "stochastic", watch=True)
    def _update_settings(self) -> None:
        try:
            self.worker.apply_settings(self.thermalizer_settings())
        except InvalidSettingsError as error:
            logger.info("rejected settings: %s", error)
            self.error = str(error)
        else:
            self.error = ""

    @param.depends("steps_per_frame", watch=True)
    def _update_steps_per_frame(self) -> None:
        self.worker.steps_per_frame = self.steps_per_frame

    @param.depends("preset", watch=True)
    def _update_preset(self) -> None:
        if self.preset != CUSTOM and not self._applying_preset:
            self.apply_preset(PRESETS[self.preset])

    @param.depends(*PRESET_PARAMETERS, watch=True)
    def _mark_custom(self) -> None:
        """Show the preset as custom once a control it sets no longer has the preset's value."""
        if self.preset == CUSTOM or self._applying_preset:
            return
        preset_values = PRESETS[self.preset].parameter_values()
        if any(getattr(self, name) != preset_values[name] for name in PRESET_PARAMETERS):
            logger.info("%s: controls changed by hand, preset %s is now custom", self.name, self.preset)
            self.preset = CUSTOM
