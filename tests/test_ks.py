"""Kuramoto–Sivashinsky solver: convergence order, Lyapunov exponent, invariants, batching, seeding."""
from __future__ import annotations

import math

import pytest
import torch

from thermalizer_core.systems import InvalidParameterError, get_system
from thermalizer_core.systems.ks import KSParams, KuramotoSivashinsky


@pytest.fixture(scope="module")
def ks() -> KuramotoSivashinsky:
    return KuramotoSivashinsky()


@pytest.fixture(scope="module")
def attractor_states(ks) -> torch.Tensor:
    return ks.initial_state(4, seed=0)


def relative_error(u: torch.Tensor, reference: torch.Tensor) -> float:
    return float(((u - reference).norm(dim=-1) / reference.norm(dim=-1)).max())


def test_registry_builds_ks():
    system = get_system("ks", L=22.0)
    assert isinstance(system, KuramotoSivashinsky)
    assert system.state_shape == (64,)
    assert system.field_shape == (1, 64)
    assert system.emulator_interval == 1.0


def test_params_reject_bad_values():
    with pytest.raises(InvalidParameterError, match="emulator_interval = 0.3"):
        KuramotoSivashinsky(emulator_interval=0.3)
    with pytest.raises(InvalidParameterError, match="n = 63"):
        KuramotoSivashinsky(n=63)
    with pytest.raises(InvalidParameterError, match="L = -1.0"):
        KuramotoSivashinsky(L=-1.0)
    with pytest.raises(InvalidParameterError, match="unknown parameter 'nu'"):
        KuramotoSivashinsky(nu=1.0)


def test_etdrk4_fourth_order(attractor_states):
    """Errors after one time unit against dt = 1/2048 fall as dt^4.

    ETDRK4 shows stiff order reduction on KS: between dt = 0.25 and 0.03 the observed
    order is about 3 (the slaved modes 4 < k < 6 converge slowly), so the order is
    measured on dt = 1/64 .. 1/256, where it has reached about 3.75.
    """
    duration = 1.0
    reference = KuramotoSivashinsky(dt=1 / 2048).advance(attractor_states, duration)
    dts = [1 / 64, 1 / 128, 1 / 256]
    errors = [relative_error(KuramotoSivashinsky(dt=dt).advance(attractor_states, duration), reference) for dt in dts]
    slope = torch.linalg.lstsq(
        torch.tensor([[math.log(dt), 1.0] for dt in dts], dtype=torch.float64),
        torch.tensor([[math.log(e)] for e in errors], dtype=torch.float64),
    ).solution[0, 0].item()
    assert 3.5 <= slope <= 4.6, f"observed order {slope:.2f}; errors {errors} at dt {dts}"


def test_default_dt_error_small(attractor_states):
    """At the default dt = 0.25 the relative error over one time unit is below 1e-3."""
    duration = 1.0
    reference = KuramotoSivashinsky(dt=1 / 256).advance(attractor_states, duration)
    error = relative_error(KuramotoSivashinsky().advance(attractor_states, duration), reference)
    assert error < 1e-3, f"relative error {error:.3g} at dt = 0.25"


def test_largest_lyapunov_exponent_l22(ks):
    """Twin trajectories renormalized every time unit give the published exponent (0.043-0.048).

    32 twins over 2000 time units: the standard error of the mean is about 0.001, so the
    window 0.038-0.053 is about five standard errors wide either side.
    """
    twins, transient, duration, interval, separation = 32, 50.0, 2000.0, 1.0, 1e-7
    base = ks.initial_state(twins, seed=1)
    generator = torch.Generator().manual_seed(2)
    direction = torch.randn(base.shape, generator=generator, dtype=base.dtype)
    direction -= direction.mean(dim=-1, keepdim=True)  # perturb within the mean-u subspace
    twin = base + separation * direction / direction.norm(dim=-1, keepdim=True)

    log_growth = torch.zeros(twins, dtype=torch.float64)
    measured_time = 0.0
    for step in range(int((transient + duration) / interval)):
        pair = ks.advance(torch.cat([base, twin]), interval)
        base, twin = pair[:twins], pair[twins:]
        distance = (twin - base).norm(dim=-1)
        if (step + 1) * interval > transient:
            log_growth += torch.log(distance / separation)
            measured_time += interval
        twin = base + (twin - base) * (separation / distance)[:, None]

    exponents = log_growth / measured_time
    exponent = float(exponents.mean())
    standard_error = float(exponents.std()) / math.sqrt(twins)
    assert 0.038 <= exponent <= 0.053, f"largest Lyapunov exponent {exponent:.4f} +- {standard_error:.4f}"


def test_mean_conserved(ks):
    u = ks.random_smooth_state(3, seed=5) + torch.tensor([[0.0], [0.3], [-1.2]], dtype=torch.float64)
    mean_before = u.mean(dim=-1)
    mean_after = ks.advance(u, 50.0).mean(dim=-1)
    assert torch.allclose(mean_after, mean_before, rtol=0, atol=1e-12), (mean_before, mean_after)


def test_batch_equals_per_sample(ks, attractor_states):
    batched = ks.advance(attractor_states, 10.0)
    for i in range(attractor_states.shape[0]):
        single = ks.advance(attractor_states[i : i + 1], 10.0)
        assert torch.allclose(batched[i : i + 1], single, rtol=0, atol=1e-12), f"sample {i} differs"


def test_initial_state_reproducible(ks):
    first = ks.initial_state(3, seed=7)
    second = ks.initial_state(3, seed=7)
    other = ks.initial_state(3, seed=8)
    assert first.shape == (3, 64)
    assert first.dtype == torch.float64
    assert torch.equal(first, second)
    assert not torch.allclose(first, other)


def test_initial_state_on_attractor(ks):
    """Spun-up states have the attractor's energy and zero mean.

    32 trajectories over 500 time units at L = 22 give energies 0.70 +- 0.22, between 0.41 and 1.54.
    """
    u = ks.initial_state(8, seed=3)
    energy = ks.measure(ks.to_emulator_grid(u))
    assert torch.all(energy > 0.3), energy
    assert torch.all(energy < 2.0), energy
    assert torch.all(u.mean(dim=-1).abs() < 1e-12)


def test_energy_spectrum_sums_to_energy(ks, attractor_states):
    field = ks.to_emulator_grid(attractor_states)
    spectrum = ks.energy_spectrum(field)
    assert spectrum.shape == (4, 33)
    assert ks.wavenumbers.shape == (33,)
    assert ks.wavenumbers[1].item() == pytest.approx(2 * math.pi / 22.0)
    assert torch.allclose(spectrum.sum(dim=-1), ks.measure(field), rtol=1e-12, atol=0)


def test_energy_spectrum_single_mode():
    """u = a cos(2 pi m x / L) has energy a^2/4, all at wavenumber index m."""
    system = KuramotoSivashinsky(params=KSParams(L=10.0, n=32))
    x = system.grid
    u = (0.8 * torch.cos(2 * math.pi * 3 * x / 10.0))[None, None]
    spectrum = system.energy_spectrum(u)[0]
    assert spectrum[3].item() == pytest.approx(0.16, rel=1e-12)
    assert spectrum.sum().item() == pytest.approx(0.16, rel=1e-12)
