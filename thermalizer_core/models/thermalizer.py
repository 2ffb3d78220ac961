"""Thermalizer: a DDPM with no time embedding whose UNet also classifies the noise level of its input."""
from __future__ import annotations

from typing import Any, Sequence

import torch
from torch import nn
from torch.nn import functional as F

from . import ddpm
from .normalization import ChannelNormalization
from .unet import DEFAULT_CLASSIFIER_HIDDEN, UNet, default_architecture

SCHEDULE_KINDS = ("cosine",)


def default_schedule_config() -> dict[str, Any]:
    return {"kind": "cosine", "T": ddpm.DEFAULT_NUM_LEVELS, "s": ddpm.COSINE_OFFSET, "max_beta": ddpm.MAX_BETA}


def build_schedule(config: dict[str, Any]) -> ddpm.NoiseSchedule:
    """Build a NoiseSchedule from ``{"kind": "cosine", "T": int, "s": float, "max_beta": float}``."""
    kind = config.get("kind")
    if kind not in SCHEDULE_KINDS:
        raise ValueError(f"unknown noise schedule kind {kind!r}; known kinds: {', '.join(SCHEDULE_KINDS)}")
    missing = [key for key in ("T", "s", "max_beta") if key not in config]
    if missing:
        raise ValueError(f"noise schedule config {config} is missing {', '.join(missing)}")
    return ddpm.NoiseSchedule.cosine(T=int(config["T"]), s=float(config["s"]), max_beta=float(config["max_beta"]))


