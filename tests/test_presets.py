"""Teaching presets and shareable links: values, one engine build per preset, custom marking, URL round trips.

The states run the shipped checkpoints. The links go through Panel's real
``Location`` object without a server; the served page is covered by
``tests/test_app_presets_browser.py``.
"""
import urllib.parse

import pytest
from panel.io.location import Location

from app.checkpoints import shipped_choice
from app.presets import (CUSTOM, LINK_PARAMETERS, PRESET_PARAMETERS, PRESETS, apply_link_model, read_link,
                         read_link_query, share_in_link, with_preset_values)
from app.state import DashboardState
from test_app_state import BUILD_TIMEOUT, shipped_pair_exists, wait_for_frame

#: Seconds for a preset's rollout to reach the step where its explanation's claim is checked.
ROLLOUT_TIMEOUT = 600


@pytest.fixture
def make_shipped_state():
    """Build DashboardStates on the shipped checkpoints and stop their workers afterwards."""
    states = []

    def make(**params):
        if "preset" not in params:
            params.setdefault("batch", 2)
        state = DashboardState(**params)
        states.append(state)
        return state

    yield make
    for state in states:
        assert state.close(), "worker thread did not stop"


def require_shipped_pair(system):
    if not shipped_pair_exists(system):
        pytest.skip(f"the shipped {system} pair (checkpoints/{system}-emulator, -thermalizer) is not trained yet")


def query_of(location):
    return dict(urllib.parse.parse_qsl(location.search.lstrip("?")))


@pytest.mark.parametrize("key", list(PRESETS))
def test_preset_values_are_valid(key):
    preset = PRESETS[key]
    values, problems = read_link_query({name: str(value) for name, value in preset.parameter_values().items()
                                        if name in LINK_PARAMETERS}, DashboardState.param)

    assert urllib.parse.quote(key) == key, "the key must be usable in a URL without escaping"
    assert preset.key == key
    assert problems == []
    assert values["system"] == preset.system
    assert preset.s_stop <= preset.s_init
    sentences = preset.explanation.count(". ") + 1
    assert 2 <= sentences <= 4, f"{sentences} sentences: {preset.explanation}"


@pytest.mark.parametrize("key", list(PRESETS))
def test_preset_sets_values_with_one_build(make_shipped_state, key):
    preset = PRESETS[key]
    require_shipped_pair("ks")
    require_shipped_pair(preset.system)
    state = make_shipped_state(seed=11, s_init=30, steps_per_frame=7)
    wait_for_frame(state)
    generation = state.worker.snapshot().generation

    state.preset = key

    assert state.worker.snapshot().generation == generation + 1, "the engine was not built exactly once"
    frame = wait_for_frame(state, timeout=BUILD_TIMEOUT)
    assert state.preset == key
    for name, value in preset.parameter_values().items():
        assert getattr(state, name) == value, f"{name} is {getattr(state, name)!r}, the preset sets {value!r}"
    assert state.model == shipped_choice(preset.system)
    assert state.worker.steps_per_frame == preset.steps_per_frame
    assert frame.step == 0
    assert frame.info.system == preset.system
    assert frame.info.batch == preset.batch
    assert state.worker.engine.seed == preset.seed
    assert frame.settings.s_init == preset.s_init
    assert frame.settings.s_stop == preset.s_stop


def test_preset_on_same_engine_restarts(make_shipped_state):
    require_shipped_pair("ks")
    state = make_shipped_state(batch=4, seed=3)
    wait_for_frame(state)
    state.worker.step(3)
    stepped = wait_for_frame(state, lambda frame: frame.step == 3)
    generation = state.worker.snapshot().generation

    state.preset = "emulator-drifts"
    restarted = wait_for_frame(state, lambda frame: frame.run_id > stepped.run_id)

    assert state.worker.snapshot().generation == generation
    assert restarted.step == 0
    assert state.worker.engine.seed == PRESETS["emulator-drifts"].seed


