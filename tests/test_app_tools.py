"""Teaching and debugging tools at the state level, on the shipped KS pair: perturb, compare, analyse, export."""
import io
import json

import numpy as np
import pytest
import xarray as xr
from PIL import Image

from app import analysis
from app.layout import Dashboard
from app.state import DashboardState

BUILD_TIMEOUT = 180
STEP_TIMEOUT = 120
#: Diffusion level of the test perturbations: far above s_init = 10 and the clean readings (about 0).
PERTURBATION_LEVEL = 80
#: Steps after a global perturbation at PERTURBATION_LEVEL until the thermalized run of the shipped KS pair
#: reads at most s_init again. The first step reads the jump and denoises down to s_stop. The second reads
#: the denoised state (measured on seeds 0-2 in tests/test_engine_tools.py).
RETURN_STEPS = 2


@pytest.fixture
def ks_state():
    """A session on the shipped KS pair, batch 2, with its first frame published."""
    state = DashboardState(batch=2)
    wait_for_step(state, 0)
    yield state
    assert state.close(), "worker thread did not stop"


def wait_for_step(state, step, timeout=BUILD_TIMEOUT):
    snapshot = state.worker.wait_for(
        lambda s: (s.frame is not None and s.frame.info.generation == s.generation and s.frame.step >= step)
        or (s.problem is not None and s.problem.generation == s.generation), timeout)
    assert snapshot.problem is None, snapshot.problem.message
    return snapshot.frame


def advance(state, steps):
    start = state.worker.engine.step_count
    state.worker.step(steps)
    return wait_for_step(state, start + steps, STEP_TIMEOUT)


def levels_at(frame, name, step):
    history = frame.history[name]
    row = int(np.flatnonzero(history["step"] == step)[0])
    return history["level"][row]


def test_perturbation_jump_then_thermalized_returns(ks_state):
    advance(ks_state, 3)
    before = levels_at(ks_state.worker.snapshot().frame, "emulator", 3)

    ks_state.perturbation.level = PERTURBATION_LEVEL
    ks_state.perturbation.perturb_everywhere()
    frame = advance(ks_state, RETURN_STEPS)

    jump = levels_at(frame, "emulator", 4)
    assert before.max() <= 10
    assert jump.min() > PERTURBATION_LEVEL / 2, f"levels after the perturbation: {jump}"
    assert levels_at(frame, "thermalized", 4).min() > PERTURBATION_LEVEL / 2
    # After its denoising, the thermalized run reads at most s_init; the emulator-only run stays noisy.
    after = frame.history["thermalized"]["level"][-1]
    assert after.max() <= ks_state.s_init, f"thermalized levels {RETURN_STEPS} steps after: {after}"
    assert frame.history["emulator"]["level"][-1].min() > ks_state.s_init
    assert [(p.step, p.level, p.center) for p in frame.perturbations] == [(3, PERTURBATION_LEVEL, None)]


def test_click_perturbation_is_local(ks_state):
    advance(ks_state, 1)
    before = ks_state.worker.engine.runs["emulator"].field.clone()

    ks_state.perturbation.param.update(level=PERTURBATION_LEVEL, width=0.05)
    ks_state.perturbation.perturb_at((0.25,))
    frame = ks_state.worker.wait_for(lambda s: s.frame is not None and s.frame.perturbations, STEP_TIMEOUT).frame

    change = (ks_state.worker.engine.runs["emulator"].field - before).square()[:, 0].mean(dim=0)
    grid = change.shape[-1]
    near = change[int(0.2 * grid):int(0.3 * grid)].mean()
    far = change[int(0.6 * grid):int(0.9 * grid)].mean()
    assert frame.perturbations[-1].center == (0.25,)
    assert near > 100 * far


def test_click_ignored_when_switched_off(ks_state):
    ks_state.perturbation.on_click = False
    ks_state.perturbation.perturb_at((0.5,))
    advance(ks_state, 1)

    assert ks_state.worker.snapshot().frame.perturbations == ()


def test_variant_added_and_updated_live(ks_state):
    ks_state.compare.param.update(variant_a=True, variant_a_s_init=25, variant_a_s_stop=3)
    frame = ks_state.worker.wait_for(
        lambda s: s.frame is not None and s.frame.info.generation == s.generation and "variant A" in s.frame.info.runs,
        BUILD_TIMEOUT).frame
    assert frame.step == 0
    assert frame.info.runs == ("truth", "emulator", "thermalized", "variant A")

    ks_state.compare.variant_a_s_init = 40
    frame = ks_state.worker.wait_for(
        lambda s: s.frame is not None and s.frame.run_settings.get("variant A") is not None
        and s.frame.run_settings["variant A"].s_init == 40, STEP_TIMEOUT).frame
    assert frame.run_settings["variant A"].s_stop == 3
    assert frame.run_settings["thermalized"].s_init == ks_state.s_init