class Thermalizer(nn.Module):
    """Denoising diffusion model of a system's invariant measure, with a noise-level classifier.

    The UNet takes normalized fields ``(B, channels, *grid)`` and returns the
    predicted noise ``eps`` and ``level_logits`` ``(B, T)`` over the levels of the
    schedule (level convention in :mod:`ddpm`: 0-based, level 0 counts as clean).
    Public methods other than :meth:`forward` and :meth:`loss` take and return
    physical fields. ``mean`` and ``std`` (``channels`` values each) are the
    per-channel normalization, stored as buffers with the weights.
    Architecture arguments left as None take :func:`unet.default_architecture`.
    """

    kind = "thermalizer"

    def __init__(
        self,
        channels: int,
        dims: int,
        base_channels: int | None = None,
        channel_mults: Sequence[int] | None = None,
        blocks_per_level: int | None = None,
        classifier_hidden: int = DEFAULT_CLASSIFIER_HIDDEN,
        schedule: dict[str, Any] | None = None,
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
        self.classifier_hidden = classifier_hidden
        self.schedule_config = dict(default_schedule_config() if schedule is None else schedule)
        self.schedule = build_schedule(self.schedule_config)
        self._schedules_by_device = {self.schedule.device: self.schedule}

        self.normalization = ChannelNormalization(channels, mean, std)
        self.unet = UNet(
            dims=dims,
            in_channels=channels,
            out_channels=channels,
            base_channels=self.base_channels,
            channel_mults=self.channel_mults,
            blocks_per_level=self.blocks_per_level,
            num_classes=self.schedule.T,
            classifier_hidden=classifier_hidden,
        )

    @property
    def T(self) -> int:
        """Number of noise levels, which is also the number of classifier classes."""
        return self.schedule.T

    def schedule_on(self, device: torch.device) -> ddpm.NoiseSchedule:
        """Return the noise schedule with its tensors on ``device``, cached per device."""
        device = torch.device(device)
        if device not in self._schedules_by_device:
            self._schedules_by_device[device] = self.schedule.to(device)
        return self._schedules_by_device[device]

    def forward(self, x_norm: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Return ``(eps, level_logits)`` for normalized noisy fields ``(B, C, *grid)``."""
        return self.unet(x_norm)

    def predict_noise(self, x_norm: torch.Tensor) -> torch.Tensor:
        """Return the eps head's prediction for normalized noisy fields ``(B, C, *grid)``."""
        eps, _ = self.unet(x_norm)
        return eps

    def loss(
        self, x0_norm: torch.Tensor, t: torch.Tensor, noise: torch.Tensor, lambda_ce: float
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Return ``(total, mse, ce)`` for clean normalized fields x0_norm noised to levels t ``(B,)``.

        ``mse = MSE(eps_pred, noise)`` over all elements, ``ce`` is the cross entropy
        of ``level_logits`` against t, and ``total = mse + lambda_ce * ce``.
        """
        x_t = ddpm.q_sample(x0_norm, t, noise, self.schedule_on(x0_norm.device))
        eps_pred, level_logits = self.unet(x_t)
        mse = F.mse_loss(eps_pred, noise)
        ce = F.cross_entropy(level_logits, t)
        return mse + lambda_ce * ce, mse, ce

    def _normalized_input(self, field: torch.Tensor) -> torch.Tensor:
        return self.normalization.normalize(field).to(self.unet.dtype)

    @torch.no_grad()
    def level_probabilities(self, field: torch.Tensor) -> torch.Tensor:
        """Return the classifier's probability of each noise level, ``(B, T)``, for physical fields."""
        _, level_logits = self.unet(self._normalized_input(field))
        return level_logits.softmax(dim=1)

    @torch.no_grad()
    def classify(self, field: torch.Tensor) -> torch.Tensor:
        """Return the most probable noise level ``(B,)`` long of physical fields."""
        _, level_logits = self.unet(self._normalized_input(field))
        return level_logits.argmax(dim=1)

    @torch.no_grad()
    def denoise(
        self,
        field: torch.Tensor,
        start_levels: torch.Tensor,
        stop_level: int,
        forward_diffuse: bool,
        generator: torch.Generator | None = None,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Denoise physical fields ``(B, C, *grid)`` from ``start_levels`` ``(B,)`` down to ``stop_level``.

        With ``forward_diffuse`` each member with ``start_levels > stop_level`` is
        first noised to its start level (:func:`ddpm.q_sample`), with noise drawn
        from ``generator`` (on the field's device) before the denoising noise. The reverse steps are those
        of :func:`ddpm.denoise_heterogeneous`. Members with
        ``start_levels <= stop_level`` are returned unchanged, bit for bit.

        Returns the fields in the dtype of ``field`` and ``steps_applied`` ``(B,)`` long.
        """
        schedule = self.schedule_on(field.device)
        start_levels = start_levels.to(field.device)
        ddpm.validate_denoise_levels(field, start_levels, stop_level, schedule)
        x = self._normalized_input(field)
        treated = start_levels > stop_level
        if forward_diffuse:
            noise = torch.randn(x.shape, generator=generator, device=x.device, dtype=x.dtype)
            noised = ddpm.q_sample(x, start_levels.clamp(min=0), noise, schedule)
            x = torch.where(_per_member(treated, x), noised, x)

        x, steps_applied = ddpm.denoise_heterogeneous(self.predict_noise, x, start_levels, stop_level, schedule, generator)

        denoised = self.normalization.denormalize(x.to(field.dtype))
        return torch.where(_per_member(treated, field), denoised, field), steps_applied

    def config(self) -> dict[str, Any]:
        """Return the constructor arguments, without the normalization, as a JSON-able dict."""
        return {
            "channels": self.channels,
            "dims": self.dims,
            "base_channels": self.base_channels,
            "channel_mults": list(self.channel_mults),
            "blocks_per_level": self.blocks_per_level,
            "classifier_hidden": self.classifier_hidden,
            "schedule": dict(self.schedule_config),
        }

    @classmethod
    def from_config(cls, config: dict[str, Any]) -> "Thermalizer":
        """Build an untrained thermalizer (identity normalization) from :meth:`config` output."""
        return cls(**config)


def _per_member(mask: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    """Reshape a ``(B,)`` mask to ``(B, 1, ..., 1)`` to broadcast over ``like``."""
    return mask.reshape(-1, *([1] * (like.dim() - 1)))
