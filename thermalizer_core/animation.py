"""Animated GIFs of runs side by side: one image panel per run for 2D fields, one line per run for 1D fields.

Frames are drawn with matplotlib's Agg canvas on a :class:`matplotlib.figure.Figure`
that is never registered with pyplot, so nothing needs closing and the
dashboard can call this from worker threads. Pillow encodes the GIF.
"""
from __future__ import annotations

import io
import logging
import pathlib
from typing import BinaryIO, Mapping, Sequence

import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from PIL import Image

from .plots import RUN_COLOURS

logger = logging.getLogger(__name__)

#: GIF frame delays are whole hundredths of a second, and browsers slow delays under
#: 0.02 s down to about 0.1 s, so 50 frames per second is the fastest that plays as set.
MAX_FPS = 50
#: Diverging colormap of 2D panels, centred on zero by symmetric colour limits.
FIELD_COLORMAP = "RdBu_r"
#: Run whose values set the colour or y limits when present; otherwise all runs set them.
REFERENCE_RUN = "truth"
DPI = 80


def write_gif(
    frames_by_run: Mapping[str, np.ndarray],
    steps: np.ndarray,
    path: str | pathlib.Path,
    *,
    fps: int = 10,
    title: str = "",
    extent: Sequence[float] | None = None,
) -> pathlib.Path:
    """Write an animated GIF of the runs to ``path`` and return the path.

    Args:
        frames_by_run: per run, 2D frames ``(K, H, W)``, drawn as one image panel
            per run side by side, or 1D frames ``(K, W)``, drawn as one line per
            run on shared axes. Every run has the same shape. Pick one channel
            of a multi-channel field before calling.
        steps: emulator step ``(K,)`` of each frame, shown in the frame's title.
        fps: frames per second, 1 to :data:`MAX_FPS`.
        title: text put before the step in every frame's title.
        extent: domain ``(left, right, bottom, top)`` of 2D panels, or ``(x_start, x_end)``
            of 1D frames, in the system's length unit. 1D grid points are
            ``x_start + j (x_end - x_start) / W``, as the right end of a periodic
            domain is not a grid point. Grid indices when None.

    Colour limits of 2D panels, and y limits of 1D plots, are symmetric about zero
    and set by the largest finite absolute value of the ``"truth"`` run, or of all
    runs when there is no truth run. Runs are drawn in the order of
    ``frames_by_run``. Identical consecutive frames, which only repeated steps can
    give, are merged by Pillow into one longer frame.
    """
    path = pathlib.Path(path)
    with path.open("wb") as file:
        _encode_gif(frames_by_run, steps, file, fps=fps, title=title, extent=extent)
    logger.info("wrote %d frames of %s to %s", len(steps), ", ".join(frames_by_run), path)
    return path


def gif_bytes(
    frames_by_run: Mapping[str, np.ndarray],
    steps: np.ndarray,
    *,
    fps: int = 10,
    title: str = "",
    extent: Sequence[float] | None = None,
) -> bytes:
    """Return the GIF that :func:`write_gif` writes, as bytes (for a browser download)."""
    buffer = io.BytesIO()
    _encode_gif(frames_by_run, steps, buffer, fps=fps, title=title, extent=extent)
    return buffer.getvalue()


def render_frames(
    frames_by_run: Mapping[str, np.ndarray],
    steps: np.ndarray,
    *,
    title: str = "",
    extent: Sequence[float] | None = None,
) -> list[Image.Image]:
    """Draw every frame and return the images as RGB Pillow images of one size (arguments of :func:`write_gif`)."""
    frames_by_run, steps = _checked_frames(frames_by_run, steps)
    figure = Figure(dpi=DPI)
    canvas = FigureCanvasAgg(figure)
    first_frames = next(iter(frames_by_run.values()))
    if first_frames.ndim == 3:
        update = _draw_panels(figure, frames_by_run, extent)
    else:
        update = _draw_lines(figure, frames_by_run, extent)

    images = []
    for row, step in enumerate(steps):
        update(row)
        figure.suptitle(f"{title}, step {step}" if title else f"step {step}")
        canvas.draw()
        images.append(Image.fromarray(np.asarray(canvas.buffer_rgba())[..., :3].copy()))
    return images


def _encode_gif(frames_by_run: Mapping[str, np.ndarray], steps: np.ndarray, target: BinaryIO, *, fps: int,
                title: str, extent: Sequence[float] | None) -> None:
    if not 1 <= fps <= MAX_FPS:
        raise ValueError(f"fps = {fps} is invalid: use 1 to {MAX_FPS} frames per second")
    images = render_frames(frames_by_run, steps, title=title, extent=extent)
    duration_ms = round(1000 / fps)
    images[0].save(target, format="GIF", save_all=True, append_images=images[1:], duration=duration_ms, loop=0)


