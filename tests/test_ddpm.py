"""DDPM schedule, noising and reverse steps against closed forms, and heterogeneous denoising."""
import math

import numpy as np
import pytest
import torch

from thermalizer_core.models import ddpm
from thermalizer_core.models.unet import UNet

T = 1000
S = 0.008


@pytest.fixture(scope="module")
def schedule():
    return ddpm.NoiseSchedule.cosine(T)


def numpy_cosine_alphas_cumprod(levels: np.ndarray) -> np.ndarray:
    """alphas_cumprod at 0-based levels from Nichol & Dhariwal eq. 17, f(t + 1) / f(0)."""
    def f(u):
        return np.cos((u / T + S) / (1 + S) * np.pi / 2) ** 2

    return f(levels + 1.0) / f(0.0)


def test_cosine_alphas_cumprod_matches_formula(schedule):
    levels = np.array([0, 1, 10, 100, 500, 900])
    expected = numpy_cosine_alphas_cumprod(levels)

    raw = ddpm.cosine_alphas_cumprod(T).numpy()
    assert raw.dtype == np.float64
    assert raw.shape == (T,)
    np.testing.assert_allclose(raw[levels], expected, rtol=1e-12)
    # Clipping beta at 0.999 changes only the last levels, so the schedule agrees here too.
    np.testing.assert_allclose(schedule.alphas_cumprod.numpy()[levels], expected, rtol=1e-10)


def test_cosine_betas_clipped(schedule):
    assert schedule.betas.max().item() == pytest.approx(ddpm.MAX_BETA)
    assert schedule.betas[-1].item() == pytest.approx(ddpm.MAX_BETA)
    assert schedule.betas.min().item() > 0
    np.testing.assert_allclose(schedule.alphas.numpy(), 1 - schedule.betas.numpy(), rtol=0, atol=0)


def test_alphas_cumprod_monotone(schedule):
    abar = schedule.alphas_cumprod
    assert bool((abar[1:] < abar[:-1]).all())
    assert 0 < abar[-1].item() < abar[0].item() < 1
    assert schedule.alphas_cumprod_prev[0].item() == 1.0
    assert torch.equal(schedule.alphas_cumprod_prev[1:], abar[:-1])


def test_posterior_variance_formula(schedule):
    betas = schedule.betas.numpy()
    abar = np.cumprod(1 - betas)
    abar_prev = np.concatenate([[1.0], abar[:-1]])
    expected = betas * (1 - abar_prev) / (1 - abar)

    np.testing.assert_allclose(schedule.posterior_variance.numpy(), expected, rtol=1e-12)
    assert schedule.posterior_variance[0].item() == 0.0


def test_schedule_to_device_keeps_values(schedule):
    moved = schedule.to("cpu")
    assert moved is schedule
    assert moved.T == T


def test_q_sample_statistics(schedule):
    generator = torch.Generator().manual_seed(0)
    samples = 40000
    x0 = torch.tensor([-1.5, 0.3, 2.0], dtype=torch.float64).repeat(samples, 1).reshape(samples, 1, 3)
    for level in (0, 50, 400, 999):
        t = torch.full((samples,), level, dtype=torch.long)
        noise = torch.randn(x0.shape, generator=generator, dtype=torch.float64)
        x_t = ddpm.q_sample(x0, t, noise, schedule)

        abar = schedule.alphas_cumprod[level].item()
        expected_mean = math.sqrt(abar) * x0[0, 0]
        expected_var = 1 - abar
        # Tolerances of 5 standard errors of the sample mean and sample variance.
        mean_tolerance = 5 * math.sqrt(expected_var / samples)
        var_tolerance = 5 * expected_var * math.sqrt(2 / samples)
        mean_error = (x_t.mean(dim=0)[0] - expected_mean).abs().max().item()
        var_error = (x_t.var(dim=0)[0] - expected_var).abs().max().item()
        assert mean_error < mean_tolerance, f"level {level}: mean error {mean_error}"
        assert var_error < var_tolerance, f"level {level}: variance error {var_error}"


