"""The ``thermalizer`` command: simulate round trips, calibrate, and one-line errors with exit code 2 on bad input."""
from __future__ import annotations

import json
import os
import pathlib
import subprocess
import sys

import numpy as np
import pytest
import torch
import xarray as xr

from thermalizer_core.cli import main
from thermalizer_core.systems import get_system

BIN = pathlib.Path(sys.executable).parent
#: Environment of the subprocesses: one thread, as the tests share two cores with other jobs.
SUBPROCESS_ENV = {**os.environ, "OMP_NUM_THREADS": "1"}


def run_in_process(argv: list[str], capsys) -> tuple[int, str]:
    """Run ``main(argv)`` and return the exit code and standard error (argparse errors raise SystemExit)."""
    try:
        code = main(argv)
    except SystemExit as exit_:
        code = exit_.code
    return code, capsys.readouterr().err


def error_lines(stderr: str) -> list[str]:
    """Return the non-empty lines of ``stderr``."""
    return [line for line in stderr.splitlines() if line.strip()]


@pytest.fixture(scope="module")
def ks():
    return get_system("ks")


@pytest.fixture(scope="module")
def inputs(tmp_path_factory, ks) -> pathlib.Path:
    """A folder with good and bad initial-state files for KS (n = 64)."""
    folder = tmp_path_factory.mktemp("inputs")
    np.save(folder / "initial.npy", ks.initial_state(2, seed=3).numpy())
    np.save(folder / "wrong_shape.npy", np.zeros((2, 63)))
    np.save(folder / "no_batch.npy", np.zeros(64))
    with_nan = np.zeros((2, 64))
    with_nan[1, 5] = np.nan
    np.save(folder / "with_nan.npy", with_nan)
    (folder / "text.npy").write_text("not an array\n")
    (folder / "taken.npy").mkdir()
    return folder


# -- simulate round trips ------------------------------------------------------------------------------------------


def test_simulate_subprocess_npy(inputs, ks, tmp_path):
    out = tmp_path / "trajectory.npy"
    command = [str(BIN / "thermalizer"), "simulate", "--system", "ks", "--initial", str(inputs / "initial.npy"),
               "--duration", "6", "--save-every", "2", "--out", str(out)]
    result = subprocess.run(command, capture_output=True, text=True, env=SUBPROCESS_ENV, timeout=120)
    assert result.returncode == 0, result.stderr
    array = np.load(out)
    initial = np.load(inputs / "initial.npy")
    assert array.shape == (2, 4, 64), f"shape {array.shape}"
    assert np.array_equal(array[:, 0], initial)
    for k in range(1, 4):
        expected = ks.advance(torch.from_numpy(initial), 2.0 * k).numpy()
        error = np.abs(array[:, k] - expected).max()
        assert error < 1e-10, f"save {k}: max error {error:.3g} against advance({2 * k})"


def test_simulate_in_process_seed(ks, tmp_path, capsys):
    out = tmp_path / "trajectory.npy"
    code, stderr = run_in_process(["simulate", "--system", "ks", "--seed", "11", "--batch", "3",
                                   "--duration", "3", "--save-every", "0.75", "--out", str(out)], capsys)
    assert code == 0, stderr
    array = np.load(out)
    assert array.shape == (3, 5, 64), f"shape {array.shape}"
    initial = ks.initial_state(3, seed=11)
    assert np.array_equal(array[:, 0], initial.numpy())
    for k in range(1, 5):
        error = np.abs(array[:, k] - ks.advance(initial, 0.75 * k).numpy()).max()
        assert error < 1e-10, f"save {k}: max error {error:.3g} against advance({0.75 * k})"


