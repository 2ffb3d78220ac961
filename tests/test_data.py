"""Training data: ``generate-data`` shapes, metadata, memory mapping, disjoint splits and normalization."""
from __future__ import annotations

import json
import pathlib

import numpy as np
import pytest
import torch

from thermalizer_core.cli import main
from thermalizer_core.data import TrajectoryData, channel_statistics, sample_windows
from thermalizer_core.systems import get_system

COUNTS = {"train": 3, "valid": 2, "test": 2}
STEPS = 12
SEED = 5
BATCH_SIZE = 2


@pytest.fixture(scope="module")
def dataset(tmp_path_factory) -> pathlib.Path:
    """A small KS dataset written by the command line (chunks of 2 trajectories)."""
    folder = tmp_path_factory.mktemp("data") / "ks"
    code = main(["generate-data", "--system", "ks", "--out", str(folder), "--train", str(COUNTS["train"]),
                 "--valid", str(COUNTS["valid"]), "--test", str(COUNTS["test"]), "--steps", str(STEPS),
                 "--seed", str(SEED), "--batch-size", str(BATCH_SIZE), "--device", "cpu"])
    assert code == 0
    return folder


@pytest.fixture(scope="module")
def meta(dataset) -> dict:
    return json.loads((dataset / "meta.json").read_text())


@pytest.mark.parametrize("split", list(COUNTS))
def test_split_shape_and_mmap(dataset, split):
    array = np.load(dataset / f"{split}.npy", mmap_mode="r")
    assert isinstance(array, np.memmap), f"{split} opened as {type(array).__name__}"
    assert array.shape == (COUNTS[split], STEPS + 1, 1, 64), f"{split} shape {array.shape}"
    assert array.dtype == np.float32, f"{split} dtype {array.dtype}"
    assert np.isfinite(array).all()


def test_meta_contents(meta):
    ks = get_system("ks")
    assert meta["system"] == "ks"
    assert meta["params"] == ks.params.to_dict(), meta["params"]
    assert meta["emulator_interval"] == 1.0
    assert meta["field_shape"] == [1, 64]
    assert meta["steps"] == STEPS
    assert meta["trajectories"] == COUNTS, meta["trajectories"]
    assert meta["seeds"] == {"train": SEED, "valid": SEED + 10000, "test": SEED + 20000}, meta["seeds"]
    assert meta["batch_size"] == BATCH_SIZE
    assert set(meta["normalization"]) == {"mean", "std"}


def test_normalization_matches_numpy(dataset, meta):
    train = np.load(dataset / "train.npy").astype(np.float64)
    mean = train.mean(axis=(0, 1, 3))
    std = train.std(axis=(0, 1, 3))
    np.testing.assert_allclose(meta["normalization"]["mean"], mean, rtol=0, atol=1e-9 * std.max())
    np.testing.assert_allclose(meta["normalization"]["std"], std, rtol=1e-9)


def test_channel_statistics_chunked():
    """Per-channel statistics read in chunks of 3 trajectories agree with numpy on a 2-channel 2D array."""
    rng = np.random.default_rng(0)
    array = rng.normal(loc=[[[[5.0]], [[-2.0]]]], scale=[[[[0.5]], [[3.0]]]], size=(7, 4, 2, 6, 6))
    mean, std = channel_statistics(array, chunk=3)
    np.testing.assert_allclose(mean, array.mean(axis=(0, 1, 3, 4)), rtol=1e-12)
    np.testing.assert_allclose(std, array.std(axis=(0, 1, 3, 4)), rtol=1e-10)


def test_splits_share_no_initial_state(dataset):
    """Every first frame of every split differs from every other by much more than float32 round-off."""
    firsts = np.concatenate([np.load(dataset / f"{split}.npy")[:, 0, 0] for split in COUNTS]).astype(np.float64)
    distances = np.linalg.norm(firsts[:, None] - firsts[None], axis=-1)
    np.fill_diagonal(distances, np.inf)
    typical = np.linalg.norm(firsts, axis=-1).mean()
    assert distances.min() > 0.1 * typical, f"closest pair of initial states {distances.min():.3g}, norm {typical:.3g}"


def test_train_matches_solver(dataset):
    """Chunk 0 of train starts from initial_state(2, seed) and step k is k emulator intervals later."""
    ks = get_system("ks")
    train = np.load(dataset / "train.npy", mmap_mode="r")
    initial = ks.initial_state(BATCH_SIZE, seed=SEED)
    np.testing.assert_array_equal(train[:BATCH_SIZE, 0, 0], initial.float().numpy())
    expected = ks.advance(initial, STEPS * ks.emulator_interval).float().numpy()
    error = np.abs(train[:BATCH_SIZE, STEPS, 0] - expected).max()
    assert error < 1e-5, f"max error {error:.3g} after {STEPS} steps"
    second_chunk = ks.initial_state(1, seed=SEED + 1).float().numpy()
    np.testing.assert_array_equal(train[BATCH_SIZE, 0], second_chunk)


def test_trajectory_data_opens_read_only(dataset, meta):
    data = TrajectoryData(dataset)
    train = data.split("train")
    assert not train.flags.writeable, "the training split is writable"
    assert data.mean == meta["normalization"]["mean"]
    assert data.std == meta["normalization"]["std"]
    assert data.system.params == get_system("ks").params


def test_trajectory_data_missing(tmp_path, dataset):
    with pytest.raises(FileNotFoundError, match="generate-data"):
        TrajectoryData(tmp_path)
    with pytest.raises(FileNotFoundError, match="extra.npy"):
        TrajectoryData(dataset).split("extra")


def test_sample_windows_consecutive(dataset):
    train = np.load(dataset / "train.npy", mmap_mode="r")
    windows = sample_windows(train, 16, 3, np.random.default_rng(1))
    assert windows.shape == (16, 3, 1, 64), f"shape {tuple(windows.shape)}"
    flat = train.reshape(-1, 1, 64)
    for window in windows.numpy():
        match = np.nonzero((flat == window[0]).all(axis=(1, 2)))[0]
        assert len(match) == 1, f"{len(match)} stored frames match a window's first frame"
        np.testing.assert_array_equal(window[1:], flat[match[0] + 1:match[0] + 3])
    with pytest.raises(ValueError, match="longer than"):
        sample_windows(train, 1, STEPS + 2, np.random.default_rng(1))


def test_sample_windows_seeded(dataset):
    train = np.load(dataset / "train.npy", mmap_mode="r")
    first = sample_windows(train, 8, 2, np.random.default_rng([0, 1, 7]))
    second = sample_windows(train, 8, 2, np.random.default_rng([0, 1, 7]))
    assert torch.equal(first, second)
