"""DDPM noise schedule, forward noising and ancestral reverse steps.

Equations are those of Ho, Jain and Abbeel, "Denoising Diffusion Probabilistic
Models" (NeurIPS 2020), cited below as "Ho eq. N"; the schedule is the cosine
schedule of Nichol and Dhariwal, "Improved Denoising Diffusion Probabilistic
Models" (ICML 2021).

Level convention (0-based, as in most code bases): level ``t`` in
``{0, ..., T - 1}`` is the noisy state

    x_t = sqrt(alphas_cumprod[t]) x_0 + sqrt(1 - alphas_cumprod[t]) eps,   eps ~ N(0, I)

so ``alphas_cumprod[t] = prod_{k <= t} (1 - betas[k])``. Level 0 is what the
classifier calls "clean": it carries noise of standard deviation
``sqrt(1 - alphas_cumprod[0])``, about 0.006 for the cosine schedule with
T = 1000. One reverse step from level 0 returns the estimate of the noise-free
field, which is written here as level ``-1`` (``alphas_cumprod[-1] := 1``).

Schedules are kept in float64. Every function gathers the coefficients it
needs at ``t`` and casts them to the dtype and device of the field it works on.
"""
from __future__ import annotations

import dataclasses
import math
from typing import Callable

import torch

#: Offset ``s`` of the cosine schedule (Nichol & Dhariwal 2021), which keeps beta_0 from being tiny.
COSINE_OFFSET = 0.008
#: Upper clip of beta_t; without it the last beta of the cosine schedule is 1.
MAX_BETA = 0.999
#: Number of noise levels used throughout the product.
DEFAULT_NUM_LEVELS = 1000

EpsFunction = Callable[[torch.Tensor], torch.Tensor]


def cosine_alphas_cumprod(T: int, s: float = COSINE_OFFSET) -> torch.Tensor:
    """Return ``alphas_cumprod`` of the cosine schedule, shape ``(T,)``, float64.

    Nichol & Dhariwal: ``f(u) = cos((u / T + s) / (1 + s) * pi / 2) ** 2`` and
    ``alphas_cumprod[t] = f(t + 1) / f(0)`` for the 0-based level ``t``. These are the
    values before the betas are clipped at :data:`MAX_BETA`. For T = 1000 the clip
    changes only the last level (see :meth:`NoiseSchedule.cosine`).
    """
    if T < 1:
        raise ValueError(f"the number of noise levels T must be at least 1, got {T}")
    steps = torch.arange(T + 1, dtype=torch.float64)
    f = torch.cos((steps / T + s) / (1 + s) * (math.pi / 2)) ** 2
    return f[1:] / f[0]


