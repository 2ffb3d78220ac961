"""Rollout engine tools: thermalized variants, perturbations, truth readings, recent histories and their export.

The tests run the shipped KS pair in ``checkpoints/`` on the CPU, with batches
of 2 to 4 and tens of steps at most. Two use the shipped QG pair for one step,
to check the grid axis order of a local perturbation and the layer axis of the export.
"""
import dataclasses
import json
import math

import numpy as np
import pytest
import torch
import xarray as xr

from thermalizer_core.engine import (FIELD_HISTORY_BYTES, MAX_FIELD_HISTORY_ROWS, MAX_VARIANTS,
                                     MIN_FIELD_HISTORY_ROWS, InvalidSettingsError, RolloutEngine,
                                     ThermalizerSettings, perturbation_window)
from thermalizer_core.export import engine_dataset, write_netcdf
from thermalizer_core.models.catalog import SHIPPED_CHECKPOINTS, load_pair

#: Emulator noise (normalized units) that the shipped classifier reads as levels of about 20 to 40,
#: so thermalized runs denoise at most steps and their noise generators matter.
NOISY_SIGMA = 0.06
MAIN_SETTINGS = ThermalizerSettings(s_init=10, s_stop=4, emulator_sigma=NOISY_SIGMA)
#: A variant that never denoises, because no level exceeds s_init.
NEVER_DENOISE = dataclasses.replace(MAIN_SETTINGS, s_init=999)
#: Level of the perturbation tests and the smallest reading of it that counts as a clear jump.
#: The shipped classifier read level 100 as 65 to 119 (batches of 4, seeds 0 to 2), against clean readings of 3 to 23.
PERTURBATION_LEVEL = 100
MIN_PERTURBED_READING = 50
#: Steps after a perturbation of level 100 by which every thermalized member reads s_init (10) or less,
#: with s_stop 4. Measured on the shipped pair (batches of 4, seeds 0 to 2): the first step reads the
#: perturbed field (63 to 111) and denoises it, and the second reads 2 to 10.
RETURN_STEPS = 2


@pytest.fixture(scope="module")
def shipped():
    if not (SHIPPED_CHECKPOINTS / "ks-thermalizer" / "model.safetensors").is_file():
        pytest.skip(f"the shipped KS pair is not in {SHIPPED_CHECKPOINTS}")
    return load_pair("ks", device="cpu")


@pytest.fixture(scope="module")
def shipped_qg():
    if not (SHIPPED_CHECKPOINTS / "qg-thermalizer" / "model.safetensors").is_file():
        pytest.skip(f"the shipped QG pair is not in {SHIPPED_CHECKPOINTS}")
    return load_pair("qg", device="cpu")


def make_engine(pair, **options) -> RolloutEngine:
    options.setdefault("device", "cpu")
    options.setdefault("runs", ("emulator", "thermalized"))
    options.setdefault("batch", 3)
    options.setdefault("settings", MAIN_SETTINGS)
    return RolloutEngine(pair.system, pair.emulator, pair.thermalizer, **options)


def fields_of(engine) -> dict[str, torch.Tensor]:
    return {name: run.field.clone() for name, run in engine.runs.items()}


def max_difference(first, second) -> float:
    return (first - second).abs().max().item()


# -- variants -------------------------------------------------------------------------


def test_variant_names_and_settings(shipped):
    variant = dataclasses.replace(MAIN_SETTINGS, s_init=20)
    engine = make_engine(shipped, runs=("truth", "emulator", "thermalized"),
                         variants={"variant 1": variant, "variant 2": NEVER_DENOISE})

    assert engine.run_names == ("truth", "emulator", "thermalized", "variant 1", "variant 2")
    assert engine.variant_names == ("variant 1", "variant 2")
    assert engine.thermalized_names == ("thermalized", "variant 1", "variant 2")
    assert engine.run_settings("thermalized") == MAIN_SETTINGS
    assert engine.run_settings("variant 1") == variant
    assert engine.run_settings("variant 2") == NEVER_DENOISE
    with pytest.raises(ValueError, match="unknown run 'variant 3'"):
        engine.run_settings("variant 3")


