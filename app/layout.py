"""The page of one session: controls made from the state's parameters, the status line and the plots.

:meth:`Dashboard.refresh` runs as a periodic callback on the server's event
loop. It only reads the worker's newest snapshot and copies it into the Bokeh
sources, and does nothing when no new frame has arrived since the last call.
"""
from __future__ import annotations

import asyncio
import concurrent.futures
import html
import io
import logging
import math
from typing import Callable

import panel as pn

from thermalizer_core.systems import system_class

from . import analysis
from .checkpoints import SHIPPED_LABEL, SYSTEM_LABELS
from .frames import Frame, describe_exit, run_label
from .state import DashboardState
from .presets import CUSTOM, explanation_markdown
from .text import student_note
from .views import FieldsView, SpectrumView, TimeSeriesView
from .views.classifier import ClassifierView
from .views.statistics import StatisticsView
from .views.style import RUN_COLORS
from .worker import SPACE_TIME_ROWS, Problem, Snapshot

logger = logging.getLogger(__name__)

#: Period of the render callback in milliseconds (5 frames per second).
RENDER_PERIOD_MS = 200
SIDEBAR_WIDTH = 290


class Dashboard(pn.viewable.Viewer):
    """Controls, status line, plots and notes of one session, rendered from the worker's frames."""

    def __init__(self, state: DashboardState, **params):
        super().__init__(**params)
        self.state = state
        self.status = pn.pane.HTML("", sizing_mode="stretch_width", css_classes=["status-line"],
                                   stylesheets=[STATUS_CSS])
        self.message = pn.pane.Alert("", alert_type="warning", visible=False, sizing_mode="stretch_width",
                                     css_classes=["problem-message"])
        self.loading = pn.pane.Alert("", alert_type="info", visible=False, sizing_mode="stretch_width",
                                     css_classes=["loading-message"])
        self.plots = pn.Column(sizing_mode="stretch_width")
        self.classifier_panel = pn.Column(sizing_mode="stretch_width")
        self.statistics_panel = pn.Column(sizing_mode="stretch_width")
        self.tabs = pn.Tabs(("Rollout", self.plots), ("Classifier", self.classifier_panel),
                            ("Statistics", self.statistics_panel), dynamic=False, sizing_mode="stretch_width",
                            css_classes=["view-tabs"])
        self.classifier_view: ClassifierView | None = None
        self.statistics_view: StatisticsView | None = None
        #: Analysis results on their way from the worker, by kind ("statistics", "classifier"), with the
        #: generation of the views that requested them.
        self.pending: dict[str, tuple[int, concurrent.futures.Future]] = {}
        self.last_frame: Frame | None = None
        self.note = pn.pane.Markdown("", width=860, css_classes=["student-note"])
        self.preset_explanation = pn.pane.Markdown(
            pn.bind(explanation_markdown, state.param.preset), visible=pn.bind(is_preset, state.param.preset),
            sizing_mode="stretch_width", css_classes=["preset-explanation"])
        self.views: tuple[FieldsView, SpectrumView, TimeSeriesView] | None = None
        self.view_generation = 0
        self.rendered_key: tuple | None = None
        self.render_failures = 0
        self.note_system: str | None = None
        self.controls = self.make_controls()
        self.page = pn.Row(
            self.controls,
            pn.Column(self.preset_explanation, self.status, self.message, self.loading, self.tabs, self.note,
                      sizing_mode="stretch_width"),
            sizing_mode="stretch_width",
        )

    def __panel__(self):
        return self.page

    # -- controls ---------------------------------------------------------------------
    def make_controls(self) -> pn.Column:
        state = self.state

        def control(widget_class, parameter, **options):
            return widget_class.from_param(parameter, sizing_mode="stretch_width", **options)

        def button(parameter, css_class: str, **options):
            # No hover tooltip: it would cover the neighbouring button and swallow its clicks.
            return widgets.Button.from_param(parameter, width=(SIDEBAR_WIDTH - 50) // 4, margin=(5, 3),
                                             css_classes=[css_class], description=None, **options)

        widgets = pn.widgets
        buttons = pn.Row(
            button(state.param.start, "start", color="success"),
            button(state.param.pause, "pause", color="warning"),
            button(state.param.single_step, "single-step"),
            button(state.param.reset, "reset", color="danger"),
        )
        rejected = pn.pane.Markdown(rejected_models_text(state.rejected_models), visible=bool(state.rejected_models),
                                    width=SIDEBAR_WIDTH - 20)
        return pn.Column(
            pn.pane.HTML("<div style='font-size:20px; font-weight:600'>Thermalizer dashboard</div>"),
            control(widgets.Select, state.param.preset, css_classes=["preset-select"]),
            control(widgets.Select, state.param.system, css_classes=["system-select"]),
            control(widgets.Select, state.param.model, css_classes=["model-select"]),
            buttons,
            control(widgets.IntInput, state.param.seed, css_classes=["seed"]),
            control(widgets.IntSlider, state.param.batch),
            control(widgets.IntSlider, state.param.trajectory),
            pn.pane.Markdown("**Thermalizer** (applies from the next step)", margin=(10, 10, 0, 10)),
            control(widgets.IntSlider, state.param.s_init, css_classes=["s-init"]),
            control(widgets.IntSlider, state.param.s_stop, css_classes=["s-stop"]),
            control(widgets.Checkbox, state.param.forward_diffuse),
            control(widgets.Checkbox, state.param.limit_noise),
            control(widgets.IntInput, state.param.hard_limit, visible=state.param.limit_noise),
            control(widgets.FloatSlider, state.param.emulator_sigma, visible=state.param.stochastic, format="0.0000"),
            control(widgets.RadioButtonGroup, state.param.layer, visible=pn.bind(is_two_layer, state.param.system)),
            control(widgets.IntSlider, state.param.steps_per_frame),
            *self.make_tool_cards(control),
            rejected,
            width=SIDEBAR_WIDTH,
            css_classes=["controls"],
        )

    def make_tool_cards(self, control) -> list[pn.Card]:
        """Return the sidebar cards of the perturbation, comparison, analysis and export tools."""
        return [self.make_perturb_card(control), self.make_compare_card(control), self.make_analysis_card(control),
                self.make_export_card(control)]

    def make_perturb_card(self, control) -> pn.Card:
        perturbation = self.state.perturbation
        button = pn.widgets.Button.from_param(perturbation.param.perturb, css_classes=["perturb"], color="primary",
                                              sizing_mode="stretch_width", description=None)
        return pn.Card(
            control(pn.widgets.IntSlider, perturbation.param.level, css_classes=["perturb-level"]),
            button,
            control(pn.widgets.Checkbox, perturbation.param.on_click, css_classes=["perturb-on-click"]),
            control(pn.widgets.FloatSlider, perturbation.param.width),
            title="Perturb the emulated runs", collapsed=False, sizing_mode="stretch_width",
            css_classes=["perturb-card"])

    def make_compare_card(self, control) -> pn.Card:
        compare = self.state.compare
        rows = []
        for letter in "abc":
            switched_on = compare.param[f"variant_{letter}"]
            rows += [
                control(pn.widgets.Checkbox, switched_on, css_classes=[f"variant-{letter}"]),
                control(pn.widgets.IntSlider, compare.param[f"variant_{letter}_s_init"], visible=switched_on,
                        css_classes=[f"variant-{letter}-s-init"]),
                control(pn.widgets.IntSlider, compare.param[f"variant_{letter}_s_stop"], visible=switched_on,
                        css_classes=[f"variant-{letter}-s-stop"]),
            ]
        explanation = pn.pane.Markdown("Extra thermalized runs from the same initial condition. Switching one on "
                                       "or off starts every run again at step 0.", margin=(0, 10))
        return pn.Card(explanation, *rows, title="Compare thresholds", collapsed=True, sizing_mode="stretch_width",
                       css_classes=["compare-card"])

    def make_analysis_card(self, control) -> pn.Card:
        self.statistics_button = pn.widgets.Button(label="Compute statistics", css_classes=["compute-statistics"],
                                                   sizing_mode="stretch_width")
        self.statistics_button.on_click(lambda event: self.request("statistics", lambda engine: analysis.statistics_of(
            engine, self.state.analysis.window, channel=self.shown_channel())))
        self.classifier_button = pn.widgets.Button(label="Check the classifier", css_classes=["check-classifier"],
                                                   sizing_mode="stretch_width")
        self.classifier_button.on_click(lambda event: self.request("classifier", analysis.calibration_of))
        return pn.Card(
            control(pn.widgets.IntSlider, self.state.analysis.param.window, css_classes=["statistics-window"]),
            self.statistics_button,
            self.classifier_button,
            title="Statistics and classifier", collapsed=True, sizing_mode="stretch_width",
            css_classes=["analysis-card"])

    def make_export_card(self, control) -> pn.Card:
        def download(callback, filename: str, label: str, kind: str):
            return pn.widgets.FileDownload(callback=callback, filename=filename, label=label,
                                           css_classes=[f"download-{kind}"], sizing_mode="stretch_width")

        self.downloads = {
            "png": download(self.download_png, "thermalizer-view.png", "PNG of the current view", "png"),
            "netcdf": download(self.download_netcdf, "thermalizer-trajectory.nc", "Recent trajectory (netCDF)",
                               "netcdf"),
            "gif": download(self.download_gif, "thermalizer-animation.gif", "Animation of recent steps (GIF)", "gif"),
        }
        return pn.Card(
            *self.downloads.values(),
            control(pn.widgets.IntSlider, self.state.analysis.param.gif_frames),
            title="Export", collapsed=True, sizing_mode="stretch_width", css_classes=["export-card"])

    # -- analysis and exports ---------------------------------------------------------
    def shown_channel(self) -> int:
        frame = self.last_frame
        channels = len(frame.info.channels) if frame is not None else 1
        return min(self.state.layer, channels - 1)

    def shown_trajectory(self) -> int:
        frame = self.last_frame
        return min(self.state.trajectory, frame.info.batch - 1) if frame is not None else 0

    def request(self, kind: str, function: Callable) -> None:
        """Ask the worker for an analysis result; :meth:`refresh` shows it when it arrives."""
        self.pending[kind] = (self.view_generation, self.state.worker.submit(function))

    def show_results(self) -> None:
        """Show the analysis results that have arrived since the last render, unless their engine was replaced."""
        for kind, (generation, future) in list(self.pending.items()):
            if not future.done():
                continue
            del self.pending[kind]
            view = self.statistics_view if kind == "statistics" else self.classifier_view
            if view is None or future.cancelled() or generation != self.view_generation:
                continue
            error = future.exception()
            if error is not None:
                logger.info("%s request failed: %s", kind, error)
                view.show_error(f"Could not compute the {kind} result: {error}")
            elif kind == "statistics":
                view.show(future.result(), self.last_frame.run_settings if self.last_frame else None)
            else:
                view.show_confusion(future.result())

    async def from_worker(self, function: Callable, description: str) -> bytes:
        """Run ``function(engine)`` on the worker without blocking the event loop; show and re-raise an error."""
        try:
            return await asyncio.wrap_future(self.state.worker.submit(function))
        except Exception as error:
            logger.warning("export of %s failed: %s", description, error)
            self.show_message(f"Could not export the {description}: {html.escape(str(error))}", "danger")
            raise

    async def download_png(self) -> io.BytesIO:
        frame = self.last_frame
        if frame is None:
            self.show_message("Nothing to export yet: wait until the fields show.", "warning")
            raise RuntimeError("no frame to export yet")
        trajectory, channel = self.shown_trajectory(), self.shown_channel()
        loop = asyncio.get_running_loop()
        return io.BytesIO(await loop.run_in_executor(None, analysis.view_png, frame, trajectory, channel))

    async def download_netcdf(self) -> io.BytesIO:
        return io.BytesIO(await self.from_worker(analysis.netcdf_of, "trajectory"))

    async def download_gif(self) -> io.BytesIO:
        trajectory, channel, frames = self.shown_trajectory(), self.shown_channel(), self.state.analysis.gif_frames
        return io.BytesIO(await self.from_worker(
            lambda engine: analysis.gif_of(engine, trajectory, channel, frames), "animation"))

    # -- rendering ----------------------------------------------------------------------
    def refresh(self) -> None:
        """Render the newest frame; logs and shows its own errors instead of raising them."""
        try:
            self.render(self.state.worker.snapshot())
            self.render_failures = 0
        except Exception as error:  # noqa: BLE001 - a display bug must not stop the session's updates
            self.render_failures += 1
            if self.render_failures <= 3:
                logger.exception("could not render a frame")
            self.message.param.update(object=f"Display error: {type(error).__name__}: {html.escape(str(error))}",
                                      alert_type="danger", visible=True)

    def render(self, snapshot: Snapshot) -> None:
        """Show the snapshot's problem or loading message, and its frame if it belongs to the current engine."""
        self.update_note()
        frame = snapshot.frame
        current = frame is not None and frame.info.generation == snapshot.generation
        showing_problem = self.update_problem(snapshot)
        self.update_loading(not current and not showing_problem)

        # The analysis tabs belong to the shown engine, so they hide with its plots while another loads.
        self.classifier_panel.visible = self.statistics_panel.visible = current
        if not current:
            self.plots.visible = False
            self.status.object = status_html(self.state, None, phase="problem" if showing_problem else "loading")
            return
        self.plots.visible = True
        self.render_frame(frame, snapshot.problem if showing_problem else None)
        self.show_results()

    def render_frame(self, frame: Frame, problem: Problem | None) -> None:
        """Copy ``frame`` into the plots and the status line, unless it is already shown as selected."""
        self.last_frame = frame
        trajectory = self.shown_trajectory()
        key = (frame.sequence, frame.info.generation, trajectory, self.state.layer, problem, self.state.error,
               self.state.compare.error)
        if key == self.rendered_key:
            return
        with pn.io.hold():
            if frame.info.generation != self.view_generation:
                self.build_views(frame)
            fields, spectrum, series = self.views
            fields.update(frame, trajectory, self.state.layer)
            spectrum.update(frame, trajectory)
            series.update(frame, trajectory)
            self.classifier_view.update(frame, self.state.analysis.window)
            self.status.object = status_html(self.state, frame, trajectory, problem=problem)
        self.rendered_key = key

    def update_problem(self, snapshot: Snapshot) -> bool:
        """Show the problem of the current engine, or a stepping error; return whether one is shown."""
        problem = snapshot.problem
        showing = problem is not None and (problem.generation == snapshot.generation or problem.kind == "error")
        if showing:
            alert_type = "warning" if problem.kind == "missing" else "danger"
            self.show_message(problem_text(self.state.system, problem.kind, problem.message), alert_type)
        else:
            self.message.visible = False
        return showing

    def update_loading(self, loading: bool) -> None:
        if loading:
            label = SYSTEM_LABELS.get(self.state.system, self.state.system)
            self.loading.object = f"Loading {label}: reading the checkpoints and spinning up the initial states…"
        self.loading.visible = loading

    def update_note(self) -> None:
        """Show the student note of the selected system, also while its checkpoints are missing."""
        system = self.state.system
        if system != self.note_system:
            self.note.object = student_note(system, system_class(system).measure_name)
            self.note_system = system

    def show_message(self, text: str, alert_type: str) -> None:
        self.message.param.update(object=text, alert_type=alert_type, visible=True)

    def build_views(self, frame: Frame) -> None:
        info = frame.info
        fields = FieldsView(info, SPACE_TIME_ROWS, on_tap=self.state.perturbation.perturb_at)
        spectrum = SpectrumView(info)
        series = TimeSeriesView(info, self.state.worker.history)
        self.views = (fields, spectrum, series)
        self.classifier_view = ClassifierView(info)
        self.statistics_view = StatisticsView(info)
        self.classifier_panel.objects = [self.classifier_view.panel]
        self.statistics_panel.objects = [self.statistics_view.panel]
        panes = series.panes
        self.plots.objects = [
            pn.pane.HTML(legend_html(info.runs), stylesheets=[STATUS_CSS], margin=(0, 10)),
            fields.panel,
            pn.Row(spectrum.panel, panes["measure"], panes["ticker"]),
            pn.Row(panes["mse"], panes["correlation"], panes["level"]),
        ]
        self.view_generation = info.generation
        self.state.adopt_engine(info)


