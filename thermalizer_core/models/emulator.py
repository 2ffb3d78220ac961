"""Residual neural emulator: one step x -> x + net(x) of a system, on normalized fields."""
from __future__ import annotations

from typing import Any, Sequence

import torch
from torch import nn

from .normalization import ChannelNormalization
from .unet import UNet, default_architecture


class Emulator(nn.Module):
    """Residual UNet emulator of one step of length ``emulator_interval`` of a system.

    ``forward(x_norm)`` returns the predicted increment ``x_{t+1} - x_t`` in
    normalized units for normalized fields ``(B, channels, *grid)``.
    :meth:`step` works in physical units. ``sigma`` is the standard deviation, in
    normalized units, of the Gaussian noise a stochastic emulator adds to each
    step; 0 makes the emulator deterministic.

    Architecture arguments left as None take :func:`unet.default_architecture`.
    ``mean`` and ``std`` (``channels`` values each, physical units) are the
    per-channel normalization, stored as buffers with the weights.
    """

    kind = "emulator"

    def __init__(
        self,
        channels: int,
        dims: int,
        base_channels: int | None = None,
        channel_mults: Sequence[int] | None = None,
        blocks_per_level: int | None = None,
        sigma: float = 0.0,
        mean: Sequence[float] | None = None,
        std: Sequence[float] | None = None,
    ):
        super().__init__()
        defaults = default_architecture(dims)
        self.channels = channels
        self.dims = dims
        self.base_channels = defaults["base_channels"] if base_channels is None else base_channels
        self.channel_mults = tuple(defaults["channel_mults"] if channel_mults is None else channel_mults)
        self.blocks_per_level = defaults["blocks_per_level"] if blocks_per_level is None else blocks_per_level
        if sigma < 0:
            raise ValueError(f"sigma must be non-negative, got {sigma}")
        self.sigma = float(sigma)

        self.normalization = ChannelNormalization(channels, mean, std)
        self.net = UNet(
            dims=dims,
            in_channels=channels,
            out_channels=channels,
            base_channels=self.base_channels,
            channel_mults=self.channel_mults,
            blocks_per_level=self.blocks_per_level,
            num_classes=None,
        )

    def forward(self, x_norm: torch.Tensor) -> torch.Tensor:
        """Return the predicted increment for normalized fields ``(B, C, *grid)``."""
        return self.net(x_norm)

    def step(
        self, field: torch.Tensor, generator: torch.Generator | None = None, sigma: float | None = None
    ) -> torch.Tensor:
        """Advance physical fields ``(B, C, *grid)`` by one emulator step.

        Computes ``x + net(x)`` on normalized ``x``, adds ``sigma * N(0, I)`` in
        normalized units when sigma (the argument, else the attribute) is
        positive, and returns physical fields in the dtype of ``field``. The noise
        is drawn with ``generator``, which must live on the field's device.
        Gradients flow through this method; wrap calls in ``torch.no_grad()``
        for rollouts.
        """
        sigma = self.sigma if sigma is None else float(sigma)
        x = self.normalization.normalize(field)
        x_next = x + self.net(x.to(self.net.dtype)).to(x.dtype)
        if sigma > 0:
            x_next = x_next + sigma * torch.randn(x.shape, generator=generator, device=x.device, dtype=x.dtype)
        return self.normalization.denormalize(x_next)

    def config(self) -> dict[str, Any]:
        """Return the constructor arguments, without the normalization, as a JSON-able dict."""
        return {
            "channels": self.channels,
            "dims": self.dims,
            "base_channels": self.base_channels,
            "channel_mults": list(self.channel_mults),
            "blocks_per_level": self.blocks_per_level,
            "sigma": self.sigma,
        }

    @classmethod
    def from_config(cls, config: dict[str, Any]) -> "Emulator":
        """Build an untrained emulator (identity normalization) from :meth:`config` output."""
        return cls(**config)