def test_simulate_netcdf_ks(inputs, ks, tmp_path, capsys):
    out = tmp_path / "trajectory.nc"
    code, stderr = run_in_process(["simulate", "--system", "ks", "--set", "L=22", "--initial",
                                   str(inputs / "initial.npy"), "--duration", "4", "--save-every", "2",
                                   "--out", str(out)], capsys)
    assert code == 0, stderr
    with xr.open_dataset(out) as dataset:
        state = dataset["state"]
        assert state.dims == ("batch", "time", "x"), f"dims {state.dims}"
        np.testing.assert_array_equal(dataset["time"].values, [0.0, 2.0, 4.0])
        np.testing.assert_allclose(dataset["x"].values, np.arange(64) * 22.0 / 64, rtol=1e-15)
        for name, value in ks.params.to_dict().items():
            assert dataset.attrs[f"param_{name}"] == value, f"attribute param_{name} = {dataset.attrs.get(f'param_{name}')}"
        assert dataset.attrs["system"] == "ks"
        assert dataset.attrs["initial_file"] == str(inputs / "initial.npy")
        initial = np.load(inputs / "initial.npy")
        np.testing.assert_array_equal(state.values[:, 0], initial)
        expected = ks.advance(torch.from_numpy(initial), 4.0).numpy()
        error = np.abs(state.values[:, 2] - expected).max()
        assert error < 1e-10, f"max error {error:.3g} at t = 4"


def test_simulate_netcdf_qg(tmp_path, capsys):
    """QG in seconds: half-day saves of one continuous run, coordinates (time, layer, y, x) and every parameter."""
    qg = get_system("qg")
    out = tmp_path / "qg.nc"
    code, stderr = run_in_process(["simulate", "--system", "qg", "--seed", "0", "--batch", "1",
                                   "--duration", "86400", "--save-every", "43200", "--out", str(out)], capsys)
    assert code == 0, stderr
    with xr.open_dataset(out) as dataset:
        state = dataset["state"]
        assert state.dims == ("batch", "time", "layer", "y", "x"), f"dims {state.dims}"
        assert state.shape == (1, 3, 2, 64, 64), f"shape {state.shape}"
        np.testing.assert_array_equal(dataset["time"].values, [0.0, 43200.0, 86400.0])
        np.testing.assert_array_equal(dataset["layer"].values, [1, 2])
        np.testing.assert_allclose(dataset["x"].values, np.arange(64) * qg.params.L / 64, rtol=1e-15)
        np.testing.assert_allclose(dataset["y"].values, np.arange(64) * qg.params.W / 64, rtol=1e-15)
        for name, value in qg.params.to_dict().items():
            assert dataset.attrs[f"param_{name}"] == value, f"attribute param_{name} = {dataset.attrs.get(f'param_{name}')}"
        initial = qg.initial_state(1, seed=0)
        np.testing.assert_array_equal(state.values[:, 0], initial.numpy())
        for k in (1, 2):
            expected = qg.advance(initial, 43200.0 * k).numpy()
            error = np.abs(state.values[:, k] - expected).max() / np.abs(expected).max()
            assert error < 1e-12, f"save {k}: relative error {error:.3g} against advance({43200 * k})"


# -- bad input -----------------------------------------------------------------------------------------------------


def simulate_argv(folder: pathlib.Path, *extra: str, source: tuple[str, ...] = ("--seed", "0"),
                  duration: str = "4", save_every: str = "2", out: str = "out.npy", system: str = "ks") -> list[str]:
    """Return a KS simulate command line with the given changes (``out`` is relative to ``folder``)."""
    return ["simulate", "--system", system, *source, "--duration", duration, "--save-every", save_every,
            "--out", str(folder / out), *extra]