STATUS_CSS = """
.status { font-family: sans-serif; font-size: 13px; line-height: 1.5; }
.status .left { color: #b00020; font-weight: bold; }
.status .stable { color: #1b7f3b; }
.legend .swatch { display: inline-block; width: 14px; height: 4px; margin: 0 4px 3px 0; }
.legend .dash, .legend .dot { color: #555555; font-weight: bold; }
.legend .threshold { color: #009E73; font-weight: bold; }
.legend .perturbed { color: #7f3fbf; font-weight: bold; }
"""


def legend_html(runs) -> str:
    """Return the colour key of every plot: the runs, the reference spectrum and band, and the marker lines."""
    items = [f"<span class='swatch' style='background:{RUN_COLORS[name]}'></span>{html.escape(run_label(name))}"
             for name in runs]
    items += [
        "<span class='dash'>- -</span> true time-mean spectrum, stable-band bounds",
        "<span class='swatch' style='background:#cccccc'></span>truth p05–p95",
        "<span class='dot'>⋮</span> Lyapunov time",
        "<span class='threshold'>—</span> s_init, <span class='threshold'>- -</span> s_stop",
        "<span class='perturbed'>-·-</span> perturbation",
    ]
    return "<div class='status legend'>" + " &nbsp; ".join(items) + "</div>"