def test_variant_same_settings_bit_identical(shipped):
    engine = make_engine(shipped, variants={"copy": MAIN_SETTINGS})

    engine.step(6)

    thermalized, copy = engine.runs["thermalized"].field, engine.runs["copy"].field
    denoising = engine.history("thermalized")["denoising_steps"]
    assert denoising.sum() > 0, "the test needs denoising steps to compare the denoising noise"
    assert not torch.equal(thermalized, engine.runs["emulator"].field)
    assert torch.equal(copy, thermalized), f"max difference {max_difference(copy, thermalized):.3g}"
    for record, values in engine.history("thermalized").items():
        assert np.array_equal(values, engine.history("copy")[record], equal_nan=True), f"{record} differs"


def test_variant_never_denoising_equals_emulator(shipped):
    engine = make_engine(shipped, variants={"alone": NEVER_DENOISE})

    engine.step(6)

    alone, emulator = engine.runs["alone"].field, engine.runs["emulator"].field
    assert torch.equal(alone, emulator), f"max difference {max_difference(alone, emulator):.3g}"
    assert engine.history("alone")["denoising_steps"].max() == 0
    assert (engine.history("alone")["level"] > 10).any(), "levels never exceeded 10, so the test shows nothing"


def test_update_variant_applies_next_step(shipped):
    switch_step = 3
    engine = make_engine(shipped, variants={"variant": NEVER_DENOISE})
    engine.step(switch_step)
    assert torch.equal(engine.runs["variant"].field, engine.runs["emulator"].field)

    engine.update_variant("variant", MAIN_SETTINGS)
    engine.step(3)

    denoising = engine.history("variant")["denoising_steps"]
    assert engine.run_settings("variant") == MAIN_SETTINGS
    assert denoising[:switch_step].max() == 0, f"denoising before the switch: {denoising.tolist()}"
    assert denoising[switch_step:].sum() > 0, f"no denoising after the switch: {denoising.tolist()}"
    assert not torch.equal(engine.runs["variant"].field, engine.runs["emulator"].field)
    assert engine.run_settings("thermalized") == MAIN_SETTINGS, "the main settings changed too"


def test_update_variant_rejects_bad_input(shipped):
    engine = make_engine(shipped, variants={"variant A": NEVER_DENOISE})

    with pytest.raises(ValueError, match=r"unknown variant 'variant B'.*'variant A'"):
        engine.update_variant("variant B", MAIN_SETTINGS)
    with pytest.raises(InvalidSettingsError, match=r"variant 'variant A': s_stop = 1000"):
        engine.update_variant("variant A", dataclasses.replace(MAIN_SETTINGS, s_stop=1000))

    assert engine.run_settings("variant A") == NEVER_DENOISE


def test_set_variants_restarts_step_zero(shipped):
    engine = make_engine(shipped, runs=("truth", "emulator", "thermalized"), seed=5,
                         variants={"old": NEVER_DENOISE})
    start = fields_of(engine)["thermalized"]
    engine.step(4)

    engine.set_variants({"new 1": MAIN_SETTINGS, "new 2": NEVER_DENOISE})

    assert engine.step_count == 0
    assert engine.seed == 5
    assert engine.run_names == ("truth", "emulator", "thermalized", "new 1", "new 2")
    for name, field in fields_of(engine).items():
        assert torch.equal(field, start), f"{name} did not start from the shared initial condition"
        assert len(engine.history(name)["step"]) == 0, f"{name} kept its history"
        assert engine.recent_fields(name)[0].tolist() == [0]
    engine.step(3)
    assert torch.equal(engine.runs["new 1"].field, engine.runs["thermalized"].field)
    assert torch.equal(engine.runs["new 2"].field, engine.runs["emulator"].field)


@pytest.mark.parametrize("variants, message", [
    ({"truth": MAIN_SETTINGS}, "variant name 'truth' is the name of a built-in run"),
    ({"": MAIN_SETTINGS}, "variant name '' is invalid"),
    ({"  ": MAIN_SETTINGS}, "variant name '  ' is invalid"),
    ({f"v{i}": MAIN_SETTINGS for i in range(MAX_VARIANTS + 1)}, f"{MAX_VARIANTS + 1} variants requested"),
    ({"deep": ThermalizerSettings(s_init=1000)}, "variant 'deep': s_init = 1000 is out of range"),
])
def test_invalid_variants_raise(shipped, variants, message):
    with pytest.raises(ValueError, match=message):
        make_engine(shipped, variants=variants)


