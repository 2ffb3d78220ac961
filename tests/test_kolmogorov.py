"""Kolmogorov flow solver: invariants, energy budget, time order, closed forms, grids, batching, seeding."""
from __future__ import annotations

import math

import pytest
import torch

from thermalizer_core.systems import InvalidParameterError, get_system
from thermalizer_core.systems.kolmogorov import (
    CourantLimitError,
    KolmogorovFlow,
    enstrophy,
    kinetic_energy,
    load_spinup_state,
)
from thermalizer_core.systems.spectral import fourier_resample_2d, isotropic_shell_spectrum


def small_flow(**overrides) -> KolmogorovFlow:
    """A 32 x 32 flow for tests that need many steps; ``emulator_interval`` follows ``dt``."""
    overrides.setdefault("dt", 0.01)
    overrides.setdefault("emulator_interval", overrides["dt"])
    return KolmogorovFlow(n=32, emulator_n=32, **overrides)


def relative_error(w: torch.Tensor, reference: torch.Tensor) -> float:
    return float((w - reference).norm() / reference.norm())


def fitted_order(dts: list[float], errors: list[float]) -> float:
    """Return the slope of log(error) against log(dt), least squares."""
    design = torch.tensor([[math.log(dt), 1.0] for dt in dts], dtype=torch.float64)
    target = torch.tensor([[math.log(e)] for e in errors], dtype=torch.float64)
    return torch.linalg.lstsq(design, target).solution[0, 0].item()


@pytest.fixture(scope="module")
def flow() -> KolmogorovFlow:
    return KolmogorovFlow()


@pytest.fixture(scope="module")
def attractor_state() -> torch.Tensor:
    return load_spinup_state()[None]


def test_registry_builds_kolmogorov(flow):
    system = get_system("kolmogorov")
    assert isinstance(system, KolmogorovFlow)
    assert system.state_shape == (128, 128)
    assert system.field_shape == (1, 64, 64)
    assert system.emulator_interval == pytest.approx(0.06)
    assert system.reynolds_number == pytest.approx(200.0)


def test_params_reject_bad_values():
    with pytest.raises(InvalidParameterError, match="emulator_interval = 0.05"):
        KolmogorovFlow(emulator_interval=0.05, dt=0.02)
    with pytest.raises(InvalidParameterError, match="emulator_n = 96"):
        KolmogorovFlow(n=64, emulator_n=96)
    with pytest.raises(InvalidParameterError, match="forcing_wavenumber = 30"):
        KolmogorovFlow(n=64, emulator_n=64, forcing_wavenumber=30)
    with pytest.raises(InvalidParameterError, match="nu = -0.1"):
        KolmogorovFlow(nu=-0.1)


def test_inviscid_invariants_conserved():
    """With nu = drag = A = 0 the dealiased system conserves energy and enstrophy exactly;
    RK3 loses them at O(dt^3), so the drift over 2 time units shrinks 8-fold per halving of dt."""
    energy_drifts, enstrophy_drifts = [], []
    for dt in (0.02, 0.01):
        system = small_flow(nu=0.0, drag=0.0, forcing_amplitude=0.0, dt=dt)
        w0 = system.random_state(2, seed=0)
        w = system.advance(w0, 2.0)
        energy_drifts.append(float((kinetic_energy(w) / kinetic_energy(w0) - 1).abs().max()))
        enstrophy_drifts.append(float((enstrophy(w) / enstrophy(w0) - 1).abs().max()))

    # Tolerance: 5 * dt^3 per unit time bounds both drifts measured at dt = 0.02 and 0.01 (about 2 dt^3).
    assert energy_drifts[1] < 5 * 0.01**3 * 2.0, energy_drifts
    assert enstrophy_drifts[1] < 5 * 0.01**3 * 2.0, enstrophy_drifts
    assert energy_drifts[0] / energy_drifts[1] > 6, f"energy drifts {energy_drifts} at dt 0.02, 0.01"
    assert enstrophy_drifts[0] / enstrophy_drifts[1] > 6, f"enstrophy drifts {enstrophy_drifts} at dt 0.02, 0.01"


