"""Training: overfitting, bit-exact resume, DDP replicas under torchrun, config checks and the run folder."""
from __future__ import annotations

import csv
import hashlib
import json
import os
import pathlib
import subprocess
import sys

import numpy as np
import pytest
import torch
from safetensors.torch import load_file

from thermalizer_core.cli import main
from thermalizer_core.data import TrajectoryData, generate_dataset
from thermalizer_core.models.checkpoint import load_checkpoint
from thermalizer_core.models.normalization import ChannelNormalization
from thermalizer_core.systems import get_system
from thermalizer_core.training.config import EmulatorTrainingConfig, load_config
from thermalizer_core.training.distributed import ProcessInfo
from thermalizer_core.training.emulator import build_emulator, unrolled_loss
from thermalizer_core.training.loop import MetricsLog, train
from thermalizer_core.training.thermalizer import build_thermalizer

BIN = pathlib.Path(sys.executable).parent
SUBPROCESS_ENV = {**os.environ, "OMP_NUM_THREADS": "1"}
TINY = {"base_channels": 8, "channel_mults": [1, 2], "blocks_per_level": 1}
TINY_THERMALIZER = {**TINY, "classifier_hidden": 16}
CPU = ProcessInfo(rank=0, world_size=1, device=torch.device("cpu"))


@pytest.fixture(scope="module")
def dataset(tmp_path_factory) -> pathlib.Path:
    """A small KS dataset: 4 training trajectories of 16 steps."""
    folder = tmp_path_factory.mktemp("data") / "ks"
    generate_dataset(get_system("ks"), folder, train=4, valid=1, test=2, steps=16, seed=0, batch_size=4,
                     progress=False)
    return folder


def write_config(path: pathlib.Path, **settings) -> pathlib.Path:
    path.write_text(json.dumps(settings))
    return path


def run_train(kind: str, data: pathlib.Path, out: pathlib.Path, config: pathlib.Path, *extra: str) -> int:
    return main(["train", kind, "--system", "ks", "--data", str(data), "--out", str(out), "--config", str(config),
                 "--device", "cpu", *extra])


def assert_same_tensors(first: dict[str, torch.Tensor], second: dict[str, torch.Tensor], label: str) -> None:
    assert first.keys() == second.keys(), f"{label}: tensor names differ"
    differing = {name: float((first[name].double() - second[name].double()).abs().max())
                 for name in first if not torch.equal(first[name], second[name])}
    assert not differing, f"{label}: {len(differing)} tensors differ, e.g. {list(differing.items())[:3]}"


def read_metrics(path: pathlib.Path) -> list[dict[str, str]]:
    with path.open(newline="") as handle:
        return list(csv.DictReader(handle))