def is_preset(preset: str) -> bool:
    return preset != CUSTOM


def is_two_layer(system: str) -> bool:
    return system == "qg"


def rejected_models_text(rejected) -> str:
    lines = ["**Models folder: rejected entries**"]
    lines += [f"- `{html.escape(name)}`: {html.escape(reason)}" for name, reason in rejected]
    return "\n".join(lines)


def problem_text(system: str, kind: str, message: str) -> str:
    label = SYSTEM_LABELS.get(system, system)
    if kind == "missing":
        return (f"**No usable checkpoints for {label}.** The emulator/thermalizer pair is missing or was "
                f"rejected: {html.escape(message)}. The dashboard loads the pair as soon as its files change, "
                "so this page picks it up when its training finishes. Meanwhile, pick another model pair or system.")
    return f"**{label}:** {html.escape(message)}"


def run_status(frame: Frame, name: str, trajectory: int) -> str:
    """Return one run's status: the shown trajectory's state and how many of the batch left the band."""
    exits = frame.exits[name]
    left = sum(1 for exit_step, _ in exits if exit_step is not None)
    trajectory_state = describe_exit(*exits[trajectory])
    css = "stable" if exits[trajectory][0] is None else "left"
    return (f"{html.escape(run_label(name, frame.run_settings))}: <span class='{css} run-{name.replace(' ', '-')}'>{html.escape(trajectory_state)}</span> "
            f"({left}/{len(exits)} of the batch left)")