def energy_budget_residual(system: KolmogorovFlow, w0: torch.Tensor, duration: float) -> tuple[float, float]:
    """Return ``|E(T) - E(0) - integral(P - 2 nu Z - 2 drag E)|`` and ``integral |P|`` over ``duration``.

    The integral uses Simpson's rule on the states after every step.
    """
    p = system.params
    steps = round(duration / p.dt)
    if steps % 2:
        raise ValueError("Simpson's rule needs an even number of steps")
    w = w0
    tendencies, powers = [], []
    energies = []
    for step in range(steps + 1):
        if step:
            w = system.advance(w, p.dt)
        energy, power = kinetic_energy(w), system.forcing_work(w)
        energies.append(energy)
        powers.append(power)
        tendencies.append(power - 2 * p.nu * enstrophy(w) - 2 * p.drag * energy)
    weights = torch.tensor([1.0] + [4.0 if i % 2 else 2.0 for i in range(1, steps)] + [1.0], dtype=w0.dtype)
    integral = p.dt / 3 * (weights[:, None] * torch.stack(tendencies)).sum(dim=0)
    power_scale = p.dt / 3 * (weights[:, None] * torch.stack(powers).abs()).sum(dim=0)
    residual = (energies[-1] - energies[0] - integral).abs()
    return float(residual.max()), float(power_scale.min())


def test_energy_budget_closes(flow, attractor_state):
    """dE/dt = P - 2 nu Z - 2 drag E on the attractor at the defaults, over 0.5 time units.

    The residual comes from the O(dt^2) time stepping and the O(dt^4) quadrature, so it
    must stay below 1e-4 of the forcing work and fall about 4-fold when dt halves.
    """
    residual, power = energy_budget_residual(flow, attractor_state, 0.5)
    half_dt = KolmogorovFlow(dt=0.005, emulator_interval=0.06)
    residual_half, _ = energy_budget_residual(half_dt, attractor_state, 0.5)
    assert residual < 1e-4 * power, f"budget residual {residual:.3g} against forcing work {power:.3g}"
    assert residual / residual_half > 3, f"residuals {residual:.3g} (dt 0.01), {residual_half:.3g} (dt 0.005)"


def test_time_order_second():
    """Errors at t = 1 against dt = 1/1024 fall as dt^2 on a smooth 32 x 32 run.

    nu = 0.05 makes the Crank–Nicolson error, which is second order, dominate the third-order
    explicit error; at nu = 0.005 the observed order is 2.3-2.6 over this dt range.
    """
    system = small_flow(nu=0.05)
    w0 = system.random_state(2, seed=0)
    reference = small_flow(nu=0.05, dt=1 / 1024).advance(w0, 1.0)
    dts = [1 / 50, 1 / 100, 1 / 200]
    errors = [relative_error(small_flow(nu=0.05, dt=dt).advance(w0, 1.0), reference) for dt in dts]
    order = fitted_order(dts, errors)
    assert 1.8 <= order <= 2.3, f"observed order {order:.2f}; errors {errors} at dt {dts}"


def test_laminar_flow_closed_form():
    """From rest, the shear flow w(t) = -A k_f cos(k_f y) (1 - exp(-c t)) / c, c = nu k_f^2 + drag,
    solves the equations exactly (its advection vanishes): checks forcing sign and implicit terms."""
    system = small_flow(forcing_amplitude=0.7, forcing_wavenumber=3, nu=0.02, drag=0.1, dt=0.005)
    n, k_f, amplitude = 32, 3, 0.7
    damping = 0.02 * k_f**2 + 0.1
    y = torch.arange(n, dtype=torch.float64) * (2 * math.pi / n)
    profile = (-amplitude * k_f * torch.cos(k_f * y) / damping)[:, None].expand(n, n)

    w = system.advance(torch.zeros(1, n, n, dtype=torch.float64), 2.0)
    expected = profile * (1 - math.exp(-damping * 2.0))
    error = relative_error(w[0], expected)
    assert error < 1e-6, f"relative error {error:.3g} against the laminar solution"

    velocity = system.velocity(profile[None])
    expected_u = (amplitude * torch.sin(k_f * y) / damping)[:, None].expand(n, n)
    assert torch.allclose(velocity[0, 0], expected_u, rtol=0, atol=1e-12)
    assert torch.allclose(velocity[0, 1], torch.zeros(n, n, dtype=torch.float64), rtol=0, atol=1e-12)


def test_courant_limit_raises(attractor_state):
    system = KolmogorovFlow(dt=0.05, emulator_interval=0.1)
    with pytest.raises(CourantLimitError, match=r"dt = 0.05 exceeds the stable step 0\.0"):
        system.advance(attractor_state, 0.05)


def test_default_dt_accurate(flow, attractor_state):
    """Over one time unit on the attractor, dt = 0.01 differs from dt = 0.005 by less than 2e-4 (measured 4e-5)."""
    coarse = flow.advance(attractor_state, 1.0)
    fine = KolmogorovFlow(dt=0.005, emulator_interval=0.06).advance(attractor_state, 1.0)
    assert relative_error(coarse, fine) < 2e-4


