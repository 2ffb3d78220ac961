"""Dashboard state and worker without a server: controls reach the engine, systems load, runs reset and stay bounded."""
import dataclasses
import gc
import threading
import time

import numpy as np
import psutil
import pytest
from bokeh.events import Tap

from app.checkpoints import ModelChoice, checkpoint_stamp, load_models, shipped_choice
from app.layout import Dashboard
from app.state import DashboardState
from app.worker import EngineRequest, RolloutWorker
from thermalizer_core.engine import InvalidSettingsError, ThermalizerSettings
from thermalizer_core.models.catalog import SHIPPED_CHECKPOINTS

#: Seconds to wait for an engine to be built (QG and Kolmogorov spin up their initial states).
BUILD_TIMEOUT = 180
STEP_TIMEOUT = 120
#: Steps of the memory soak, and the step after which memory is measured (buffers and caches are warm).
SOAK_STEPS = 2000
SOAK_WARMUP_STEPS = 400
#: Allowed RSS growth between warm-up and the end of the soak. Every per-step buffer is a ring of fixed
#: size, so growth should be allocator noise. A KS frame with 1000 history rows is about 0.5 MB, so
#: keeping one frame per step would add about 800 MB over 1600 steps, far above this bound.
SOAK_RSS_GROWTH_MB = 40


def tiny_choice(models_folder, name="tiny-ks", system="ks"):
    return ModelChoice(system, name, str(models_folder))


def wait_for_frame(state, condition=lambda frame: True, timeout=BUILD_TIMEOUT):
    """Wait until the worker publishes a frame of the current engine that meets ``condition``."""
    snapshot = state.worker.wait_for(
        lambda s: s.frame is not None and s.frame.info.generation == s.generation and condition(s.frame)
        or (s.problem is not None and s.problem.generation == s.generation), timeout)
    assert snapshot.problem is None, snapshot.problem.message
    return snapshot.frame


@pytest.fixture
def make_state(tiny_models):
    """Build DashboardStates on the tiny models folder and stop their workers afterwards."""
    states = []

    def make(**params):
        params.setdefault("batch", 2)
        state = DashboardState(models_folder=str(tiny_models), **params)
        states.append(state)
        return state

    yield make
    for state in states:
        assert state.close(), "worker thread did not stop"


@pytest.fixture
def tiny_state(make_state, tiny_models):
    state = make_state()
    state.model = tiny_choice(tiny_models)
    wait_for_frame(state)
    return state


def test_thresholds_reach_engine(tiny_state):
    tiny_state.param.update(s_init=25, s_stop=2, forward_diffuse=True, limit_noise=True, hard_limit=300)

    settings = tiny_state.worker.engine.settings
    assert settings.s_init == 25
    assert settings.s_stop == 2
    assert settings.forward_diffuse is True
    assert settings.hard_limit == 300
    assert settings.emulator_sigma is None


def test_hard_limit_off_means_none(tiny_state):
    tiny_state.param.update(limit_noise=True, hard_limit=50)
    tiny_state.limit_noise = False

    assert tiny_state.worker.engine.settings.hard_limit is None


def test_threshold_change_applies_while_running(tiny_state):
    tiny_state.play()
    running = wait_for_frame(tiny_state, lambda frame: frame.step >= 3, STEP_TIMEOUT)
    tiny_state.s_init = 150

    changed = wait_for_frame(tiny_state, lambda frame: frame.settings.s_init == 150, STEP_TIMEOUT)
    later = wait_for_frame(tiny_state, lambda frame: frame.step > changed.step + 2, STEP_TIMEOUT)

    assert changed.step >= running.step, "the run restarted instead of continuing"
    thermalized_levels = later.history["thermalized"]["denoising_steps"]
    new_rows = later.history["thermalized"]["step"] > changed.step
    # The tiny thermalizer always predicts level 12: above s_init 10 it denoises, above s_init 150 it does not.
    assert thermalized_levels[new_rows].sum() == 0
    assert thermalized_levels[~new_rows][1:].max() > 0