def test_predict_x0_inverts_q_sample(schedule):
    generator = torch.Generator().manual_seed(1)
    x0 = torch.randn(6, 2, 8, 8, generator=generator, dtype=torch.float64)
    noise = torch.randn(x0.shape, generator=generator, dtype=torch.float64)
    t = torch.tensor([0, 3, 10, 200, 700, 998])

    x_t = ddpm.q_sample(x0, t, noise, schedule)
    x0_hat = ddpm.predict_x0(x_t, t, noise, schedule)

    assert (x0_hat - x0).abs().max().item() < 1e-9


def test_reverse_mean_equals_posterior_mean(schedule):
    generator = torch.Generator().manual_seed(2)
    x0 = torch.randn(5, 1, 16, generator=generator, dtype=torch.float64)
    noise = torch.randn(x0.shape, generator=generator, dtype=torch.float64)
    t = torch.tensor([1, 4, 10, 300, 900])
    x_t = ddpm.q_sample(x0, t, noise, schedule)

    mean, variance = ddpm.p_mean_variance(x_t, t, noise, schedule)

    # Ho eq. 7: posterior mean of q(x_{t-1} | x_t, x_0), from the true x_0.
    beta = schedule.betas[t].reshape(-1, 1, 1)
    abar = schedule.alphas_cumprod[t].reshape(-1, 1, 1)
    abar_prev = schedule.alphas_cumprod_prev[t].reshape(-1, 1, 1)
    alpha = schedule.alphas[t].reshape(-1, 1, 1)
    posterior_mean = (abar_prev.sqrt() * beta / (1 - abar)) * x0 + (alpha.sqrt() * (1 - abar_prev) / (1 - abar)) * x_t
    assert (mean - posterior_mean).abs().max().item() < 1e-10
    assert torch.equal(variance.flatten(), schedule.posterior_variance[t])


def test_reverse_step_marginal_matches_forward(schedule):
    """With the true eps, x_{t-1} from one reverse step is distributed as q(x_{t-1} | x_0)."""
    generator = torch.Generator().manual_seed(3)
    samples = 40000
    level = 20
    x0 = torch.full((samples, 1, 2), 0.8, dtype=torch.float64)
    t = torch.full((samples,), level, dtype=torch.long)
    eps = torch.randn(x0.shape, generator=generator, dtype=torch.float64)
    z = torch.randn(x0.shape, generator=generator, dtype=torch.float64)

    x_previous = ddpm.reverse_step(ddpm.q_sample(x0, t, eps, schedule), t, eps, schedule, z)

    abar_prev = schedule.alphas_cumprod[level - 1].item()
    expected_mean = math.sqrt(abar_prev) * 0.8
    expected_var = 1 - abar_prev
    assert abs(x_previous.mean().item() - expected_mean) < 5 * math.sqrt(expected_var / (2 * samples))
    assert abs(x_previous.var().item() - expected_var) < 5 * expected_var * math.sqrt(2 / (2 * samples))


def test_reverse_step_at_level_zero_adds_no_noise(schedule):
    generator = torch.Generator().manual_seed(4)
    x0 = torch.randn(3, 1, 8, generator=generator, dtype=torch.float64)
    eps = torch.randn(x0.shape, generator=generator, dtype=torch.float64)
    t = torch.zeros(3, dtype=torch.long)
    x_t = ddpm.q_sample(x0, t, eps, schedule)

    x_clean = ddpm.reverse_step(x_t, t, eps, schedule, noise=torch.full_like(x0, 1e3))

    assert (x_clean - x0).abs().max().item() < 1e-10


def elementwise_eps(x: torch.Tensor) -> torch.Tensor:
    """An eps model that treats every element on its own, so its result cannot depend on the batch."""
    return 0.3 * torch.sin(x) + 0.05 * x