def test_set_variants_invalid_keeps_old(shipped):
    engine = make_engine(shipped, variants={"old": NEVER_DENOISE})
    engine.step(2)

    with pytest.raises(ValueError, match="'thermalized' is the name of a built-in run"):
        engine.set_variants({"thermalized": MAIN_SETTINGS})

    assert engine.variant_names == ("old",)
    assert engine.step_count == 2


def test_variants_need_thermalizer(shipped):
    with pytest.raises(ValueError, match="'variant' are thermalized runs and need a thermalizer"):
        RolloutEngine(shipped.system, shipped.emulator, None, runs=("emulator",), device="cpu",
                      variants={"variant": MAIN_SETTINGS})


def test_summary_includes_variants(shipped):
    engine = make_engine(shipped, runs=("thermalized",), variants={"alone": NEVER_DENOISE})

    engine.step(3)

    summary = engine.summary()
    assert set(summary["runs"]) == {"thermalized", "alone"}
    assert summary["runs"]["alone"]["thermalized_fraction"] == 0.0
    assert summary["runs"]["thermalized"]["thermalized_fraction"] > 0.0
    assert summary["variants"] == {"alone": dataclasses.asdict(NEVER_DENOISE)}


# -- perturbation ---------------------------------------------------------------------


def test_perturb_raises_levels_then_thermalizes(shipped):
    s_init = 10
    engine = make_engine(shipped, batch=4, runs=("truth", "emulator", "thermalized"),
                         settings=ThermalizerSettings(s_init=s_init, s_stop=4))
    engine.step(10)
    clean = {name: engine.history(name)["level"][-1] for name in ("emulator", "thermalized")}
    truth_before = engine.runs["truth"].field.clone()

    levels = engine.perturb(PERTURBATION_LEVEL)

    assert set(levels) == {"emulator", "thermalized"}
    for name, predicted in levels.items():
        assert predicted.dtype == torch.long
        assert predicted.shape == (4,)
        assert torch.equal(engine.runs[name].level, predicted)
        assert predicted.min().item() >= MIN_PERTURBED_READING, \
            f"{name}: read {predicted.tolist()} after level {PERTURBATION_LEVEL}, {clean[name].tolist()} before"
    assert torch.equal(engine.runs["truth"].field, truth_before), "the truth was perturbed"
    assert len(engine.history("thermalized")["step"]) == 10, "perturb added a history row"

    engine.step(RETURN_STEPS)

    thermalized = engine.history("thermalized")["level"][-RETURN_STEPS:]
    emulator = engine.history("emulator")["level"][-RETURN_STEPS:]
    assert thermalized[0].min() >= MIN_PERTURBED_READING, f"first reading after: {thermalized.tolist()}"
    assert thermalized[-1].max() <= s_init, f"thermalized levels after the perturbation: {thermalized.tolist()}"
    assert emulator.min() >= MIN_PERTURBED_READING, f"emulator levels after the perturbation: {emulator.tolist()}"


def test_perturb_same_noise_every_run(shipped):
    engine = make_engine(shipped, runs=("truth", "emulator", "thermalized"), variants={"variant": MAIN_SETTINGS})
    before = fields_of(engine)

    engine.perturb(50, seed=11)

    increments = {name: engine.runs[name].field - before[name] for name in engine.emulated_names}
    assert increments["emulator"].abs().max().item() > 0.1
    for name, increment in increments.items():
        assert torch.equal(increment, increments["emulator"]), f"{name} got other noise"
    assert torch.equal(engine.runs["truth"].field, before["truth"])


def test_perturb_noise_independent_of_state(shipped):
    # Emulator and thermalized fields differ after some steps, but the draw eps recovered from each increment must not.
    level = 50
    engine = make_engine(shipped)
    engine.step(5)
    before = fields_of(engine)
    assert not torch.equal(before["emulator"], before["thermalized"])

    engine.perturb(level, seed=3)

    normalization = shipped.thermalizer.normalization
    alphas_cumprod = shipped.thermalizer.schedule.alphas_cumprod[level].item()
    recovered = {}
    for name in ("emulator", "thermalized"):
        increment = (engine.runs[name].field - before[name]) / normalization.std
        clean = normalization.normalize(before[name])
        recovered[name] = (increment - (math.sqrt(alphas_cumprod) - 1) * clean) / math.sqrt(1 - alphas_cumprod)
    difference = max_difference(recovered["emulator"], recovered["thermalized"])
    # float32 rounding of fields of order 1, divided by sqrt(1 - alphas_cumprod[50]) = 0.091.
    assert difference < 1e-4, f"recovered noise differs by {difference:.3g}"
    assert abs(recovered["emulator"].std().item() - 1) < 0.25, "recovered noise is not standard normal"