def test_step_error_is_reported(tiny_state):
    def failing_step(count=1):
        raise RuntimeError("injected failure")

    tiny_state.worker.engine.step = failing_step
    tiny_state.play()
    snapshot = tiny_state.worker.wait_for(lambda s: s.problem is not None, STEP_TIMEOUT)
    dashboard = Dashboard(tiny_state)
    dashboard.render(snapshot)

    assert snapshot.problem.kind == "error"
    assert "injected failure" in snapshot.problem.message
    assert tiny_state.worker.alive
    assert not tiny_state.worker.running
    assert dashboard.message.visible
    assert "injected failure" in dashboard.message.object
    assert "injected failure" in dashboard.status.object


def test_worker_rejects_invalid_settings(tiny_state):
    with pytest.raises(InvalidSettingsError, match="s_init"):
        tiny_state.worker.apply_settings(ThermalizerSettings(s_init=5000))

    assert tiny_state.worker.engine.settings.s_init == tiny_state.s_init


def test_stochastic_emulator_shows_sigma(make_state, tiny_models):
    state = make_state()
    state.model = tiny_choice(tiny_models, name="noisy-ks")
    frame = wait_for_frame(state)
    Dashboard(state).render(state.worker.snapshot())

    assert frame.info.emulator_sigma == pytest.approx(0.05)
    assert state.stochastic is True
    assert state.emulator_sigma == pytest.approx(0.05)
    state.emulator_sigma = 0.1
    assert state.worker.engine.settings.emulator_sigma == pytest.approx(0.1)


def test_deterministic_emulator_hides_sigma(tiny_state):
    Dashboard(tiny_state).render(tiny_state.worker.snapshot())

    assert tiny_state.stochastic is False
    assert tiny_state.worker.engine.settings.emulator_sigma is None


def test_diverged_run_marked_in_title(tiny_state):
    frame = wait_for_frame(tiny_state)
    exits = dict(frame.exits, emulator=[(12, "non-finite")] + frame.exits["emulator"][1:],
                 thermalized=[(30, "frozen")] + frame.exits["thermalized"][1:])
    dashboard = Dashboard(tiny_state)
    dashboard.render(tiny_state.worker.snapshot())
    fields = dashboard.views[0]

    fields.update(dataclasses.replace(frame, exits=exits), trajectory=0, channel=0)

    assert fields.figures["truth"].title.text == "Truth (solver)"
    assert fields.figures["emulator"].title.text == "Emulator only: diverged at step 12"
    assert fields.figures["thermalized"].title.text == "Thermalized: left at step 30 (frozen)"


def test_qg_layer_toggle_shows_lower_layer(make_state, tiny_models):
    state = make_state(batch=1, system="qg")
    state.model = tiny_choice(tiny_models, name="tiny-qg", system="qg")
    frame = wait_for_frame(state)
    dashboard = Dashboard(state)

    dashboard.render(state.worker.snapshot())
    fields = dashboard.views[0]
    upper = fields.image_sources["truth"].data["image"][0]
    state.layer = 1
    dashboard.render(state.worker.snapshot())
    lower = fields.image_sources["truth"].data["image"][0]

    np.testing.assert_allclose(upper, frame.fields["truth"][0, 0])
    np.testing.assert_allclose(lower, frame.fields["truth"][0, 1])
    assert "lower-layer" in fields.caption.object


def test_models_folder_lists_pairs_and_rejections(tiny_state, tiny_models):
    labels = list(tiny_state.param.model.names)

    assert labels[0] == "shipped checkpoints"
    assert "tiny-ks (models folder)" in labels
    assert "noisy-ks (models folder)" in labels
    assert [name for name, _ in tiny_state.rejected_models] == ["broken"]


