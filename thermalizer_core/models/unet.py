"""UNet with circular padding for fields on periodic grids, with an optional noise-level classifier head.

The network has no time (noise level) embedding: a thermalizer must judge the
noise level of its input from the input alone, and its classifier head predicts
that level.
"""
from __future__ import annotations

import math
from typing import Any, Sequence

import torch
from torch import nn
from torch.nn import functional as F

#: Default sizes, small enough to train in minutes on a few CPU cores: 0.22M
#: parameters in 1D and 0.38M in 2D for one channel, plus about 0.2M for a
#: classifier head with 1000 classes.
DEFAULT_ARCHITECTURES: dict[int, dict[str, Any]] = {
    1: {"base_channels": 32, "channel_mults": (1, 2, 2), "blocks_per_level": 1},
    2: {"base_channels": 16, "channel_mults": (1, 2, 4), "blocks_per_level": 1},
}
#: Width of the hidden layers of the classifier head.
DEFAULT_CLASSIFIER_HIDDEN = 128


def default_architecture(dims: int) -> dict[str, Any]:
    """Return a copy of the default ``base_channels``, ``channel_mults`` and ``blocks_per_level`` for ``dims``."""
    if dims not in DEFAULT_ARCHITECTURES:
        raise ValueError(f"dims must be 1 or 2, got {dims}")
    return dict(DEFAULT_ARCHITECTURES[dims])


def circular_conv(dims: int, in_channels: int, out_channels: int, kernel_size: int = 3, stride: int = 1) -> nn.Module:
    """Return a Conv1d or Conv2d that pads periodically, so a stride-1 conv keeps the grid size."""
    conv_class = {1: nn.Conv1d, 2: nn.Conv2d}[dims]
    return conv_class(
        in_channels, out_channels, kernel_size, stride=stride, padding=kernel_size // 2, padding_mode="circular"
    )


def group_norm(channels: int) -> nn.GroupNorm:
    """Return a GroupNorm with up to 8 groups that divide ``channels``."""
    return nn.GroupNorm(math.gcd(8, channels), channels)