def test_invalid_variant_threshold_rejected(ks_state):
    ks_state.compare.variant_b = True
    ks_state.worker.wait_for(lambda s: s.frame is not None and "variant B" in s.frame.info.runs, BUILD_TIMEOUT)

    ks_state.compare.param.variant_b_s_init.bounds = (0, 5000)
    ks_state.compare.variant_b_s_init = 2000

    assert "variant B" in ks_state.compare.error
    assert "2000" in ks_state.compare.error


def test_statistics_compare_runs_with_truth(ks_state):
    advance(ks_state, 30)

    statistics = ks_state.worker.submit(lambda engine: analysis.statistics_of(engine, 20)).result(STEP_TIMEOUT)

    assert statistics.last_step == 30
    assert statistics.first_step == 11
    assert statistics.spectral_distances["truth"] == 0.0
    assert statistics.pdf_distances["truth"] == 0.0
    assert 0.0 < statistics.spectral_distances["emulator"] < 1.0
    assert set(statistics.pdfs) == {"truth", "emulator", "thermalized"}


def test_classifier_check_reads_noised_truth(ks_state):
    advance(ks_state, 8)

    result = ks_state.worker.submit(analysis.calibration_of).result(STEP_TIMEOUT)

    assert list(result.levels) == list(analysis.CALIBRATION_LEVELS)
    assert result.counts.sum(axis=1).tolist() == [result.samples_per_level] * len(result.levels)
    # The shipped KS thermalizer reads these levels within about 10 % (thermalizer_core tests measure it).
    assert abs(result.mean_predicted[-1] - analysis.CALIBRATION_LEVELS[-1]) < 8
    assert result.mean_predicted[0] < 3


def test_netcdf_export_holds_runs_and_settings(ks_state, tmp_path):
    advance(ks_state, 5)

    data = ks_state.worker.submit(analysis.netcdf_of).result(STEP_TIMEOUT)
    path = tmp_path / "trajectory.nc"
    path.write_bytes(data)
    with xr.open_dataset(path, engine="h5netcdf") as dataset:
        assert list(dataset["run"].values) == ["truth", "emulator", "thermalized"]
        assert dataset["field"].sizes["step"] == 6
        assert '"s_init": 10' in dataset.attrs["settings_thermalized"]
        assert set(json.loads(dataset.attrs["settings_emulator"])) == {"emulator_sigma", "classify_every"}
        assert dataset.attrs["system"] == "ks"


def test_gif_export_has_recent_frames(ks_state):
    advance(ks_state, 6)

    data = ks_state.worker.submit(lambda engine: analysis.gif_of(engine, 1, 0, 5)).result(STEP_TIMEOUT)

    image = Image.open(io.BytesIO(data))
    assert image.format == "GIF"
    assert image.n_frames == 5


def test_png_of_view_draws_frame(ks_state):
    frame = advance(ks_state, 4)

    data = analysis.view_png(frame, 0, 0)

    image = Image.open(io.BytesIO(data))
    assert image.format == "PNG"
    assert image.size[0] > 600
    assert len(set(np.asarray(image.convert("L")).ravel().tolist())) > 20


def test_dashboard_shows_analysis_results(ks_state):
    dashboard = Dashboard(ks_state)
    advance(ks_state, 10)
    dashboard.refresh()

    dashboard.statistics_button.clicks += 1
    dashboard.classifier_button.clicks += 1
    for _, future in list(dashboard.pending.values()):
        future.result(STEP_TIMEOUT)
    dashboard.show_results()

    assert "spectral distance" in dashboard.statistics_view.summary.object
    assert "confusion-table" in dashboard.classifier_view.summary.object
    fractions = dashboard.classifier_view.sources["truth"].data["fraction"]
    assert np.isclose(np.nansum(fractions), 1.0)


def test_result_of_replaced_engine_dropped(ks_state):
    dashboard = Dashboard(ks_state)
    advance(ks_state, 5)
    dashboard.refresh()
    dashboard.statistics_button.clicks += 1
    _, future = dashboard.pending["statistics"]
    future.result(STEP_TIMEOUT)

    ks_state.batch = 3
    ks_state.worker.wait_for(lambda s: s.frame is not None and s.frame.info.generation == s.generation
                             and s.frame.info.batch == 3, BUILD_TIMEOUT)
    dashboard.refresh()

    assert dashboard.pending == {}
    assert "Press" in dashboard.statistics_view.summary.object
    assert dashboard.statistics_panel.visible


def test_status_notes_s_stop_above_s_init(ks_state):
    dashboard = Dashboard(ks_state)
    ks_state.param.update(s_init=5, s_stop=50)
    frame = advance(ks_state, 1)

    dashboard.refresh()

    assert frame.settings.s_stop == 50
    assert "only trajectories read above s_stop are denoised" in dashboard.status.object