def test_perturb_keeps_emulator_noise(shipped):
    perturbed = make_engine(shipped)
    control = make_engine(shipped)
    perturbed.step(2)
    control.step(2)

    perturbed.perturb(30)

    for name in ("emulator", "thermalized"):
        assert torch.equal(perturbed.generators[name].get_state(), control.generators[name].get_state()), \
            f"perturb drew from the {name} emulator noise generator"
    assert torch.equal(perturbed.denoising_generator.get_state(), control.denoising_generator.get_state())


def test_perturb_seed_reproducible(shipped):
    first, second = make_engine(shipped), make_engine(shipped)
    start = first.runs["emulator"].field.clone()

    first.perturb(40)
    once = first.runs["emulator"].field - start
    first.perturb(40)
    twice = first.runs["emulator"].field - start - once
    second.perturb(40)

    assert torch.equal(second.runs["emulator"].field - start, once), "same engine seed, other first perturbation"
    assert not torch.equal(twice, once), "the second perturbation repeated the first noise"


def test_local_perturbation_stays_near_center(shipped):
    center, width = 0.25, 0.1
    engine = make_engine(shipped, runs=("emulator",), batch=2)
    before = engine.runs["emulator"].field.clone()

    engine.perturb(PERTURBATION_LEVEL, center=(center,), width=width, seed=1)

    change = (engine.runs["emulator"].field - before) ** 2
    position = torch.arange(change.shape[-1]) / change.shape[-1]
    distance = (position - center).abs()
    inside, outside = distance < width, distance > 3 * width
    inside_change = change[..., inside].mean().item()
    outside_change = change[..., outside].mean().item()
    # The window is exp(-0.5) = 0.61 or more inside and exp(-4.5) = 0.011 or less outside,
    # so the mean squared change should differ by a factor of about (0.8 / 0.011)**2, thousands.
    assert inside_change > 100 * outside_change, f"mean squared change {inside_change:.3g} inside, " \
                                                 f"{outside_change:.3g} outside"


def test_local_perturbation_2d_axis_order(shipped_qg):
    center = (0.25, 0.75)
    engine = RolloutEngine(shipped_qg.system, shipped_qg.emulator, shipped_qg.thermalizer, batch=1, device="cpu",
                           runs=("emulator",))
    before = engine.runs["emulator"].field.clone()

    engine.perturb(PERTURBATION_LEVEL, center=center, width=0.05, seed=2)

    change = ((engine.runs["emulator"].field - before) ** 2).mean(dim=(0, 1))
    ny, nx = change.shape
    at_center = change[int(center[0] * ny), int(center[1] * nx)].item()
    transposed = change[int(center[1] * ny), int(center[0] * nx)].item()
    assert change.argmax().item() // nx in range(int(0.15 * ny), int(0.35 * ny)), "largest change far from y = 0.25"
    assert at_center > 1000 * transposed, f"squared change {at_center:.3g} at (y, x) = {center}, " \
                                          f"{transposed:.3g} at the transposed point"


def test_perturbation_window_periodic():
    window = perturbation_window((64,), (0.0,), 0.1)
    square = perturbation_window((8, 16), (0.5, 0.25), 0.2)

    assert window[0].item() == 1.0
    assert torch.equal(window[1:], window[1:].flip(0)), "window not symmetric across the periodic boundary"
    assert window[32].item() == pytest.approx(math.exp(-0.5 * (0.5 / 0.1) ** 2))
    assert square.shape == (8, 16)
    assert square[4, 4].item() == 1.0
    assert square[0, 4].item() == pytest.approx(math.exp(-0.5 * (0.5 / 0.2) ** 2))