SIMULATE_CASES = {
    "unknown system": ({"system": "lorenz"}, "invalid choice: 'lorenz'"),
    "unknown parameter": ({"extra": ("--set", "nu=0.1")}, "unknown parameter 'nu'"),
    "parameter out of range": ({"extra": ("--set", "n=7")}, "n = 7 is invalid"),
    "non-numeric value": ({"extra": ("--set", "L=long")}, "invalid value 'long' for parameter 'L'"),
    "set without value": ({"extra": ("--set", "L")}, "expected NAME=VALUE"),
    "initial wrong shape": ({"source": ("--initial", "{inputs}/wrong_shape.npy")}, "shape (2, 63)"),
    "initial without batch": ({"source": ("--initial", "{inputs}/no_batch.npy")}, "expected (B, 64)"),
    "initial with NaN": ({"source": ("--initial", "{inputs}/with_nan.npy")}, "NaN"),
    "initial missing": ({"source": ("--initial", "{inputs}/missing.npy")}, "not found"),
    "initial not npy": ({"source": ("--initial", "{inputs}/text.npy")}, "not a .npy array"),
    "missing folder": ({"out": "no/such/folder/out.npy"}, "does not exist"),
    "output is a folder": ({"out": "{inputs}/taken.npy"}, "is a folder"),
    "wrong suffix": ({"out": "out.csv"}, "must end in .npy or .nc"),
    "duration not multiple of save": ({"duration": "5"}, "whole multiple of --save-every"),
    "duration not multiple of dt": ({"duration": "4.1"}, "whole multiple of dt = 0.25"),
    "save not multiple of dt": ({"save_every": "0.3", "duration": "3"}, "whole multiple of dt"),
    "negative duration": ({"duration": "-4"}, "expected a positive time"),
    "zero batch": ({"extra": ("--batch", "0")}, "invalid --batch 0"),
    "unknown device": ({"extra": ("--device", "tpu9")}, "invalid --device"),
    "non-numeric duration": ({"duration": "four"}, "invalid float value: 'four'"),
}


@pytest.mark.parametrize("case", list(SIMULATE_CASES))
def test_simulate_bad_input(case, inputs, tmp_path, capsys):
    changes, expected = SIMULATE_CASES[case]
    changes = {key: tuple(v.format(inputs=inputs) for v in value) if isinstance(value, tuple)
               else value.format(inputs=inputs) for key, value in changes.items()}
    extra = changes.pop("extra", ())
    code, stderr = run_in_process(simulate_argv(tmp_path, *extra, **changes), capsys)
    lines = error_lines(stderr)
    assert code == 2, f"exit code {code}, stderr {stderr!r}"
    assert len(lines) == 1, f"stderr has {len(lines)} lines: {stderr!r}"
    assert expected in lines[0], f"{expected!r} not in {lines[0]!r}"
    assert lines[0].startswith("thermalizer simulate: error: "), lines[0]
    assert not (tmp_path / "out.npy").exists(), "a failed command left its output file behind"


@pytest.mark.skipif(hasattr(os, "geteuid") and os.geteuid() == 0, reason="root may write into read-only folders")
def test_simulate_read_only_folder(tmp_path, capsys):
    folder = tmp_path / "read-only"
    folder.mkdir()
    folder.chmod(0o555)
    try:
        code, stderr = run_in_process(simulate_argv(folder), capsys)
    finally:
        folder.chmod(0o755)
    lines = error_lines(stderr)
    assert code == 2, f"exit code {code}, stderr {stderr!r}"
    assert len(lines) == 1, f"stderr has {len(lines)} lines: {stderr!r}"
    assert "not writable" in lines[0], lines[0]


@pytest.mark.parametrize("argv, expected", [
    (["simulate", "--system", "lorenz", "--seed", "0", "--duration", "4", "--save-every", "2", "--out", "x.npy"],
     "invalid choice: 'lorenz'"),
    (["simulate", "--system", "ks", "--seed", "0", "--set", "n=7", "--duration", "4", "--save-every", "2",
      "--out", "x.npy"], "n = 7 is invalid"),
], ids=["unknown system", "parameter out of range"])
def test_bad_input_subprocess(argv, expected, tmp_path):
    """In a real process nothing else (usage block, warnings, traceback) reaches standard error."""
    result = subprocess.run([str(BIN / "thermalizer"), *argv], capture_output=True, text=True, cwd=tmp_path,
                            env=SUBPROCESS_ENV, timeout=120)
    lines = error_lines(result.stderr)
    assert result.returncode == 2, f"exit code {result.returncode}, stderr {result.stderr!r}"
    assert len(lines) == 1, f"stderr has {len(lines)} lines: {result.stderr!r}"
    assert expected in lines[0], lines[0]