def test_missing_pair_reports_problem(tiny_models):
    worker = RolloutWorker(name="missing")
    worker.start()
    try:
        worker.configure(EngineRequest(ModelChoice("ks", "broken", str(tiny_models)), 1, 0))
        snapshot = worker.wait_for(lambda s: s.problem is not None, BUILD_TIMEOUT)
    finally:
        assert worker.stop()

    assert snapshot.problem.kind == "missing"
    assert "broken-emulator" in snapshot.problem.message
    assert snapshot.frame is None


def test_missing_pair_loads_when_it_appears(tmp_path, tiny_pair_writer):
    worker = RolloutWorker(name="late")
    worker.start()
    try:
        worker.configure(EngineRequest(ModelChoice("ks", "late", str(tmp_path)), 1, 0))
        missing = worker.wait_for(lambda s: s.problem is not None, BUILD_TIMEOUT)
        tiny_pair_writer(tmp_path, "ks", name="late")
        loaded = worker.wait_for(lambda s: s.frame is not None, BUILD_TIMEOUT)
    finally:
        assert worker.stop()

    assert missing.problem.kind == "missing"
    assert loaded.problem is None
    assert loaded.frame.info.choice.name == "late"


def shipped_pair_exists(system):
    return -1 not in checkpoint_stamp(SHIPPED_CHECKPOINTS, system)


@pytest.mark.parametrize("system", ["ks", "kolmogorov", "qg"])
def test_system_switch_loads_shipped_pair(make_state, system):
    if not shipped_pair_exists(system):
        pytest.skip(f"the shipped {system} pair (checkpoints/{system}-emulator, -thermalizer) is not trained yet")
    state = make_state(batch=1)
    state.system = system
    frame = wait_for_frame(state)

    assert state.model == shipped_choice(system)
    assert frame.info.system == system
    assert frame.info.choice == shipped_choice(system)
    shipped = load_models(shipped_choice(system), state.worker.pool.device)
    assert state.worker.engine.emulator is shipped.emulator
    assert state.worker.engine.thermalizer is shipped.thermalizer


def test_reset_restores_step_zero(tiny_state):
    first = wait_for_frame(tiny_state)
    tiny_state.worker.step(3)
    wait_for_frame(tiny_state, lambda frame: frame.step == 3, STEP_TIMEOUT)

    tiny_state.restart()
    again = wait_for_frame(tiny_state, lambda frame: frame.run_id > first.run_id, STEP_TIMEOUT)

    assert again.step == 0
    for name in first.fields:
        np.testing.assert_array_equal(again.fields[name], first.fields[name])


def test_same_seed_same_first_frames(make_state, tiny_models):
    frames = []
    for _ in range(2):
        state = make_state(seed=7)
        state.model = tiny_choice(tiny_models)
        wait_for_frame(state)
        state.worker.step(2)
        frames.append(wait_for_frame(state, lambda frame: frame.step == 2, STEP_TIMEOUT))

    for name in frames[0].fields:
        np.testing.assert_array_equal(frames[0].fields[name], frames[1].fields[name])


def test_seed_change_restarts(tiny_state):
    before = wait_for_frame(tiny_state)
    tiny_state.seed = 3

    after = wait_for_frame(tiny_state, lambda frame: frame.run_id > before.run_id, STEP_TIMEOUT)

    assert after.step == 0
    assert not np.array_equal(after.fields["truth"], before.fields["truth"])


def test_worker_steps_off_thread_and_stops(tiny_models):
    worker = RolloutWorker(name="off-thread", frame_period_s=0.0, steps_per_frame=5)
    stepping_threads = set()
    worker.start()
    worker.configure(EngineRequest(tiny_choice(tiny_models), 1, 0))
    worker.wait_for(lambda s: s.frame is not None, BUILD_TIMEOUT)
    original_step = worker.engine.step

    def recording_step(count=1):
        stepping_threads.add(threading.current_thread().name)
        original_step(count)

    worker.engine.step = recording_step
    worker.play()
    snapshot = worker.wait_for(lambda s: s.frame.step >= 20, STEP_TIMEOUT)
    stopped = worker.stop()

    assert snapshot.frame.step >= 20
    assert stopped
    assert not worker.alive
    assert threading.current_thread().name not in stepping_threads
    assert all(name.startswith("engine") for name in stepping_threads)