def test_to_emulator_grid_band_limited_exact(flow):
    """A field with |k_x|, |k_y| < 32 survives 64 -> 128 -> 64, and its 64-point truncation equals subsampling."""
    generator = torch.Generator().manual_seed(0)
    coarse = fourier_resample_2d(torch.randn(3, 64, 64, generator=generator, dtype=torch.float64), 62)
    coarse = fourier_resample_2d(coarse, 64)  # now band-limited below the 64 grid's Nyquist
    fine = fourier_resample_2d(coarse, 128)
    field = flow.to_emulator_grid(fine)
    assert field.shape == (3, 1, 64, 64)
    assert torch.allclose(field[:, 0], coarse, rtol=0, atol=1e-12)
    assert torch.allclose(field[:, 0], fine[:, ::2, ::2], rtol=0, atol=1e-12)


def test_resolution_at_defaults(attractor_state):
    """The enstrophy spectrum of the stored state falls more than 4 decades from its peak to the 2/3 cutoff."""
    w_hat = torch.fft.rfft2(attractor_state[0]) / 128**2
    enstrophy_spectrum = isotropic_shell_spectrum(0.5 * w_hat.abs().square(), 42)
    decades = math.log10(enstrophy_spectrum.max() / enstrophy_spectrum[-1])
    assert decades > 4, f"enstrophy spectrum falls only {decades:.2f} decades to k = 42"


def test_measure_and_spectrum(flow, attractor_state):
    field = flow.to_emulator_grid(attractor_state)
    assert flow.measure(field).item() == pytest.approx(0.5 * field.square().mean().item(), rel=1e-14)
    spectrum = flow.energy_spectrum(field)
    assert spectrum.shape == (1, 32)
    assert torch.equal(flow.wavenumbers, torch.arange(1, 33, dtype=torch.float64))
    # Shells miss only the corner modes |k| > 32.5, whose energy is negligible for a resolved flow.
    energy = kinetic_energy(field[:, 0])
    assert spectrum.sum().item() == pytest.approx(energy.item(), rel=1e-5)
    assert energy.item() == pytest.approx(kinetic_energy(attractor_state).item(), rel=1e-5)


def test_energy_spectrum_single_mode(flow):
    """w = cos(3x) has v = sin(3x)/3, so E = 1/36, all in shell 3."""
    x = torch.arange(64, dtype=torch.float64) * (2 * math.pi / 64)
    field = torch.cos(3 * x)[None, None, None, :].expand(1, 1, 64, 64)
    spectrum = flow.energy_spectrum(field)[0]
    assert spectrum[2].item() == pytest.approx(1 / 36, rel=1e-12)
    assert spectrum.sum().item() == pytest.approx(1 / 36, rel=1e-12)


def test_batch_equals_per_sample(flow, attractor_state):
    states = attractor_state + 0.1 * KolmogorovFlow().random_state(3, seed=4)
    batched = flow.advance(states, 0.5)
    for i in range(states.shape[0]):
        single = flow.advance(states[i : i + 1], 0.5)
        assert torch.allclose(batched[i : i + 1], single, rtol=0, atol=1e-11), f"sample {i} differs"


def test_initial_state_reproducible():
    """Same seed, same states; on a 64 grid (the stored state is resampled) to keep the test short."""
    system = KolmogorovFlow(n=64, emulator_n=64)
    first = system.initial_state(2, seed=5)
    second = system.initial_state(2, seed=5)
    other = system.initial_state(2, seed=6)
    assert first.shape == (2, 64, 64)
    assert first.dtype == torch.float64
    assert torch.equal(first, second)
    assert not torch.allclose(first, other)


def vorticity_correlation(a: torch.Tensor, b: torch.Tensor) -> float:
    a, b = a - a.mean(), b - b.mean()
    return float((a * b).sum() / (a.norm() * b.norm()))


def test_initial_states_decorrelated(flow, attractor_state):
    """States of one call differ from each other and from the stored state like independent snapshots.

    Snapshots of one trajectory 5 or more time units apart correlate at |r| < 0.3 (the forced
    mean flow is shared); r above 0.5 would mean the seeded perturbation has not grown.
    """
    states = flow.initial_state(2, seed=5)
    enstrophies = enstrophy(states)
    assert vorticity_correlation(states[0], states[1]) < 0.5
    assert vorticity_correlation(states[0], attractor_state[0]) < 0.5
    assert vorticity_correlation(states[1], attractor_state[0]) < 0.5
    assert torch.all(enstrophies > 2.0), enstrophies
    assert torch.all(enstrophies < 20.0), enstrophies