@pytest.mark.parametrize("arguments, message", [
    ({"level": 0}, "perturbation level 0 is invalid: use an integer from 1 to 999"),
    ({"level": 1000}, "perturbation level 1000 is invalid"),
    ({"level": 2.5}, "perturbation level 2.5 is invalid"),
    ({"level": 10, "center": (0.5, 0.5)}, r"center \(0.5, 0.5\) has 2 values; ks needs 1"),
    ({"level": 10, "center": (1.0,)}, r"center \(1.0,\) is invalid: 1.0 is not a fraction"),
    ({"level": 10, "center": (-0.1,)}, r"center \(-0.1,\) is invalid"),
    ({"level": 10, "width": 0.0}, "perturbation width 0.0 is invalid"),
    ({"level": 10, "width": float("nan")}, "perturbation width nan is invalid"),
])
def test_perturb_rejects_bad_arguments(shipped, arguments, message):
    engine = make_engine(shipped, batch=2)
    start = engine.runs["emulator"].field.clone()
    level = arguments.pop("level")

    with pytest.raises(ValueError, match=message):
        engine.perturb(level, **arguments)

    assert torch.equal(engine.runs["emulator"].field, start)


def test_perturb_needs_thermalizer(shipped):
    engine = RolloutEngine(shipped.system, shipped.emulator, None, runs=("emulator",), batch=2, device="cpu")

    with pytest.raises(ValueError, match="perturb needs a thermalizer"):
        engine.perturb(10)


# -- truth readings -------------------------------------------------------------------


def test_classify_truth_records_levels(shipped):
    engine = make_engine(shipped, runs=("truth", "emulator"), batch=2, classify_truth=True,
                         settings=ThermalizerSettings(classify_every=2))
    default = make_engine(shipped, runs=("truth",), batch=2)

    engine.step(4)
    default.step(4)

    levels = engine.history("truth")["level"]
    assert (levels[[0, 2]] == -1).all(), f"truth levels at unclassified steps: {levels.tolist()}"
    # The shipped classifier's evaluation (checkpoints/ks-thermalizer/evaluation.json) reads every clean sample as 0.
    assert ((levels[[1, 3]] >= 0) & (levels[[1, 3]] <= 4)).all(), f"truth levels {levels.tolist()}"
    assert (default.history("truth")["level"] == -1).all(), "truth classified without classify_truth"
    assert engine.summary()["runs"]["truth"]["network_calls"] == 2


# -- recent histories -----------------------------------------------------------------


def test_recent_fields_wrap(shipped):
    rows, steps = 5, 7
    engine = make_engine(shipped, runs=("truth", "thermalized"), batch=2, field_history=rows)

    engine.step(3)
    early_steps, early_fields = engine.recent_fields("thermalized")
    engine.step(steps - 3)
    recorded_steps, fields = engine.recent_fields("thermalized")

    assert engine.field_history_rows == rows
    assert early_steps.tolist() == [0, 1, 2, 3]
    assert early_fields.shape == (4, 2, 1, 64)
    assert recorded_steps.dtype == np.int64
    assert fields.dtype == np.float32
    assert recorded_steps.tolist() == list(range(steps - rows + 1, steps + 1))
    assert fields.shape == (rows, 2, 1, 64)
    assert np.array_equal(fields[-1], engine.runs["thermalized"].field.numpy())
    assert np.array_equal(fields[0], early_fields[-1]), "row of step 3 is not the field of step 3"
    assert engine.recent_fields("truth")[0].tolist() == recorded_steps.tolist()


def test_recent_spectra_wrap(shipped):
    engine = make_engine(shipped, runs=("emulator",), batch=2, history=4)

    engine.step(6)
    steps, spectra = engine.recent_spectra("emulator")

    assert steps.tolist() == [3, 4, 5, 6]
    assert spectra.shape == (4, 2, len(shipped.system.wavenumbers))
    assert spectra.dtype == np.float32
    assert np.allclose(spectra[-1], engine.runs["emulator"].spectrum.numpy(), rtol=1e-6)
    engine.reset()
    assert engine.recent_spectra("emulator")[0].tolist() == [0]
    assert engine.recent_fields("emulator")[0].tolist() == [0]


