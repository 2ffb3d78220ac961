"""Animated GIFs: frame count, frame size, colours of 2D panels, 1D lines, bytes round trip and argument errors."""
import io

import numpy as np
import pytest
from PIL import Image, ImageSequence

from thermalizer_core.animation import gif_bytes, write_gif


def open_frames(data: bytes) -> list[np.ndarray]:
    """Decode every frame of a GIF as an RGB array ``(H, W, 3)``."""
    with Image.open(io.BytesIO(data)) as gif:
        assert gif.format == "GIF", f"format {gif.format}"
        return [np.asarray(frame.convert("RGB")) for frame in ImageSequence.Iterator(gif)]


def waves_2d(steps: int, size: int = 24, phase: float = 0.0) -> np.ndarray:
    """Travelling waves ``(steps, size, size)`` with values in [-1, 1]."""
    x = np.linspace(0, 2 * np.pi, size, endpoint=False)
    return np.stack([np.sin(x[None, :] + 0.3 * k + phase) * np.cos(x[:, None]) for k in range(steps)])


def test_gif_2d_frame_count_and_size(tmp_path):
    steps = np.array([0, 10, 20, 30, 40])
    frames = {"truth": waves_2d(5), "emulator": waves_2d(5, phase=1.0), "thermalized": waves_2d(5, phase=2.0)}
    path = write_gif(frames, steps, tmp_path / "runs.gif", fps=5, title="kolmogorov", extent=(0, 6.28, 0, 6.28))
    assert path == tmp_path / "runs.gif"
    with Image.open(path) as gif:
        assert gif.n_frames == 5, f"{gif.n_frames} frames"
        first_size = gif.size
        for index in range(gif.n_frames):
            gif.seek(index)
            assert gif.size == first_size, f"frame {index} has size {gif.size}, frame 0 {first_size}"
            assert gif.info["duration"] == 200, f"frame {index} lasts {gif.info['duration']} ms"


def test_gif_panel_colours_follow_values():
    """A constant positive truth panel is red and a constant negative one blue.

    The ends of RdBu_r are (103, 0, 31) and (5, 48, 97) in RGB.
    """
    steps = np.array([0, 1])
    frames = {"truth": np.ones((2, 16, 16)), "emulator": -np.ones((2, 16, 16))}
    frame = open_frames(gif_bytes(frames, steps))[0].astype(int)
    height, width, _ = frame.shape
    # Panel centres of the 2-panel layout (axes between 2% and 88% of the width, 4% and 82% of the height).
    row = int(height * 0.57)
    red = frame[row, int(width * 0.23)]
    blue = frame[row, int(width * 0.67)]
    assert red[0] > red[2] + 50, f"truth panel pixel {red} is not red"
    assert blue[2] > blue[0] + 50, f"emulator panel pixel {blue} is not blue"


def test_gif_of_1d_runs(tmp_path):
    x = np.linspace(0, 22, 64, endpoint=False)
    truth = np.stack([np.sin(2 * np.pi * x / 22 + 0.2 * k) for k in range(4)])
    frames = {"truth": truth, "emulator": 1.5 * truth}
    data = gif_bytes(frames, np.arange(4), extent=(0.0, 22.0))
    decoded = open_frames(data)
    assert len(decoded) == 4, f"{len(decoded)} frames"
    assert len({frame.shape for frame in decoded}) == 1, f"frame shapes {[frame.shape for frame in decoded]}"
    black = np.all(decoded[0] < 60, axis=2).sum()
    assert black > 100, f"only {black} near-black pixels: the truth line is missing"


def test_different_inputs_give_different_pixels():
    steps = np.arange(3)
    first = open_frames(gif_bytes({"truth": waves_2d(3)}, steps))
    second = open_frames(gif_bytes({"truth": waves_2d(3, phase=np.pi / 2)}, steps))
    assert first[0].shape == second[0].shape
    changed = np.any(first[0] != second[0], axis=2).mean()
    assert changed > 0.05, f"only {changed:.1%} of the pixels changed"
    lines_a = open_frames(gif_bytes({"truth": waves_2d(3)[:, 0]}, steps))
    lines_b = open_frames(gif_bytes({"truth": -waves_2d(3)[:, 0]}, steps))
    assert not np.array_equal(lines_a[0], lines_b[0])


def test_write_gif_matches_gif_bytes(tmp_path):
    frames = {"truth": waves_2d(3), "emulator": waves_2d(3, phase=0.5)}
    steps = np.array([5, 6, 7])
    path = write_gif(frames, steps, tmp_path / "a.gif", title="qg q1")
    assert path.read_bytes() == gif_bytes(frames, steps, title="qg q1")


def test_gif_with_non_finite_values():
    """A blown-up run (NaN and inf) still animates; the colour limits come from the truth."""
    blown_up = waves_2d(3)
    blown_up[1, :4] = np.nan
    blown_up[2, :4] = np.inf
    data = gif_bytes({"truth": waves_2d(3), "emulator": blown_up}, np.arange(3))
    assert len(open_frames(data)) == 3


def test_gif_invalid_arguments(tmp_path):
    good = {"truth": waves_2d(3)}
    with pytest.raises(ValueError, match="K >= 1"):
        gif_bytes({"truth": np.zeros((0, 8, 8))}, np.arange(0))
    with pytest.raises(ValueError, match="different frame shapes"):
        gif_bytes({"truth": waves_2d(3), "emulator": waves_2d(3, size=16)}, np.arange(3))
    with pytest.raises(ValueError, match="one step per frame"):
        gif_bytes(good, np.arange(4))
    with pytest.raises(ValueError, match="select one channel"):
        gif_bytes({"truth": np.zeros((3, 2, 8, 8))}, np.arange(3))
    with pytest.raises(ValueError, match="fps = 0"):
        write_gif(good, np.arange(3), tmp_path / "x.gif", fps=0)
    with pytest.raises(ValueError, match="is empty"):
        gif_bytes({}, np.arange(3))
    with pytest.raises(ValueError, match=r"\(left, right, bottom, top\)"):
        gif_bytes(good, np.arange(3), extent=(0, 1))
    with pytest.raises(ValueError, match=r"\(x_start, x_end\)"):
        gif_bytes({"truth": waves_2d(3)[:, 0]}, np.arange(3), extent=(0, 1, 0, 1))