@pytest.mark.parametrize("name, value", [("s_init", 31), ("s_stop", 1), ("seed", 9), ("batch", 3),
                                         ("steps_per_frame", 3), ("forward_diffuse", True)])
def test_hand_change_marks_custom(make_shipped_state, name, value):
    require_shipped_pair("ks")
    state = make_shipped_state()
    state.preset = "thermalizer-stabilizes"

    setattr(state, name, value)

    assert state.preset == CUSTOM
    assert getattr(state, name) == value


def test_trajectory_change_keeps_preset(make_shipped_state):
    require_shipped_pair("ks")
    state = make_shipped_state()
    state.preset = "thermalizer-stabilizes"

    state.trajectory = 2

    assert state.preset == "thermalizer-stabilizes"


def test_unknown_preset_rejected(make_shipped_state):
    require_shipped_pair("ks")
    state = make_shipped_state()

    with pytest.raises(ValueError, match="no-such-preset"):
        state.preset = "no-such-preset"

    assert state.preset == CUSTOM


def test_link_query_checks_each_value():
    query = {"preset": "no-such-preset", "system": "qg", "seed": "abc", "s_init": "-5", "s_stop": "2",
             "batch": "3.0", "steps_per_frame": "4", "layer": "1"}

    values, problems = read_link_query(query, DashboardState.param)

    assert values == {"system": "qg", "s_stop": 2, "steps_per_frame": 4}
    assert len(problems) == 4
    preset_problem, seed_problem, batch_problem, s_init_problem = problems
    assert "preset='no-such-preset'" in preset_problem
    assert "emulator-drifts" in preset_problem
    assert "seed='abc'" in seed_problem
    assert "whole number" in seed_problem
    assert "batch='3.0'" in batch_problem
    assert "s_init=-5" in s_init_problem
    assert "0 to 200" in s_init_problem


def test_preset_with_explicit_value_is_custom():
    params = with_preset_values({"preset": "emulator-drifts", "s_init": 50})

    assert params["preset"] == CUSTOM
    assert params["s_init"] == 50
    assert params["seed"] == PRESETS["emulator-drifts"].seed
    assert params["s_stop"] == PRESETS["emulator-drifts"].s_stop


def test_preset_with_equal_value_stays():
    preset = PRESETS["thresholds-too-high"]

    params = with_preset_values({"preset": preset.key, "s_init": preset.s_init, "system": preset.system})

    assert params["preset"] == preset.key
    assert {name: params[name] for name in PRESET_PARAMETERS} == {
        name: value for name, value in preset.parameter_values().items() if name in PRESET_PARAMETERS}


def test_link_with_preset_and_value_ends_custom(make_shipped_state):
    require_shipped_pair("ks")
    location = Location(search="?preset=emulator-drifts&s_init=50&seed=abc")
    values, problems = read_link(location, DashboardState.param)
    state = make_shipped_state(**values)

    share_in_link(state, location)

    assert state.preset == CUSTOM
    assert state.s_init == 50
    assert state.seed == PRESETS["emulator-drifts"].seed
    assert len(problems) == 1
    query = query_of(location)
    assert query["preset"] == CUSTOM
    assert query["s_init"] == "50"
    assert query["seed"] == str(PRESETS["emulator-drifts"].seed)


def test_browser_report_keeps_resolved_state(make_shipped_state):
    require_shipped_pair("ks")
    link = "?preset=emulator-drifts&s_init=50&seed=abc&layer=1"
    location = Location(search=link)
    values, _ = read_link(location, DashboardState.param)
    state = make_shipped_state(**values)
    share_in_link(state, location)
    resolved = location.search
    generation = state.worker.snapshot().generation

    # When the page connects, the browser reports the address it was opened with.
    location.search = link

    assert state.preset == CUSTOM
    assert state.s_init == 50
    assert state.seed == PRESETS["emulator-drifts"].seed
    assert state.worker.snapshot().generation == generation
    assert location.search == resolved
    assert query_of(location)["layer"] == "1", "a key that is not a link parameter was dropped"