def status_html(state: DashboardState, frame: Frame | None, trajectory: int = 0, phase: str = "fields",
                problem: Problem | None = None) -> str:
    """Return the status line: device, step, speed, checkpoints, thresholds in use, each run's stability and errors.

    A hidden marker names the system and the phase ("fields", "loading" or "problem") that the page shows.
    """
    worker = state.worker
    system = frame.info.system if frame is not None else state.system
    parts = [f"<span class='phase' data-system='{html.escape(system)}' data-phase='{phase}'></span>"
             f"<b>Device</b>: {html.escape(worker.device_label)}"]
    if frame is not None:
        rate = frame.steps_per_second
        speed = f"{rate:.1f} steps/s" if frame.running and math.isfinite(rate) else "paused"
        emulator_name, thermalizer_name = frame.info.choice.checkpoint_names
        source = SHIPPED_LABEL if frame.info.choice.folder is None else "models folder"
        settings = frame.settings
        parts += [
            f"<b>Step</b> <span class='step-count'>{frame.step}</span>",
            f"<span class='speed'>{speed}</span>",
            f"<b>Checkpoints</b>: {html.escape(emulator_name)} + {html.escape(thermalizer_name)} ({source})",
            f"<b>In use</b>: s_init <span class='engine-s-init'>{settings.s_init}</span>, s_stop "
            f"<span class='engine-s-stop'>{settings.s_stop}</span>",
        ]
    lines = [" · ".join(parts)]
    if frame is not None and frame.settings.s_stop >= frame.settings.s_init:
        lines.append(f"<span class='threshold-note'>s_stop ({frame.settings.s_stop}) is not below s_init "
                     f"({frame.settings.s_init}), so only trajectories read above s_stop are denoised.</span>")
    if frame is not None:
        lines.append(f"<b>Trajectory {trajectory}</b>: " + "; ".join(
            run_status(frame, name, trajectory) for name in frame.info.runs))
    if problem is not None:
        lines.append(f"<span class='left worker-error'>{html.escape(problem.message)}</span>")
    for error in (state.error, state.compare.error):
        if error:
            lines.append(f"<span class='left'>Rejected setting: {html.escape(error)}</span>")
    return "<div class='status'>" + "<br>".join(lines) + "</div>"
