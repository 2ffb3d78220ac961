"""``thermalizer rollout``: the files a headless run writes, and one-line errors with exit code 2 for bad input."""
import json
import statistics
import subprocess
import sys

import pytest
import xarray as xr
from PIL import Image

from thermalizer_core.cli import main
from thermalizer_core.models.checkpoint import save_checkpoint, sha256_of_file
from thermalizer_core.models.emulator import Emulator
from thermalizer_core.models.thermalizer import Thermalizer
from thermalizer_core.systems import get_system

SMALL_ARCHITECTURE = {"base_channels": 4, "channel_mults": (1,), "blocks_per_level": 1}
STEPS, BATCH, SAVE_EVERY = 12, 2, 3
RUN_KEYS = {"stable_horizon", "median_stable_horizon", "exit_reasons", "steps_per_second"}
PLOTS = ("measure.png", "spectra.png", "ticker_tape.png")


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    """A models folder with an untrained ``ks`` pair."""
    folder = tmp_path_factory.mktemp("models")
    description = get_system("ks").describe()
    note = {"note": "untrained, for the rollout command tests"}
    save_checkpoint(Emulator(1, 1, **SMALL_ARCHITECTURE), folder / "ks-emulator", description, note, {})
    save_checkpoint(Thermalizer(1, 1, classifier_hidden=16, **SMALL_ARCHITECTURE), folder / "ks-thermalizer",
                    description, note, {})
    return folder


def rollout_arguments(models, out, **changes):
    options = {"--system": "ks", "--checkpoint": str(models), "--steps": str(STEPS), "--batch": str(BATCH),
               "--save-every": str(SAVE_EVERY), "--device": "cpu", "--out": str(out)}
    options.update(changes)
    arguments = ["rollout"]
    for name, value in options.items():
        arguments += [name, value]
    return arguments


@pytest.fixture(scope="module")
def finished_run(models, tmp_path_factory):
    """Output folder and exit code of one short rollout of the untrained pair."""
    out = tmp_path_factory.mktemp("rollout") / "out"
    code = main(rollout_arguments(models, out))
    return out, code


def test_rollout_exit_code(finished_run):
    _, code = finished_run
    assert code == 0


@pytest.mark.parametrize("name", ["summary.json", *PLOTS, "trajectory.nc"])
def test_rollout_writes_file(finished_run, name):
    out, _ = finished_run
    assert (out / name).is_file(), f"files written: {sorted(p.name for p in out.iterdir())}"


@pytest.mark.parametrize("name", PLOTS)
def test_rollout_plots_are_images(finished_run, name):
    out, _ = finished_run
    with Image.open(out / name) as image:
        assert image.format == "PNG"
        assert min(image.size) > 100, f"{name} is {image.size}"


def test_rollout_summary_top_level(finished_run):
    out, _ = finished_run
    summary = json.loads((out / "summary.json").read_text())

    assert summary["system"] == "ks"
    assert summary["steps"] == STEPS
    assert summary["batch"] == BATCH
    assert 0.0 <= summary["thermalized_fraction"] <= 1.0, f"thermalized_fraction {summary['thermalized_fraction']}"
    assert summary["mean_denoising_steps"] >= 0.0, f"mean_denoising_steps {summary['mean_denoising_steps']}"


def test_rollout_summary_settings(finished_run, models):
    out, _ = finished_run
    settings = json.loads((out / "summary.json").read_text())["settings"]

    assert settings["s_init"] == 10
    assert settings["s_stop"] == 4
    for role in ("emulator", "thermalizer"):
        folder = models / f"ks-{role}"
        entry = settings["checkpoints"][role]
        assert entry["path"] == str(folder)
        assert entry["sha256"]["model.safetensors"] == sha256_of_file(folder / "model.safetensors")
        assert entry["sha256"]["config.json"] == sha256_of_file(folder / "config.json")


@pytest.mark.parametrize("run", ["truth", "emulator", "thermalized"])
def test_rollout_summary_runs(finished_run, run):
    out, _ = finished_run
    entry = json.loads((out / "summary.json").read_text())["runs"][run]
    horizon = entry["stable_horizon"]

    assert RUN_KEYS <= set(entry), f"keys of runs.{run}: {sorted(entry)}"
    assert len(horizon) == BATCH
    assert all(isinstance(step, int) and 1 <= step <= STEPS for step in horizon), f"stable_horizon {horizon}"
    assert entry["median_stable_horizon"] == statistics.median(horizon)
    assert len(entry["exit_reasons"]) == BATCH
    assert entry["steps_per_second"] > 0, f"steps_per_second {entry['steps_per_second']}"


def test_rollout_trajectory_opens(finished_run):
    out, _ = finished_run
    with xr.open_dataset(out / "trajectory.nc") as dataset:
        field = dataset["thermalized_field"]
        steps = dataset["step"].values.tolist()
        variables = set(dataset.data_vars)

    assert field.sizes["batch"] == BATCH
    assert field.sizes["x"] == 64
    assert steps == list(range(SAVE_EVERY, STEPS + 1, SAVE_EVERY))
    assert {"truth_field", "emulator_field", "thermalized_level", "thermalized_denoising_steps"} <= variables


def assert_rejected(capsys, code, out, message):
    lines = capsys.readouterr().err.strip().splitlines()
    assert code == 2
    assert len(lines) == 1, f"standard error: {lines}"
    assert lines[0].startswith("thermalizer rollout: error: "), lines[0]
    assert message in lines[0], lines[0]
    assert not out.exists(), f"{out} was created for a rejected command"


@pytest.mark.parametrize("option, value, message", [
    ("--steps", "0", "invalid --steps 0"),
    ("--batch", "0", "invalid --batch 0"),
    ("--s-stop", "1000", "s_stop = 1000 is out of range"),
    ("--s-stop", "-1", "s_stop = -1 is out of range"),
    ("--save-every", "0", "invalid --save-every 0"),
    ("--history", "0", "invalid --history 0"),
])
def test_rollout_rejects_bad_value(models, tmp_path, capsys, option, value, message):
    out = tmp_path / "out"

    code = main(rollout_arguments(models, out, **{option: value}))

    assert_rejected(capsys, code, out, message)


def test_rollout_rejects_missing_checkpoint(models, tmp_path, capsys):
    out = tmp_path / "out"

    code = main(rollout_arguments(models, out, **{"--checkpoint": str(tmp_path / "no-such-folder")}))

    assert_rejected(capsys, code, out, "checkpoint folder not found")


def test_rollout_rejects_unwritable_out(models, tmp_path, capsys):
    # Root may write anywhere, so a folder below a regular file is the unwritable case that holds for every user.
    blocker = tmp_path / "a-file"
    blocker.write_text("not a folder")
    out = blocker / "out"

    code = main(rollout_arguments(models, out))

    assert_rejected(capsys, code, out, "cannot create output folder")


def test_rollout_command_exit_code(models, tmp_path):
    # The command in a fresh process, to check the exit status and standard error that a shell gets.
    command = [sys.executable, "-m", "thermalizer_core.cli", *rollout_arguments(models, tmp_path / "out", **{"--steps": "0"})]

    result = subprocess.run(command, capture_output=True, text=True, timeout=120)

    assert result.returncode == 2, result.stderr
    assert result.stderr.strip().splitlines() == ["thermalizer rollout: error: invalid --steps 0: expected at least 1"]