def test_field_history_sized_by_budget(shipped):
    engine = make_engine(shipped, runs=("truth", "emulator", "thermalized"), batch=4,
                         variants={"variant": MAIN_SETTINGS})

    step_bytes = 4 * 4 * 64 * 4
    assert engine.field_history_rows == min(max(FIELD_HISTORY_BYTES // step_bytes, MIN_FIELD_HISTORY_ROWS),
                                            MAX_FIELD_HISTORY_ROWS)
    assert engine.field_history_rows == MAX_FIELD_HISTORY_ROWS
    assert engine.runs["variant"].recent_fields.data.shape == (MAX_FIELD_HISTORY_ROWS, 4, 1, 64)


def test_field_history_off(shipped):
    engine = make_engine(shipped, runs=("emulator",), batch=2, field_history=0)
    engine.step(2)

    with pytest.raises(ValueError, match="keeps no recent fields"):
        engine.recent_fields("emulator")
    with pytest.raises(ValueError, match="unknown run 'thermalized'"):
        engine.recent_spectra("thermalized")
    assert engine.recent_spectra("emulator")[0].tolist() == [0, 1, 2]
    with pytest.raises(ValueError, match="field_history = -1 is invalid"):
        make_engine(shipped, field_history=-1)


# -- export ---------------------------------------------------------------------------


def test_engine_dataset_round_trip(shipped, tmp_path):
    rows, steps = 4, 6
    variant = dataclasses.replace(MAIN_SETTINGS, s_init=20, hard_limit=300)
    engine = make_engine(shipped, runs=("truth", "emulator", "thermalized"), batch=2, seed=9, field_history=rows,
                         variants={"variant 1": variant}, classify_truth=True,
                         settings=ThermalizerSettings(s_init=10, s_stop=4))
    engine.step(steps)
    path = tmp_path / "recent.nc"

    write_netcdf(engine_dataset(engine), path)
    with xr.open_dataset(path, engine="h5netcdf") as dataset:
        dataset.load()

    field = dataset["field"]
    assert field.dims == ("run", "step", "batch", "channel", "x")
    assert field.shape == (4, rows, 2, 1, 64)
    assert dataset["run"].values.tolist() == ["truth", "emulator", "thermalized", "variant 1"]
    assert dataset["step"].values.tolist() == [3, 4, 5, 6]
    assert dataset["time"].values.tolist() == [3.0, 4.0, 5.0, 6.0]
    assert dataset["x"].values[1] == pytest.approx(22.0 / 64)
    assert np.array_equal(field.sel(run="variant 1").values, engine.recent_fields("variant 1")[1])
    assert np.array_equal(dataset["level"].sel(run="thermalized").values,
                          engine.history("thermalized")["level"][-rows:])
    assert (dataset["level"].sel(run="truth").values >= 0).all(), "truth levels were not exported"
    assert dataset.attrs["system"] == "ks"
    assert dataset.attrs["param_L"] == 22.0
    assert (dataset.attrs["seed"], dataset.attrs["step"], dataset.attrs["batch"]) == (9, steps, 2)
    assert dataset.attrs["emulator_interval"] == 1.0
    assert json.loads(dataset.attrs["settings_variant 1"]) == dataclasses.asdict(variant)
    thermalized = json.loads(dataset.attrs["settings_thermalized"])
    assert thermalized == {**dataclasses.asdict(ThermalizerSettings(s_init=10, s_stop=4)), "emulator_sigma": 0.0}
    assert "settings_truth" not in dataset.attrs


def test_engine_dataset_qg_layers(shipped_qg):
    engine = RolloutEngine(shipped_qg.system, shipped_qg.emulator, shipped_qg.thermalizer, batch=1, device="cpu",
                           runs=("emulator",), field_history=2)
    engine.step(1)

    dataset = engine_dataset(engine)

    assert dataset["field"].dims == ("run", "step", "batch", "layer", "y", "x")
    assert dataset["layer"].values.tolist() == [1, 2]
    assert dataset["y"].values[-1] < shipped_qg.system.params.W
    assert dataset["field"].shape == (1, 2, 1, 2, 64, 64)


def test_engine_dataset_selected_runs(shipped):
    engine = make_engine(shipped, batch=2, field_history=3)
    engine.step(1)

    dataset = engine_dataset(engine, ["thermalized"])

    assert dataset["run"].values.tolist() == ["thermalized"]
    assert dataset["step"].values.tolist() == [0, 1]
    assert dataset["level"].values[0, 0].tolist() == [-1, -1], "step 0 has no recorded level"
    with pytest.raises(ValueError, match=r"cannot export runs \['truth'\]"):
        engine_dataset(engine, ["truth"])
