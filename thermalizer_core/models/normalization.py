"""Per-channel normalization of fields, shared by emulators and thermalizers."""
from __future__ import annotations

from typing import Sequence

import torch
from torch import nn


class ChannelNormalization(nn.Module):
    """Map physical fields ``(B, C, *grid)`` to ``(field - mean) / std`` per channel and back.

    ``mean`` and ``std`` are ``(C,)`` float32 buffers in physical units, saved with
    the model weights. The defaults (0 and 1) leave fields unchanged.
    """

    def __init__(self, channels: int, mean: Sequence[float] | None = None, std: Sequence[float] | None = None):
        super().__init__()
        mean = torch.zeros(channels) if mean is None else torch.as_tensor(mean, dtype=torch.float32)
        std = torch.ones(channels) if std is None else torch.as_tensor(std, dtype=torch.float32)
        if mean.shape != (channels,) or std.shape != (channels,):
            raise ValueError(
                f"mean and std must each have {channels} entries (one per channel), "
                f"got shapes {tuple(mean.shape)} and {tuple(std.shape)}"
            )
        if not bool((std > 0).all()) or not bool(torch.isfinite(mean).all()):
            raise ValueError(f"std must be positive and mean finite, got mean {mean.tolist()}, std {std.tolist()}")
        self.register_buffer("mean", mean.float())
        self.register_buffer("std", std.float())

    @property
    def channels(self) -> int:
        return self.mean.shape[0]

    def _broadcast(self, values: torch.Tensor, field: torch.Tensor) -> torch.Tensor:
        if field.dim() < 2 or field.shape[1] != self.channels:
            raise ValueError(f"expected a field of shape (B, {self.channels}, *grid), got {tuple(field.shape)}")
        return values.to(device=field.device, dtype=field.dtype).reshape(1, -1, *([1] * (field.dim() - 2)))

    def normalize(self, field: torch.Tensor) -> torch.Tensor:
        """Return ``(field - mean) / std`` in the dtype of ``field``."""
        return (field - self._broadcast(self.mean, field)) / self._broadcast(self.std, field)

    def denormalize(self, x_norm: torch.Tensor) -> torch.Tensor:
        """Return ``x_norm * std + mean`` in the dtype of ``x_norm``."""
        return x_norm * self._broadcast(self.std, x_norm) + self._broadcast(self.mean, x_norm)

    def to_dict(self) -> dict[str, list[float]]:
        return {"mean": self.mean.tolist(), "std": self.std.tolist()}