def sha256_of(path: pathlib.Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


# -- (a) the loop can fit -------------------------------------------------------------------------------------------


def test_overfit_tiny_batch(dataset, tmp_path):
    """150 AdamW steps of the real loop on 4 fixed one-step pairs cut the emulator loss by over 100x."""
    data = TrajectoryData(dataset)
    config = EmulatorTrainingConfig(steps=150, batch_size=4, learning_rate=3e-3, unroll_steps=1, architecture=TINY)
    model = build_emulator(data, config)
    normalization = ChannelNormalization(1, data.mean, data.std)
    train_array = data.split("train")
    pairs = torch.from_numpy(np.stack([train_array[i, 3:5] for i in range(4)]))
    windows = normalization.normalize(pairs.flatten(0, 1)).reshape(pairs.shape)
    generator = torch.Generator().manual_seed(0)

    def loss_fn(wrapped, rng, step):
        return unrolled_loss(wrapped, windows, config, generator), {}

    with torch.no_grad():
        before = float(unrolled_loss(model, windows, config, generator))
    model.train()
    trained, steps, _ = train(model, loss_fn, CPU, tmp_path / "run", steps=config.steps,
                              learning_rate=config.learning_rate, weight_decay=0.0, grad_clip=1.0,
                              checkpoint_every=1000, log_every=50, seed=0)
    with torch.no_grad():
        after = float(unrolled_loss(trained, windows, config, generator))
    assert steps == 150
    assert before / after > 100, f"loss {before:.3g} -> {after:.3g}, factor {before / after:.1f}"


# -- (b) resume -----------------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def emulator_runs(dataset, tmp_path_factory) -> dict[str, pathlib.Path]:
    """Emulator runs of 20 steps: one straight, one in two parts of 10 with --resume (the manifest sits in runs/)."""
    runs = tmp_path_factory.mktemp("runs")
    settings = {"batch_size": 4, "unroll_steps": 2, "input_noise": 0.01, "checkpoint_every": 5, "log_every": 5,
                "architecture": TINY}
    full = write_config(runs.parent / "full.json", steps=20, **settings)
    half = write_config(runs.parent / "half.json", steps=10, **settings)
    # Each run starts from another global torch seed, as separate processes do.
    torch.manual_seed(1)
    assert run_train("emulator", dataset, runs / "straight", full) == 0
    torch.manual_seed(2)
    assert run_train("emulator", dataset, runs / "split", half) == 0
    torch.manual_seed(3)
    assert run_train("emulator", dataset, runs / "split", full, "--resume") == 0
    return {"straight": runs / "straight", "split": runs / "split", "config": full}


def test_resume_emulator_bit_exact(emulator_runs):
    straight, split = emulator_runs["straight"], emulator_runs["split"]
    assert_same_tensors(load_file(straight / "model.safetensors"), load_file(split / "model.safetensors"), "weights")
    assert_same_tensors(load_file(straight / "resume" / "optimizer.safetensors"),
                        load_file(split / "resume" / "optimizer.safetensors"), "optimizer state")


def test_resume_metrics_continue(emulator_runs):
    """The resumed run's metrics.csv lists steps 5..20 once each, with the straight run's losses."""
    straight = read_metrics(emulator_runs["straight"] / "metrics.csv")
    split = read_metrics(emulator_runs["split"] / "metrics.csv")
    assert [row["step"] for row in split] == ["5", "10", "15", "20"], [row["step"] for row in split]
    assert [row["loss"] for row in split] == [row["loss"] for row in straight]


def test_resume_thermalizer_bit_exact(dataset, tmp_path):
    """Thermalizer with EMA: 6 steps straight equal 3 + 3 resumed, for the weights and the EMA."""
    settings = {"batch_size": 4, "checkpoint_every": 3, "log_every": 3, "ema_decay": 0.9,
                "architecture": TINY_THERMALIZER}
    full = write_config(tmp_path / "full.json", steps=6, **settings)
    half = write_config(tmp_path / "half.json", steps=3, **settings)
    torch.manual_seed(1)
    assert run_train("thermalizer", dataset, tmp_path / "straight", full) == 0
    torch.manual_seed(2)
    assert run_train("thermalizer", dataset, tmp_path / "split", half) == 0
    torch.manual_seed(3)
    assert run_train("thermalizer", dataset, tmp_path / "split", full, "--resume") == 0
    for name in ("model.safetensors", "resume/model.safetensors", "resume/ema.safetensors"):
        assert_same_tensors(load_file(tmp_path / "straight" / name), load_file(tmp_path / "split" / name), name)


def test_initial_weights_seeded(dataset):
    """The untrained model depends on the config seed only, not on the global generator."""
    data = TrajectoryData(dataset)
    config = EmulatorTrainingConfig(architecture=TINY, seed=3)
    torch.manual_seed(1)
    first = build_emulator(data, config).state_dict()
    torch.manual_seed(2)
    second = build_emulator(data, config).state_dict()
    assert_same_tensors(first, second, "emulator initial weights")
    other = build_emulator(data, EmulatorTrainingConfig(architecture=TINY, seed=4)).state_dict()
    differing = [name for name in first if not torch.equal(first[name], other[name])]
    assert differing, "seeds 3 and 4 gave the same initial weights"


def test_metrics_log_restart(tmp_path):
    """A fresh run starts a new metrics.csv; a run resumed at step 10 keeps only rows up to step 10."""
    path = tmp_path / "metrics.csv"
    log = MetricsLog(path)
    for step in (5, 10, 15):
        log.append({"step": step, "loss": 1.0 / step})
    MetricsLog(path, start_step=10).append({"step": 15, "loss": 0.5})
    assert [row["step"] for row in read_metrics(path)] == ["5", "10", "15"]
    assert read_metrics(path)[-1]["loss"] == "0.5"
    MetricsLog(path, start_step=0)
    assert not path.exists(), "a fresh run kept the previous run's metrics"


# -- (e) the run folder ---------------------------------------------------------------------------------------------


def test_run_folder_files(emulator_runs):
    folder = emulator_runs["straight"]
    names = sorted(path.name for path in folder.iterdir() if path.is_file())
    assert names == ["config.json", "evaluation.json", "metrics.csv", "model.safetensors"], names
    config = json.loads((folder / "config.json").read_text())
    assert config["kind"] == "emulator", config["kind"]
    assert config["system"] == "ks", config["system"]
    assert config["training"]["steps"] == 20
    assert config["training"]["config"]["architecture"] == TINY
    assert config["data"]["seeds"] == {"train": 0, "valid": 10000, "test": 20000}


def test_run_folder_metrics(emulator_runs):
    with (emulator_runs["straight"] / "metrics.csv").open() as handle:
        header = handle.readline().strip().split(",")
    assert header == ["step", "wall_time_s", "loss", "steps_per_second"], header
    rows = read_metrics(emulator_runs["straight"] / "metrics.csv")
    assert [int(row["step"]) for row in rows] == [5, 10, 15, 20]
    losses = [float(row["loss"]) for row in rows]
    assert all(np.isfinite(losses)), losses
    assert min(losses) > 0, losses


def test_run_folder_evaluation(emulator_runs):
    evaluation = json.loads((emulator_runs["straight"] / "evaluation.json").read_text())
    assert evaluation["evaluation_samples"] == 256
    assert 0 < evaluation["relative_error"] < 1, evaluation
    assert 0 < evaluation["residual_error"] < 10, evaluation


def test_manifest_hashes_match(emulator_runs):
    folder = emulator_runs["straight"]
    manifest = json.loads((folder.parent / "manifest.json").read_text())
    entry = manifest["checkpoints"]["straight"]
    assert sorted(entry["files"]) == ["config.json", "evaluation.json", "metrics.csv", "model.safetensors"]
    for name, digest in entry["files"].items():
        assert sha256_of(folder / name) == digest, f"{name}: SHA-256 differs from the manifest"
    assert entry["command"].startswith(f"thermalizer train emulator --system ks --data "), entry["command"]
    assert entry["evaluation"] == json.loads((folder / "evaluation.json").read_text())
    assert entry["kind"] == "emulator", entry["kind"]
    assert entry["wall_time_s"] > 0, entry["wall_time_s"]
    model, _ = load_checkpoint(folder, expected_kind="emulator", expected_system="ks")
    assert_same_tensors(model.state_dict(), load_file(folder / "model.safetensors"), "loaded checkpoint")


def test_resumed_manifest_updated(emulator_runs):
    """The resumed run replaced its manifest entry: hashes match the final files and the command has --resume."""
    folder = emulator_runs["split"]
    entry = json.loads((folder.parent / "manifest.json").read_text())["checkpoints"]["split"]
    for name, digest in entry["files"].items():
        assert sha256_of(folder / name) == digest, f"{name}: SHA-256 differs from the manifest"
    assert entry["command"].endswith("--resume"), entry["command"]


# -- (d) bad configs ------------------------------------------------------------------------------------------------

BAD_CONFIGS = {
    "unknown key": ({"stepz": 3}, "unknown keys ['stepz']"),
    "wrong type": ({"steps": "ten"}, "steps = 'ten'"),
    "float steps": ({"steps": 2.5}, "expected an integer"),
    "zero batch": ({"batch_size": 0}, "batch_size = 0"),
    "negative noise": ({"input_noise": -0.1}, "input_noise = -0.1"),
    "unknown architecture key": ({"architecture": {"width": 8}}, "unknown architecture keys ['width']"),
    "not an object": ([1, 2], "must contain a JSON object"),
}


@pytest.mark.parametrize("case", list(BAD_CONFIGS))
def test_bad_config_rejected(case, dataset, tmp_path, capsys):
    content, expected = BAD_CONFIGS[case]
    config = write_config(tmp_path / "config.json", **content) if isinstance(content, dict) else tmp_path / "config.json"
    if not isinstance(content, dict):
        config.write_text(json.dumps(content))
    code = run_train("emulator", dataset, tmp_path / "run", config)
    lines = [line for line in capsys.readouterr().err.splitlines() if line.strip()]
    assert code == 2, f"exit code {code}"
    assert len(lines) == 1, lines
    assert expected in lines[0], f"{expected!r} not in {lines[0]!r}"
    assert not (tmp_path / "run" / "model.safetensors").exists()


def test_bad_thermalizer_config(dataset, tmp_path, capsys):
    config = write_config(tmp_path / "config.json", ema_decay=1.0)
    code = run_train("thermalizer", dataset, tmp_path / "run", config)
    stderr = capsys.readouterr().err
    assert code == 2, f"exit code {code}"
    assert "ema_decay = 1.0" in stderr, stderr


def test_default_configs_valid():
    for system in ("ks", "kolmogorov", "qg"):
        for kind in ("emulator", "thermalizer"):
            assert load_config(kind, system, None).steps > 0


def test_module_entry_error_one_line(tmp_path):
    """``python -m thermalizer_core.cli`` (the torchrun entry) reports train errors as one line, exit code 2."""
    result = subprocess.run([sys.executable, "-m", "thermalizer_core.cli", "train", "emulator", "--system", "ks",
                             "--data", str(tmp_path / "none"), "--out", str(tmp_path / "run")],
                            capture_output=True, text=True, env=SUBPROCESS_ENV, timeout=120)
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert result.returncode == 2, result.stderr
    assert len(lines) == 1, result.stderr
    assert "not found" in lines[0], lines[0]


# -- (c) torchrun ---------------------------------------------------------------------------------------------------


def torchrun_train(kind: str, dataset: pathlib.Path, out: pathlib.Path, config: pathlib.Path) -> None:
    command = [str(BIN / "torchrun"), "--nproc_per_node=2", "--standalone", "-m", "thermalizer_core.cli", "train", kind,
               "--system", "ks", "--data", str(dataset), "--out", str(out), "--config", str(config), "--device", "cpu",
               "--write-replica-weights"]
    result = subprocess.run(command, capture_output=True, text=True, env=SUBPROCESS_ENV, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]


@pytest.mark.parametrize("kind", ["emulator", "thermalizer"])
def test_torchrun_replicas_agree(kind, dataset, tmp_path):
    """Two gloo processes draw different batches but end with identical weights that moved from the start."""
    architecture = TINY if kind == "emulator" else TINY_THERMALIZER
    config_path = write_config(tmp_path / "config.json", steps=3, batch_size=4, checkpoint_every=2, log_every=1,
                               architecture=architecture)
    out = tmp_path / "runs" / kind
    torchrun_train(kind, dataset, out, config_path)

    replica_0 = load_file(out / "replica-0.safetensors")
    replica_1 = load_file(out / "replica-1.safetensors")
    assert_same_tensors(replica_0, replica_1, "replica 0 against replica 1")

    data = TrajectoryData(dataset)
    config = load_config(kind, "ks", config_path)
    initial = (build_emulator if kind == "emulator" else build_thermalizer)(data, config).state_dict()
    moved = [name for name in initial if initial[name].is_floating_point() and not torch.equal(initial[name], replica_0[name])]
    assert len(moved) > len(initial) // 2, f"only {len(moved)} of {len(initial)} tensors changed in training"

    entry = json.loads((out.parent / "manifest.json").read_text())["checkpoints"][kind]
    for name in ("replica-0.safetensors", "replica-1.safetensors", "model.safetensors"):
        assert entry["files"][name] == sha256_of(out / name), f"{name}: SHA-256 differs from the manifest"
    assert entry["command"].startswith("torchrun --nproc_per_node=2 -m thermalizer_core.cli train"), entry["command"]
    assert "2 process(es)" in entry["hardware"], entry["hardware"]
    rows = read_metrics(out / "metrics.csv")
    assert [row["step"] for row in rows] == ["1", "2", "3"], "metrics rows are written once, by rank 0"
