"""Check of a thermalizer's noise-level classifier, which classifies clean fields noised to known levels.

A field "at level t" is ``sqrt(abar_t) x0 + sqrt(1 - abar_t) eps`` in the
thermalizer's normalized units (:func:`ddpm.q_sample`), mapped back to
physical units. The confusion counts, per true level, how often the
classifier's argmax reads each level.
"""
from __future__ import annotations

import dataclasses
import logging
from typing import Sequence

import numpy as np
import torch

from .models import ddpm
from .models.thermalizer import Thermalizer

logger = logging.getLogger(__name__)

#: Predicted-level columns kept above the largest true level when ``max_predicted`` is not given.
DEFAULT_PREDICTED_MARGIN = 10


def noise_to_level(
    thermalizer: Thermalizer,
    field: torch.Tensor,
    level: int | torch.Tensor,
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """Noise physical fields ``(B, C, *grid)`` to diffusion ``level`` of the thermalizer's schedule.

    ``level`` is one level for every member or a ``(B,)`` long tensor, each in
    ``[0, T)``. The noise is added to the normalized field
    (:func:`ddpm.q_sample`) and the result is returned in physical units and in
    the dtype of ``field``. The standard normal noise comes from ``generator``,
    drawn on the generator's device and moved to the field's device.
    """
    _check_fields(thermalizer, field)
    levels = _member_levels(level, field.shape[0], thermalizer.T, field.device)
    schedule = thermalizer.schedule_on(field.device)

    with torch.no_grad():
        x0 = thermalizer.normalization.normalize(field)
        noise_device = generator.device if generator is not None else field.device
        noise = torch.randn(x0.shape, generator=generator, device=noise_device, dtype=x0.dtype).to(field.device)
        noisy = ddpm.q_sample(x0, levels, noise, schedule)
        return thermalizer.normalization.denormalize(noisy)


@dataclasses.dataclass(frozen=True, eq=False)
class ConfusionResult:
    """Classifier readings of fields noised to known levels.

    ``counts[i, j]`` counts the readings of level ``predicted_levels[j]`` for
    fields at true level ``levels[i]``. The last column counts the readings above
    ``max_predicted``. Every row sums to ``samples_per_level``.
    ``mean_predicted`` and ``mean_abs_error`` (in levels) use the readings before
    they are binned, so a reading far above ``max_predicted`` counts at its value.
    """

    levels: np.ndarray
    predicted_levels: np.ndarray
    counts: np.ndarray
    mean_predicted: np.ndarray
    mean_abs_error: np.ndarray
    max_predicted: int
    samples_per_level: int


def classifier_confusion(
    thermalizer: Thermalizer,
    fields: torch.Tensor,
    levels: Sequence[int],
    repeats: int = 1,
    generator: torch.Generator | None = None,
    max_predicted: int | None = None,
) -> ConfusionResult:
    """Noise clean physical ``fields`` ``(B, C, *grid)`` to each of ``levels``, classify them and count the readings.

    Level 0 means the clean fields themselves, not noised. Every other level is
    drawn ``repeats`` times with fresh noise from ``generator``
    (:func:`noise_to_level`), so each level gets ``B * repeats`` readings. The
    classifier runs without gradients on the fields' device, one batch of ``B``
    per level and repeat. ``max_predicted`` defaults to
    ``max(levels) + DEFAULT_PREDICTED_MARGIN``.
    """
    _check_fields(thermalizer, fields)
    true_levels = _checked_levels(levels, thermalizer.T)
    if repeats < 1:
        raise ValueError(f"repeats = {repeats} is invalid: use at least 1")
    if max_predicted is None:
        max_predicted = int(true_levels.max()) + DEFAULT_PREDICTED_MARGIN
    if max_predicted < 0:
        raise ValueError(f"max_predicted = {max_predicted} is invalid: use a level of 0 or more")

    columns = max_predicted + 2
    counts = np.zeros((len(true_levels), columns), dtype=np.int64)
    mean_predicted = np.zeros(len(true_levels))
    mean_abs_error = np.zeros(len(true_levels))
    for row, level in enumerate(true_levels):
        readings = _read_levels(thermalizer, fields, int(level), repeats, generator)
        counts[row] = np.bincount(np.minimum(readings, columns - 1), minlength=columns)
        mean_predicted[row] = readings.mean()
        mean_abs_error[row] = np.abs(readings - level).mean()
        logger.debug("true level %d: mean reading %.2f, mean absolute error %.2f",
                     level, mean_predicted[row], mean_abs_error[row])

    return ConfusionResult(
        levels=true_levels,
        predicted_levels=np.arange(max_predicted + 1),
        counts=counts,
        mean_predicted=mean_predicted,
        mean_abs_error=mean_abs_error,
        max_predicted=max_predicted,
        samples_per_level=fields.shape[0] * repeats,
    )


def _read_levels(thermalizer: Thermalizer, fields: torch.Tensor, level: int, repeats: int,
                 generator: torch.Generator | None) -> np.ndarray:
    """Return the classifier's readings ``(repeats * B,)`` of ``fields`` at ``level``.

    Clean fields (level 0) are classified once and the readings repeated.
    """
    if level == 0:
        clean = thermalizer.classify(fields).cpu().numpy()
        return np.tile(clean, repeats)
    readings = [thermalizer.classify(noise_to_level(thermalizer, fields, level, generator)) for _ in range(repeats)]
    return torch.cat(readings).cpu().numpy()


def _check_fields(thermalizer: Thermalizer, field: torch.Tensor) -> None:
    expected = f"(B, {thermalizer.channels}, " + ", ".join(["n"] * thermalizer.dims) + ")"
    if field.dim() != thermalizer.dims + 2 or field.shape[1] != thermalizer.channels or field.shape[0] < 1:
        raise ValueError(f"fields must have shape {expected} with B >= 1 for this thermalizer, "
                         f"got {tuple(field.shape)}")
    model_device = thermalizer.normalization.mean.device
    if model_device != field.device:
        raise ValueError(f"fields are on {field.device} but the thermalizer is on {model_device}: "
                         f"move one of them with .to(device)")
    if not bool(torch.isfinite(field).all()):
        raise ValueError("fields contain NaN or infinite values: the check needs clean, finite fields")


def _checked_levels(levels: Sequence[int], T: int) -> np.ndarray:
    true_levels = np.asarray(levels)
    if true_levels.ndim != 1 or true_levels.size == 0 or not np.issubdtype(true_levels.dtype, np.integer):
        raise ValueError(f"levels must be a non-empty sequence of integers, got {levels!r}")
    if true_levels.min() < 0 or true_levels.max() >= T:
        raise ValueError(f"levels must lie in [0, {T - 1}], got {true_levels.tolist()}")
    if len(set(true_levels.tolist())) != true_levels.size:
        raise ValueError(f"levels {true_levels.tolist()} contain duplicates: list each level once "
                         f"and use repeats for more samples")
    return true_levels.astype(np.int64)


def _member_levels(level: int | torch.Tensor, batch: int, T: int, device: torch.device) -> torch.Tensor:
    """Return ``level`` as a ``(batch,)`` long tensor on ``device`` after checking it lies in [0, T)."""
    if isinstance(level, torch.Tensor):
        if level.dim() != 1 or level.shape[0] != batch or level.dtype != torch.long:
            raise ValueError(f"level must be an int or a ({batch},) long tensor, got shape {tuple(level.shape)} "
                             f"and dtype {level.dtype}")
        levels = level.to(device)
    else:
        levels = torch.full((batch,), int(level), dtype=torch.long, device=device)
    if batch and (int(levels.min()) < 0 or int(levels.max()) >= T):
        raise ValueError(f"levels must lie in [0, {T - 1}], got min {int(levels.min())} and max {int(levels.max())}")
    return levels