def test_pause_stops_stepping(tiny_state):
    tiny_state.play()
    wait_for_frame(tiny_state, lambda frame: frame.step >= 2, STEP_TIMEOUT)
    tiny_state.worker.pause()
    paused = wait_for_frame(tiny_state, lambda frame: not frame.running, STEP_TIMEOUT)
    time.sleep(0.5)  # a paused worker publishes nothing; give a wrongly running one time to step

    assert tiny_state.worker.snapshot().frame.step == paused.step


def rss_mb():
    return psutil.Process().memory_info().rss / 2**20


def test_soak_memory_stays_flat(make_state, tiny_models):
    """Run KS through the worker and render every published frame; RSS must not grow with the step count."""
    state = make_state(batch=4, s_init=200, steps_per_frame=100)
    state.worker.frame_period_s = 0.0
    state.model = tiny_choice(tiny_models)
    dashboard = Dashboard(state)
    wait_for_frame(state)
    state.play()

    baseline = None
    deadline = time.monotonic() + 600
    while True:
        snapshot = state.worker.snapshot()
        dashboard.render(snapshot)
        step = snapshot.frame.step
        if baseline is None and step >= SOAK_WARMUP_STEPS:
            gc.collect()
            baseline = rss_mb()
        if step >= SOAK_STEPS:
            break
        assert time.monotonic() < deadline, f"soak reached only step {step}"
        time.sleep(0.1)
    state.worker.pause()
    gc.collect()
    growth = rss_mb() - baseline

    assert dashboard.render_failures == 0
    assert growth < SOAK_RSS_GROWTH_MB, f"RSS grew by {growth:.1f} MB from step {SOAK_WARMUP_STEPS} to {step}"
    space_time_steps, _ = snapshot.frame.space_time["truth"]
    assert space_time_steps.size == state.worker.space_time_rows
    assert snapshot.frame.history["truth"]["step"].size == state.worker.history


def test_click_on_2d_field_perturbs_there(make_state, tiny_models):
    state = make_state(batch=1, system="qg")
    state.model = tiny_choice(tiny_models, name="tiny-qg", system="qg")
    frame = wait_for_frame(state)
    dashboard = Dashboard(state)
    dashboard.render(state.worker.snapshot())
    fields = dashboard.views[0]
    length_y, length_x = frame.info.extent

    fields.tapped_image(Tap(fields.figures["emulator"], x=0.25 * length_x, y=0.75 * length_y))
    snapshot = state.worker.wait_for(lambda s: s.frame is not None and s.frame.perturbations, STEP_TIMEOUT)

    perturbation = snapshot.frame.perturbations[-1]
    assert perturbation.center == pytest.approx((0.75, 0.25))
    assert perturbation.level == state.perturbation.level


def test_click_outside_domain_ignored(make_state, tiny_models):
    state = make_state(batch=1, system="qg")
    state.model = tiny_choice(tiny_models, name="tiny-qg", system="qg")
    frame = wait_for_frame(state)
    dashboard = Dashboard(state)
    dashboard.render(state.worker.snapshot())
    fields = dashboard.views[0]

    fields.tapped_image(Tap(fields.figures["truth"], x=-1.0, y=0.5 * frame.info.extent[0]))
    state.worker.step(1)
    snapshot = state.worker.wait_for(lambda s: s.frame is not None and s.frame.step >= 1, STEP_TIMEOUT)

    assert snapshot.frame.perturbations == ()