def test_link_follows_state_changes(make_shipped_state):
    require_shipped_pair("ks")
    location = Location(search="?preset=thresholds-too-low")
    values, _ = read_link(location, DashboardState.param)
    state = make_shipped_state(**values)
    share_in_link(state, location)
    assert query_of(location)["preset"] == "thresholds-too-low"

    state.s_init = 33
    after_hand_change = query_of(location)
    state.preset = "thermalizer-stabilizes"
    after_preset = query_of(location)

    assert after_hand_change["s_init"] == "33"
    assert after_hand_change["preset"] == CUSTOM
    preset = PRESETS["thermalizer-stabilizes"]
    assert after_preset == {"preset": preset.key, "system": preset.system, "seed": str(preset.seed),
                            "batch": str(preset.batch), "s_init": str(preset.s_init), "s_stop": str(preset.s_stop),
                            "steps_per_frame": str(preset.steps_per_frame), "model": "shipped"}


@pytest.mark.parametrize("key", ["emulator-drifts", "thermalizer-stabilizes"])
def test_preset_shows_emulator_leaving(make_shipped_state, key):
    """The shown trajectory leaves the band within a few hundred steps alone, but stays in it thermalized."""
    require_shipped_pair("ks")
    state = make_shipped_state()
    state.preset = key
    wait_for_frame(state)
    state.worker.frame_period_s = 0.0
    state.worker.steps_per_frame = 50
    state.play()

    frame = wait_for_frame(state, lambda frame: frame.step >= 450, ROLLOUT_TIMEOUT)
    state.worker.pause()

    emulator_exit, reason = frame.exits["emulator"][0]
    # Measured on a 2-core CPU with torch 2.13.0+cpu: step 286 (emulator-drifts), 315 (thermalizer-stabilizes).
    assert emulator_exit is not None, "the emulator alone stayed in the band"
    assert 150 <= emulator_exit <= 450, f"the emulator alone left at step {emulator_exit} ({reason})"
    assert frame.exits["thermalized"][0] == (None, None)


def test_low_thresholds_denoise_most_steps(make_shipped_state):
    require_shipped_pair("ks")
    state = make_shipped_state()
    state.preset = "thresholds-too-low"
    wait_for_frame(state)
    state.worker.frame_period_s = 0.0
    state.play()

    frame = wait_for_frame(state, lambda frame: frame.step >= 100, ROLLOUT_TIMEOUT)
    state.worker.pause()

    denoised = frame.history["thermalized"]["denoising_steps"] > 0
    # Measured over 1000 steps: 78% of trajectory-steps denoised, against 10% with s_init 10.
    assert denoised.mean() > 0.5, f"only {denoised.mean():.0%} of trajectory-steps were denoised"


def test_link_selects_models_folder_pair(tiny_models):
    location = Location(search="?system=ks&model=tiny-ks")
    values, problems = read_link(location, DashboardState.param)
    state = DashboardState(models_folder=str(tiny_models), batch=1, **values)
    try:
        problem = apply_link_model(state, location)
        share_in_link(state, location)
        chosen = state.model
        folder_query = query_of(location)["model"]
        state.model = shipped_choice("ks")
        shipped_query = query_of(location)["model"]
    finally:
        assert state.close(), "worker thread did not stop"

    assert problems == []
    assert problem is None
    assert (chosen.name, chosen.folder) == ("tiny-ks", str(tiny_models))
    assert folder_query == "tiny-ks"
    assert shipped_query == "shipped"


def test_link_unknown_model_reported(tiny_models):
    location = Location(search="?model=nope")
    state = DashboardState(models_folder=str(tiny_models), batch=1)
    try:
        problem = apply_link_model(state, location)
        folder = state.model.folder
    finally:
        assert state.close(), "worker thread did not stop"

    assert "model='nope'" in problem
    assert "tiny-ks" in problem
    assert folder is None