def test_missing_command_one_line(capsys):
    code, stderr = run_in_process([], capsys)
    assert code == 2
    assert len(error_lines(stderr)) == 1, stderr


OTHER_CASES = {
    "generate-data zero train": (["generate-data", "--system", "ks", "--out", "{tmp}/data", "--train", "0"],
                                 "invalid --train 0"),
    "generate-data out is a file": (["generate-data", "--system", "ks", "--out", "{tmp}/file.txt"],
                                    "exists and is not a folder"),
    "generate-data unknown parameter": (["generate-data", "--system", "qg", "--set", "nu=1", "--out", "{tmp}/data"],
                                        "unknown parameter 'nu'"),
    "calibrate window above steps": (["calibrate", "--system", "ks", "--steps", "10", "--window", "50",
                                      "--out", "{tmp}/ks.json"], "expected at least --window 50"),
    "calibrate wrong suffix": (["calibrate", "--system", "ks", "--out", "{tmp}/ks.txt"], "must end in .json"),
    "train missing dataset": (["train", "emulator", "--system", "ks", "--data", "{tmp}/none", "--out", "{tmp}/run"],
                              "not found"),
}


@pytest.mark.parametrize("case", list(OTHER_CASES))
def test_other_commands_bad_input(case, tmp_path, capsys):
    (tmp_path / "file.txt").write_text("")
    argv, expected = OTHER_CASES[case]
    code, stderr = run_in_process([arg.format(tmp=tmp_path) for arg in argv], capsys)
    lines = error_lines(stderr)
    assert code == 2, f"exit code {code}, stderr {stderr!r}"
    assert len(lines) == 1, f"stderr has {len(lines)} lines: {stderr!r}"
    assert expected in lines[0], f"{expected!r} not in {lines[0]!r}"


# -- calibrate -----------------------------------------------------------------------------------------------------


def test_calibrate_small_run(tmp_path, capsys):
    """A short calibration writes a reference whose band contains every truth measure it came from."""
    out = tmp_path / "ks.json"
    argv = ["calibrate", "--system", "ks", "--batch", "2", "--steps", "60", "--window", "10",
            "--spectrum-window", "20", "--lyapunov-steps", "40", "--out", str(out)]
    code, stderr = run_in_process(argv, capsys)
    assert code == 0, stderr
    reference = json.loads(out.read_text())
    band = reference["stable_band"]
    assert reference["command"] == "thermalizer " + " ".join(argv)
    calibration = reference["calibration"]
    assert (calibration["batch"], calibration["steps"], calibration["lyapunov_steps"]) == (2, 60, 40), calibration
    assert band["window"] == 10, f"window {band['window']}"
    assert band["spectrum_window"] == 20, f"spectrum window {band['spectrum_window']}"
    assert band["measure_min"] > 0, f"measure minimum {band['measure_min']}"
    assert band["measure_min"] < band["measure_max"], f"measure {band['measure_min']}..{band['measure_max']}"
    assert band["spectrum_factor"] >= 10.0, f"spectrum factor {band['spectrum_factor']}"
    assert len(band["reference_spectrum"]) == 33, f"{len(band['reference_spectrum'])} modes"
    assert any(band["energetic_modes"]), "no energetic modes"
    mean = reference["statistics"]["measure_mean"]
    assert band["measure_min"] <= mean <= band["measure_max"], f"mean {mean} outside its own extremes"
    # 40 steps are two Lyapunov times, so the estimate is rough: positive and of the right order.
    assert 0.005 < reference["lyapunov_exponent"] < 0.2, f"Lyapunov exponent {reference['lyapunov_exponent']}"