@dataclasses.dataclass(frozen=True, eq=False)
class NoiseSchedule:
    """Variance schedule of a DDPM with ``T`` levels; every tensor has shape ``(T,)``.

    ``alphas_cumprod_prev[t]`` is ``alphas_cumprod[t - 1]`` with 1 at ``t = 0``.
    ``posterior_variance[t]`` is the variance of q(x_{t-1} | x_t, x_0),
    ``beta_t (1 - alphas_cumprod_prev[t]) / (1 - alphas_cumprod[t])`` (Ho eq. 7), and
    is also the variance used by the reverse steps (the "fixed small" choice of
    Ho et al. section 3.2). It is 0 at ``t = 0``.
    """

    T: int
    betas: torch.Tensor
    alphas: torch.Tensor
    alphas_cumprod: torch.Tensor
    alphas_cumprod_prev: torch.Tensor
    posterior_variance: torch.Tensor

    @classmethod
    def from_betas(cls, betas: torch.Tensor) -> "NoiseSchedule":
        """Build the schedule from ``betas`` of shape ``(T,)``, each in (0, 1)."""
        betas = torch.as_tensor(betas, dtype=torch.float64)
        if betas.dim() != 1 or betas.numel() == 0:
            raise ValueError(f"betas must be a non-empty 1D tensor, got shape {tuple(betas.shape)}")
        if not bool(((betas > 0) & (betas < 1)).all()):
            raise ValueError(f"every beta must lie in (0, 1); got min {betas.min().item()}, max {betas.max().item()}")
        alphas = 1.0 - betas
        alphas_cumprod = torch.cumprod(alphas, dim=0)
        alphas_cumprod_prev = torch.cat([alphas_cumprod.new_ones(1), alphas_cumprod[:-1]])
        posterior_variance = betas * (1.0 - alphas_cumprod_prev) / (1.0 - alphas_cumprod)
        return cls(
            T=betas.numel(),
            betas=betas,
            alphas=alphas,
            alphas_cumprod=alphas_cumprod,
            alphas_cumprod_prev=alphas_cumprod_prev,
            posterior_variance=posterior_variance,
        )

    @classmethod
    def cosine(cls, T: int = DEFAULT_NUM_LEVELS, s: float = COSINE_OFFSET, max_beta: float = MAX_BETA) -> "NoiseSchedule":
        """Build the cosine schedule: ``beta_t = min(1 - abar_t / abar_{t-1}, max_beta)`` with ``abar_{-1} = 1``."""
        alphas_cumprod = cosine_alphas_cumprod(T, s)
        alphas_cumprod_prev = torch.cat([alphas_cumprod.new_ones(1), alphas_cumprod[:-1]])
        betas = (1.0 - alphas_cumprod / alphas_cumprod_prev).clamp(max=max_beta)
        return cls.from_betas(betas)

    @property
    def device(self) -> torch.device:
        return self.betas.device

    def to(self, device: torch.device | str) -> "NoiseSchedule":
        """Return the schedule with every tensor on ``device`` (self if already there)."""
        device = torch.device(device)
        if self.betas.device == device:
            return self
        moved = {field.name: getattr(self, field.name) for field in dataclasses.fields(self)}
        for name, value in moved.items():
            if isinstance(value, torch.Tensor):
                moved[name] = value.to(device)
        return NoiseSchedule(**moved)