def test_heterogeneous_equals_reference_bitwise(schedule):
    x = torch.randn(7, 2, 6, 6, generator=torch.Generator().manual_seed(5))
    start_levels = torch.tensor([12, 3, 4, 0, 25, 9, 12])
    stop_level = 4

    fast, fast_steps = ddpm.denoise_heterogeneous(
        elementwise_eps, x, start_levels, stop_level, schedule, torch.Generator().manual_seed(6)
    )
    slow, slow_steps = ddpm.denoise_per_member_reference(
        elementwise_eps, x, start_levels, stop_level, schedule, torch.Generator().manual_seed(6)
    )

    assert torch.equal(fast, slow)
    assert torch.equal(fast_steps, slow_steps)
    assert fast_steps.tolist() == [8, 0, 0, 0, 21, 5, 8]
    untouched = start_levels <= stop_level
    assert torch.equal(fast[untouched], x[untouched])
    assert not torch.equal(fast[~untouched], x[~untouched])


def test_heterogeneous_evaluates_active_members_only(schedule):
    batch_sizes = []

    def recording_eps(x_sub):
        batch_sizes.append(x_sub.shape[0])
        return elementwise_eps(x_sub)

    x = torch.randn(5, 1, 8, generator=torch.Generator().manual_seed(7))
    start_levels = torch.tensor([6, 2, 9, 6, 1])

    _, steps = ddpm.denoise_heterogeneous(recording_eps, x, start_levels, 2, schedule)

    # Levels 9, 8, 7 hold one member; levels 6, 5, 4, 3 hold three.
    assert batch_sizes == [1, 1, 1, 3, 3, 3, 3]
    assert steps.tolist() == [4, 0, 7, 4, 0]
    assert sum(batch_sizes) == steps.sum().item()


def test_heterogeneous_to_clean_level(schedule):
    x = torch.randn(3, 1, 8, generator=torch.Generator().manual_seed(8))
    start_levels = torch.tensor([0, 2, -1])

    fast, steps = ddpm.denoise_heterogeneous(elementwise_eps, x, start_levels, -1, schedule, torch.Generator().manual_seed(9))
    slow, _ = ddpm.denoise_per_member_reference(elementwise_eps, x, start_levels, -1, schedule, torch.Generator().manual_seed(9))

    assert steps.tolist() == [1, 3, 0]
    assert torch.equal(fast, slow)
    assert torch.equal(fast[2], x[2])


def test_heterogeneous_nothing_to_denoise(schedule):
    calls = []
    x = torch.randn(4, 1, 8)
    start_levels = torch.tensor([0, 3, 4, 1])

    result, steps = ddpm.denoise_heterogeneous(lambda h: calls.append(h) or h, x, start_levels, 4, schedule)

    assert torch.equal(result, x)
    assert steps.tolist() == [0, 0, 0, 0]
    assert calls == []


def test_heterogeneous_matches_reference_with_unet(schedule):
    torch.manual_seed(10)
    unet = UNet(dims=1, in_channels=1, out_channels=1, base_channels=8, channel_mults=(1, 2), blocks_per_level=1)
    torch.nn.init.normal_(unet.out_conv.weight, std=0.1)
    x = torch.randn(4, 1, 16, generator=torch.Generator().manual_seed(11))
    start_levels = torch.tensor([10, 2, 7, 10])

    with torch.no_grad():
        fast, _ = ddpm.denoise_heterogeneous(unet, x, start_levels, 2, schedule, torch.Generator().manual_seed(12))
        slow, _ = ddpm.denoise_per_member_reference(unet, x, start_levels, 2, schedule, torch.Generator().manual_seed(12))

    # Convolution kernels may sum in a different order for different batch sizes.
    assert (fast - slow).abs().max().item() < 1e-5


@pytest.mark.parametrize(
    "start_levels, stop_level, error",
    [
        (torch.tensor([3, T]), 1, ValueError),
        (torch.tensor([3, -2]), 1, ValueError),
        (torch.tensor([3, 4]), T, ValueError),
        (torch.tensor([3.0, 4.0]), 1, TypeError),
        (torch.tensor([3]), 1, ValueError),
    ],
)
def test_heterogeneous_rejects_invalid_levels(schedule, start_levels, stop_level, error):
    with pytest.raises(error):
        ddpm.denoise_heterogeneous(elementwise_eps, torch.zeros(2, 1, 4), start_levels, stop_level, schedule)