def _checked_frames(frames_by_run: Mapping[str, np.ndarray], steps: np.ndarray
                    ) -> tuple[dict[str, np.ndarray], np.ndarray]:
    """Return the frames as float arrays with infinities set to NaN, after checking their shapes against ``steps``."""
    if not frames_by_run:
        raise ValueError("frames_by_run is empty: pass at least one run")
    steps = np.asarray(steps)
    if steps.ndim != 1 or steps.size == 0:
        raise ValueError(f"steps must be a non-empty 1D array (K,) with K >= 1, got shape {steps.shape}")

    frames = {name: np.asarray(values, dtype=np.float64) for name, values in frames_by_run.items()}
    shapes = {name: values.shape for name, values in frames.items()}
    first_shape = next(iter(shapes.values()))
    if len(set(shapes.values())) != 1:
        raise ValueError(f"runs have different frame shapes {shapes}: every run needs the same (K, H, W) or (K, W)")
    if len(first_shape) not in (2, 3):
        raise ValueError(f"frames must have shape (K, H, W) or (K, W), got {first_shape}: "
                         f"select one channel of (K, C, ...) fields first")
    if first_shape[0] != steps.size:
        raise ValueError(f"frames have {first_shape[0]} rows but steps has {steps.size}: pass one step per frame")
    return {name: np.where(np.isinf(values), np.nan, values) for name, values in frames.items()}, steps


def _symmetric_limit(frames_by_run: Mapping[str, np.ndarray]) -> float:
    """Return the largest finite |value| of the reference run (or of all runs), or 1 when there is none above 0."""
    sources = [frames_by_run[REFERENCE_RUN]] if REFERENCE_RUN in frames_by_run else list(frames_by_run.values())
    finite = np.concatenate([np.abs(values[np.isfinite(values)]) for values in sources])
    limit = float(finite.max()) if finite.size else 0.0
    return limit if limit > 0 else 1.0


def _draw_panels(figure: Figure, frames_by_run: Mapping[str, np.ndarray], extent: Sequence[float] | None):
    """Lay out one image panel per run with a shared colour bar, and return the function that shows frame ``row``."""
    if extent is not None and len(extent) != 4:
        raise ValueError(f"extent of 2D frames must be (left, right, bottom, top), got {tuple(extent)}")
    figure.set_size_inches(3.0 * len(frames_by_run) + 1.0, 3.6)
    limit = _symmetric_limit(frames_by_run)
    axes = figure.subplots(1, len(frames_by_run), squeeze=False)[0]
    images = {}
    for axis, (name, frames) in zip(axes, frames_by_run.items()):
        images[name] = axis.imshow(frames[0], cmap=FIELD_COLORMAP, vmin=-limit, vmax=limit, origin="lower",
                                   extent=None if extent is None else tuple(extent), interpolation="nearest")
        axis.set_title(name)
        axis.set_xticks([])
        axis.set_yticks([])
    figure.subplots_adjust(left=0.02, right=0.88, bottom=0.04, top=0.82, wspace=0.05)
    colour_bar_axis = figure.add_axes((0.9, 0.1, 0.02, 0.66))
    figure.colorbar(images[next(iter(images))], cax=colour_bar_axis)

    def update(row: int) -> None:
        for name, image in images.items():
            image.set_data(frames_by_run[name][row])

    return update


def _draw_lines(figure: Figure, frames_by_run: Mapping[str, np.ndarray], extent: Sequence[float] | None):
    """Draw one line per run over x on shared axes, and return the function that shows frame ``row``."""
    figure.set_size_inches(7.0, 3.6)
    width = next(iter(frames_by_run.values())).shape[1]
    if extent is None:
        x = np.arange(width, dtype=np.float64)
    elif len(extent) != 2:
        raise ValueError(f"extent of 1D frames must be (x_start, x_end), got {tuple(extent)}")
    else:
        x = extent[0] + np.arange(width) * (extent[1] - extent[0]) / width

    limit = _symmetric_limit(frames_by_run)
    axis = figure.subplots()
    lines = {}
    fallback_colours = iter(["tab:green", "tab:orange", "tab:purple", "tab:brown", "tab:pink", "tab:grey"])
    for name, frames in frames_by_run.items():
        colour = RUN_COLOURS.get(name) or next(fallback_colours, None)
        (lines[name],) = axis.plot(x, frames[0], color=colour, linewidth=1.2, label=name)
    axis.set_xlim(x[0], x[-1])
    axis.set_ylim(-1.1 * limit, 1.1 * limit)
    axis.set_xlabel("x")
    axis.legend(loc="upper right", fontsize="small")
    figure.subplots_adjust(left=0.1, right=0.97, bottom=0.15, top=0.85)

    def update(row: int) -> None:
        for name, line in lines.items():
            line.set_ydata(frames_by_run[name][row])

    return update