def _coefficient(values: torch.Tensor, t: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    """Gather ``values[t]`` for t of shape ``(B,)`` and shape it ``(B, 1, ..., 1)`` to broadcast over ``like``."""
    gathered = values.to(like.device)[t.to(like.device)]
    return gathered.to(like.dtype).reshape(-1, *([1] * (like.dim() - 1)))


def _check_levels(t: torch.Tensor, x: torch.Tensor) -> None:
    if t.dim() != 1 or t.shape[0] != x.shape[0]:
        raise ValueError(f"levels t must have shape (B,) = ({x.shape[0]},), got {tuple(t.shape)}")
    if t.dtype != torch.long:
        raise TypeError(f"levels t must be a long tensor, got {t.dtype}")


def q_sample(x0: torch.Tensor, t: torch.Tensor, noise: torch.Tensor, schedule: NoiseSchedule) -> torch.Tensor:
    """Noise clean fields to level ``t``: sample q(x_t | x_0) (Ho eq. 4, reparametrized).

    ``x_t = sqrt(abar_t) x0 + sqrt(1 - abar_t) noise``, with x0 and noise of shape
    ``(B, ...)`` and t a ``(B,)`` long tensor of levels in [0, T).
    """
    _check_levels(t, x0)
    abar = _coefficient(schedule.alphas_cumprod, t, x0)
    return abar.sqrt() * x0 + (1.0 - abar).sqrt() * noise


def predict_x0(x_t: torch.Tensor, t: torch.Tensor, eps: torch.Tensor, schedule: NoiseSchedule) -> torch.Tensor:
    """Estimate the clean field from ``x_t`` and predicted noise ``eps``: Ho eq. 4 solved for x_0.

    ``x0_hat = (x_t - sqrt(1 - abar_t) eps) / sqrt(abar_t)``; exact when eps is the true noise.
    """
    _check_levels(t, x_t)
    abar = _coefficient(schedule.alphas_cumprod, t, x_t)
    return (x_t - (1.0 - abar).sqrt() * eps) / abar.sqrt()


def p_mean_variance(
    x_t: torch.Tensor, t: torch.Tensor, eps: torch.Tensor, schedule: NoiseSchedule
) -> tuple[torch.Tensor, torch.Tensor]:
    """Return mean ``(B, ...)`` and variance ``(B, 1, ..., 1)`` of the reverse step p(x_{t-1} | x_t).

    Mean, Ho eq. 11: ``mu = (x_t - beta_t / sqrt(1 - abar_t) eps) / sqrt(alpha_t)``, which
    equals the posterior mean of q(x_{t-1} | x_t, x0_hat) (Ho eq. 7) with x0_hat from
    :func:`predict_x0`. Variance: ``posterior_variance[t]``.
    """
    _check_levels(t, x_t)
    beta = _coefficient(schedule.betas, t, x_t)
    alpha = _coefficient(schedule.alphas, t, x_t)
    abar = _coefficient(schedule.alphas_cumprod, t, x_t)
    mean = (x_t - beta / (1.0 - abar).sqrt() * eps) / alpha.sqrt()
    variance = _coefficient(schedule.posterior_variance, t, x_t)
    return mean, variance


def reverse_step(
    x_t: torch.Tensor, t: torch.Tensor, eps: torch.Tensor, schedule: NoiseSchedule, noise: torch.Tensor
) -> torch.Tensor:
    """Take one ancestral step from level t to t - 1 (Ho algorithm 2, line 4).

    ``x_{t-1} = mu(x_t, eps) + sqrt(posterior_variance[t]) noise``, where ``noise`` is
    standard normal with the shape of x_t. Members at ``t == 0`` get no noise and
    return the estimate of the clean field.
    """
    mean, variance = p_mean_variance(x_t, t, eps, schedule)
    not_last = (t != 0).to(x_t.dtype).reshape(-1, *([1] * (x_t.dim() - 1)))
    return mean + not_last * variance.sqrt() * noise


def validate_denoise_levels(x: torch.Tensor, start_levels: torch.Tensor, stop_level: int, schedule: NoiseSchedule) -> list[int]:
    """Return ``start_levels`` as a Python list after checking the levels of a denoising call.

    Raises TypeError unless start_levels is a long tensor, and ValueError unless it
    has shape ``(B,)`` with values in [-1, T) and stop_level is in [-1, T).
    """
    if start_levels.dim() != 1 or start_levels.shape[0] != x.shape[0]:
        raise ValueError(f"start_levels must have shape (B,) = ({x.shape[0]},), got {tuple(start_levels.shape)}")
    if start_levels.dtype != torch.long:
        raise TypeError(f"start_levels must be a long tensor, got {start_levels.dtype}")
    if not -1 <= stop_level < schedule.T:
        raise ValueError(f"stop_level must be in [-1, {schedule.T - 1}], got {stop_level}")
    starts = start_levels.tolist()
    if starts and (min(starts) < -1 or max(starts) >= schedule.T):
        raise ValueError(f"start_levels must lie in [-1, {schedule.T - 1}], got min {min(starts)} and max {max(starts)}")
    return starts


def _draw_step_noise(x: torch.Tensor, generator: torch.Generator | None) -> torch.Tensor:
    """Draw the noise of one reverse step for the full batch, so that every denoising path consumes it alike."""
    return torch.randn(x.shape, generator=generator, device=x.device, dtype=x.dtype)


def denoise_heterogeneous(
    eps_fn: EpsFunction,
    x: torch.Tensor,
    start_levels: torch.Tensor,
    stop_level: int,
    schedule: NoiseSchedule,
    generator: torch.Generator | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Denoise each member of ``x`` from its own level down to ``stop_level``, as one shrinking batch.

    Args:
        eps_fn: maps noisy fields ``(b, ...)`` to predicted noise of the same shape.
            It gets no level input and is called only on the members being denoised.
        x: fields ``(B, ...)``, member i at level ``start_levels[i]``.
        start_levels: ``(B,)`` long, each in [-1, T). A member with
            ``start_levels[i] <= stop_level`` is returned unchanged.
        stop_level: level to stop at, in [-1, T); -1 also takes the final step from
            level 0 to the clean estimate.
        generator: source of the step noise. For each level t, from
            ``max(start_levels)`` down to ``stop_level + 1``, one standard normal
            tensor of the full batch shape is drawn, and member i uses its own slice.
            Equal generator states therefore give equal noise to a member whatever
            the other members' levels are (see :func:`denoise_per_member_reference`).

    Returns:
        The denoised fields ``(B, ...)`` and ``steps_applied``, a ``(B,)`` long tensor
        equal to ``max(0, start_levels - stop_level)``.

    At level t the members with ``start_levels >= t`` are gathered with
    ``index_select``, eps_fn runs on that sub-batch only, and the reverse step
    (:func:`reverse_step`) is written back with ``index_copy_``. The members are
    sorted by level once, so the active set at every t is a prefix of that order
    and the loop needs no device synchronization per step.
    """
    starts = validate_denoise_levels(x, start_levels, stop_level, schedule)
    x = x.clone()
    steps_applied = torch.zeros(x.shape[0], dtype=torch.long, device=x.device)
    if not starts or max(starts) <= stop_level:
        return x, steps_applied

    order = sorted(range(len(starts)), key=lambda i: -starts[i])
    order_index = torch.tensor(order, dtype=torch.long, device=x.device)
    sorted_starts = [starts[i] for i in order]
    ones = torch.ones(len(starts), dtype=torch.long, device=x.device)

    active_count = 0
    for t in range(max(starts), stop_level, -1):
        noise = _draw_step_noise(x, generator)
        while active_count < len(sorted_starts) and sorted_starts[active_count] >= t:
            active_count += 1
        active = order_index[:active_count]

        x_active = x.index_select(0, active)
        levels = torch.full((active_count,), t, dtype=torch.long, device=x.device)
        eps = eps_fn(x_active)
        x_previous = reverse_step(x_active, levels, eps, schedule, noise.index_select(0, active))

        x.index_copy_(0, active, x_previous)
        steps_applied.index_add_(0, active, ones[:active_count])
    return x, steps_applied


def denoise_per_member_reference(
    eps_fn: EpsFunction,
    x: torch.Tensor,
    start_levels: torch.Tensor,
    stop_level: int,
    schedule: NoiseSchedule,
    generator: torch.Generator | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Do what :func:`denoise_heterogeneous` does, one member at a time (slow; for tests and benchmarks).

    The step noise is drawn in the same order and shape as there: one full-batch
    tensor per level, from ``max(start_levels)`` down. Given equal generator
    states and an eps_fn that treats each member independently, both functions
    return the same result bit for bit.
    """
    starts = validate_denoise_levels(x, start_levels, stop_level, schedule)
    x = x.clone()
    steps_applied = torch.zeros(x.shape[0], dtype=torch.long, device=x.device)
    if not starts or max(starts) <= stop_level:
        return x, steps_applied

    noise_by_level = {t: _draw_step_noise(x, generator) for t in range(max(starts), stop_level, -1)}
    for i, start in enumerate(starts):
        member = x[i : i + 1]
        for t in range(start, stop_level, -1):
            level = torch.full((1,), t, dtype=torch.long, device=x.device)
            member = reverse_step(member, level, eps_fn(member), schedule, noise_by_level[t][i : i + 1])
            steps_applied[i] += 1
        x[i : i + 1] = member
    return x, steps_applied