class ResidualBlock(nn.Module):
    """GroupNorm, SiLU, circular conv, twice, plus a (1x1-projected) skip."""

    def __init__(self, dims: int, in_channels: int, out_channels: int):
        super().__init__()
        self.norm1 = group_norm(in_channels)
        self.conv1 = circular_conv(dims, in_channels, out_channels)
        self.norm2 = group_norm(out_channels)
        self.conv2 = circular_conv(dims, out_channels, out_channels)
        if in_channels == out_channels:
            self.skip = nn.Identity()
        else:
            self.skip = circular_conv(dims, in_channels, out_channels, kernel_size=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.conv1(F.silu(self.norm1(x)))
        h = self.conv2(F.silu(self.norm2(h)))
        return h + self.skip(x)


class Upsample(nn.Module):
    """Nearest-neighbour upsampling by 2 followed by a circular conv."""

    def __init__(self, dims: int, channels: int):
        super().__init__()
        self.conv = circular_conv(dims, channels, channels)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv(F.interpolate(x, scale_factor=2, mode="nearest"))


def pool_features(h: torch.Tensor) -> torch.Tensor:
    """Pool features ``(B, C, *grid)`` to ``(B, 2C)``: the global averages of h and of h**2.

    The second moment measures the energy in each feature, which changes with the
    noise level. The mean alone of a zero-mean field carries little information.
    """
    spatial = tuple(range(2, h.dim()))
    return torch.cat([h.mean(dim=spatial), h.pow(2).mean(dim=spatial)], dim=1)


class UNet(nn.Module):
    """UNet for ``(B, in_channels, *grid)`` fields on a periodic grid, 1D or 2D.

    Level i works at grid size ``n / 2**i`` with ``base_channels * channel_mults[i]``
    channels and ``blocks_per_level`` residual blocks in the encoder and in the
    decoder. Downsampling is a stride-2 circular conv and upsampling is
    nearest-neighbour plus a circular conv, so each spatial size must be
    divisible by ``2**(len(channel_mults) - 1)``.

    The network is equivariant to periodic shifts by multiples of
    ``2**(len(channel_mults) - 1)`` grid points.
    NOTE: it is not equivariant to other shifts, because of the strided convs.

    ``forward`` returns ``eps`` of the shape of x with ``out_channels`` channels.
    With ``num_classes`` set, it also returns ``level_logits`` ``(B, num_classes)``
    from a classifier head: the features at the end of every encoder and decoder
    level are pooled (:func:`pool_features`), concatenated and passed through an
    MLP with two hidden layers of ``classifier_hidden`` units.
    """

    def __init__(
        self,
        dims: int,
        in_channels: int,
        out_channels: int,
        base_channels: int,
        channel_mults: Sequence[int],
        blocks_per_level: int,
        num_classes: int | None = None,
        classifier_hidden: int = DEFAULT_CLASSIFIER_HIDDEN,
    ):
        super().__init__()
        if dims not in (1, 2):
            raise ValueError(f"dims must be 1 or 2, got {dims}")
        if not channel_mults or blocks_per_level < 1 or base_channels < 1:
            raise ValueError(
                "a UNet needs at least one level, one block per level and one channel; got "
                f"channel_mults={tuple(channel_mults)}, blocks_per_level={blocks_per_level}, base_channels={base_channels}"
            )
        if num_classes is not None and num_classes < 2:
            raise ValueError(f"num_classes must be at least 2 or None, got {num_classes}")
        self.dims = dims
        self.in_channels = in_channels
        self.num_levels = len(channel_mults)
        level_channels = [base_channels * mult for mult in channel_mults]

        self.stem = circular_conv(dims, in_channels, base_channels)
        self.encoder = nn.ModuleList()
        self.downsample = nn.ModuleList()
        channels = base_channels
        for i, level_width in enumerate(level_channels):
            blocks = [ResidualBlock(dims, channels if j == 0 else level_width, level_width) for j in range(blocks_per_level)]
            self.encoder.append(nn.Sequential(*blocks))
            channels = level_width
            if i < self.num_levels - 1:
                self.downsample.append(circular_conv(dims, channels, channels, stride=2))

        self.middle = ResidualBlock(dims, channels, channels)

        self.decoder = nn.ModuleList()
        self.upsample = nn.ModuleList()
        for i in reversed(range(self.num_levels)):
            if i < self.num_levels - 1:
                self.upsample.append(Upsample(dims, channels))
            level_width = level_channels[i]
            blocks = [
                ResidualBlock(dims, channels + level_width if j == 0 else level_width, level_width)
                for j in range(blocks_per_level)
            ]
            self.decoder.append(nn.Sequential(*blocks))
            channels = level_width

        self.out_norm = group_norm(channels)
        self.out_conv = circular_conv(dims, channels, out_channels)
        # A zero output layer makes the untrained network return 0, so a residual
        # emulator starts as the identity map and an eps model as "no noise".
        nn.init.zeros_(self.out_conv.weight)
        nn.init.zeros_(self.out_conv.bias)

        self.classifier = None
        if num_classes is not None:
            pooled_width = 2 * 2 * sum(level_channels)
            self.classifier = nn.Sequential(
                nn.Linear(pooled_width, classifier_hidden),
                nn.SiLU(),
                nn.Linear(classifier_hidden, classifier_hidden),
                nn.SiLU(),
                nn.Linear(classifier_hidden, num_classes),
            )

    @property
    def dtype(self) -> torch.dtype:
        """Dtype of the weights; inputs are cast to it by the models that wrap the UNet."""
        return self.stem.weight.dtype

    @property
    def grid_divisor(self) -> int:
        """Each spatial size of the input must be a multiple of this."""
        return 2 ** (self.num_levels - 1)

    def _check_input(self, x: torch.Tensor) -> None:
        if x.dim() != self.dims + 2 or x.shape[1] != self.in_channels:
            grid = ", ".join(["n"] * self.dims)
            raise ValueError(f"expected input of shape (B, {self.in_channels}, {grid}), got {tuple(x.shape)}")
        grid_shape = tuple(x.shape[2:])
        if any(size % self.grid_divisor for size in grid_shape):
            raise ValueError(
                f"a UNet with {self.num_levels} levels needs every spatial size divisible by {self.grid_divisor}, "
                f"got grid {grid_shape}; use a grid of such size or fewer channel_mults"
            )

    def forward(self, x: torch.Tensor) -> torch.Tensor | tuple[torch.Tensor, torch.Tensor]:
        self._check_input(x)
        h = self.stem(x)
        skips = []
        pooled = []
        for i, level in enumerate(self.encoder):
            h = level(h)
            skips.append(h)
            pooled.append(pool_features(h))
            if i < self.num_levels - 1:
                h = self.downsample[i](h)

        h = self.middle(h)

        for i, level in enumerate(self.decoder):
            if i > 0:
                h = self.upsample[i - 1](h)
            h = level(torch.cat([h, skips.pop()], dim=1))
            pooled.append(pool_features(h))

        eps = self.out_conv(F.silu(self.out_norm(h)))
        if self.classifier is None:
            return eps
        level_logits = self.classifier(torch.cat(pooled, dim=1))
        return eps, level_logits


def count_parameters(module: nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())
