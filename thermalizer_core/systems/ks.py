"""Kuramoto–Sivashinsky equation, solved with ETDRK4.

    u_t + u u_x + u_xx + u_xxxx = 0,   x in [0, L) periodic,   grid x_j = j L / n  (j = 0..n-1).

In Fourier space ``u_hat_t = lin * u_hat + nonlin(u_hat)`` with ``lin = k^2 - k^4`` and
``nonlin(u_hat) = -(i k / 2) FFT(u^2)``. Exponential time differencing with the
fourth-order Runge–Kutta stages of Cox & Matthews (2002, J. Comput. Phys. 176, 430)
integrates ``lin`` exactly. Its coefficients come from the contour integrals of Kassam &
Trefethen (2005, SIAM J. Sci. Comput. 26, 1214), which avoid the cancellation in
``(e^z - 1 - z)/z^3`` at small ``z``.

The scheme is fourth order in ``dt`` as ``dt -> 0``, but the stiff modes show order
reduction: at L = 22 the observed order is about 3 for dt between 0.03 and 0.25 and
reaches 3.8 near dt = 1/200 (see tests/test_ks.py). At the default dt = 0.25 the relative
error over one time unit is about 5e-5 (the tests require below 1e-3).

At L = 22 the dynamics are chaotic with largest Lyapunov exponent 0.043-0.048 per time
unit (Cvitanović, Davidchack & Siminos 2010, SIAM J. Appl. Dyn. Syst. 9, 1). The
defaults (n = 64, dt = 0.25) resolve L = 22: the spectrum falls more than 10 decades to
the Nyquist mode. Larger domains need about 3 points per unit length (L = 100: n = 256).
"""
from __future__ import annotations

import dataclasses
import logging
import math
from dataclasses import field
from typing import ClassVar

import torch

from .base import InvalidParameterError, System, SystemParams
from .spectral import rfft_wavenumbers

logger = logging.getLogger(__name__)

#: Time (in time units) that random initial states are integrated before use.
#: About 9 Lyapunov times at L = 22: enough to forget the smooth random start.
SPINUP_TIME = 200.0
#: Number of points on the half circle that evaluates the ETDRK4 coefficients.
CONTOUR_POINTS = 64
#: Tolerance for ``emulator_interval`` being a whole multiple of ``dt``, relative to the interval.
MULTIPLE_TOLERANCE = 1e-9


def steps_in(duration: float, dt: float) -> int:
    """Return the number of solver steps of size ``dt`` closest to ``duration``."""
    return int(round(duration / dt))


def check_whole_multiple(interval: float, dt: float, interval_name: str) -> None:
    """Raise InvalidParameterError unless ``interval`` is a positive whole multiple of ``dt``."""
    steps = steps_in(interval, dt)
    if steps < 1 or abs(interval - steps * dt) > MULTIPLE_TOLERANCE * interval:
        raise InvalidParameterError(
            f"{interval_name} = {interval} must be a positive whole multiple of dt = {dt}; "
            f"try {max(steps, 1) * dt:g}"
        )


@dataclasses.dataclass(frozen=True)
class KSParams(SystemParams):
    """Parameters of the Kuramoto–Sivashinsky system."""

    L: float = field(default=22.0, metadata={"units": "length", "doc": "domain length; chaotic for L >~ 20"})
    n: int = field(default=64, metadata={"units": "grid points", "doc": "grid size of solver and emulator (even)"})
    dt: float = field(default=0.25, metadata={"units": "time", "doc": "ETDRK4 time step"})
    emulator_interval: float = field(
        default=1.0, metadata={"units": "time", "doc": "time between emulator steps, a whole multiple of dt"}
    )

    def validate(self) -> None:
        if not (self.L > 0 and math.isfinite(self.L)):
            raise InvalidParameterError(f"L = {self.L} is invalid: the domain length must be positive and finite")
        if self.n < 8 or self.n % 2:
            raise InvalidParameterError(f"n = {self.n} is invalid: the grid size must be even and >= 8")
        if not (0 < self.dt <= 1.0):
            raise InvalidParameterError(f"dt = {self.dt} is out of range: use 0 < dt <= 1")
        check_whole_multiple(self.emulator_interval, self.dt, "emulator_interval")


class ETDRK4Coefficients:
    """ETDRK4 coefficients of ``u_hat_t = lin * u_hat + nonlin(u_hat)`` for diagonal ``lin``, one step ``dt``.

    Attributes (shape ``(n//2 + 1,)``): ``exp_full = e^{lin dt}``, ``exp_half = e^{lin dt/2}``,
    ``q`` (half-step stage weight) and ``f1, f2, f3`` (final-stage weights), all real.
    """

    def __init__(self, lin: torch.Tensor, dt: float, contour_points: int = CONTOUR_POINTS):
        z = dt * lin.to(torch.float64)
        # Points on the upper half of a unit circle around each z. The integrands are real
        # on the real axis, so the mean over the upper half, real part taken, equals the
        # mean over the whole circle: the Cauchy integral of Kassam & Trefethen (2005).
        angles = math.pi * (torch.arange(1, contour_points + 1, dtype=torch.float64) - 0.5) / contour_points
        roots = torch.polar(torch.ones_like(angles), angles).to(z.device)
        zr = z[:, None].to(torch.complex128) + roots[None, :]

        def contour_mean(values: torch.Tensor) -> torch.Tensor:
            return values.mean(dim=-1).real

        exp_zr = torch.exp(zr)
        self.exp_full = torch.exp(z)
        self.exp_half = torch.exp(z / 2)
        self.q = dt * contour_mean((torch.exp(zr / 2) - 1) / zr)
        self.f1 = dt * contour_mean((-4 - zr + exp_zr * (4 - 3 * zr + zr**2)) / zr**3)
        self.f2 = dt * contour_mean((2 + zr + exp_zr * (zr - 2)) / zr**3)
        self.f3 = dt * contour_mean((-4 - 3 * zr - zr**2 + exp_zr * (4 - zr)) / zr**3)

    def to(self, device, dtype) -> "ETDRK4Coefficients":
        copy = object.__new__(ETDRK4Coefficients)
        for name in ("exp_full", "exp_half", "q", "f1", "f2", "f3"):
            setattr(copy, name, getattr(self, name).to(device=device, dtype=dtype))
        return copy


class KuramotoSivashinsky(System):
    """Kuramoto–Sivashinsky on ``[0, L)``, batched ETDRK4 (fourth order) in the dtype of the input.

    State: ``u`` at the grid points, shape ``(n,)``; field: ``(1, n)`` (the emulator grid
    is the solver grid). The spatial mean of ``u`` is conserved exactly because the
    nonlinear term is a derivative.
    """

    name: ClassVar[str] = "ks"
    Params: ClassVar[type[SystemParams]] = KSParams
    channels: ClassVar[tuple[str, ...]] = ("u",)
    measure_name: ClassVar[str] = "energy"

    def __init__(self, params: KSParams | None = None, **overrides):
        super().__init__(params, **overrides)
        p = self.params
        k = rfft_wavenumbers(p.n, p.L)
        self._lin = k**2 - k**4
        # d/dx of the Nyquist mode is not a real-valued operator: zero it.
        k_odd = k.clone()
        k_odd[-1] = 0.0
        self._nonlin_factor = -0.5j * k_odd.to(torch.complex128)
        self._coefficients = ETDRK4Coefficients(self._lin, p.dt)
        self._cache: dict[tuple, tuple[ETDRK4Coefficients, torch.Tensor]] = {}

    # -- geometry -------------------------------------------------------------
    @property
    def state_shape(self) -> tuple[int, ...]:
        return (self.params.n,)

    @property
    def field_shape(self) -> tuple[int, ...]:
        return (1, self.params.n)

    @property
    def emulator_interval(self) -> float:
        return self.params.emulator_interval

    @property
    def grid(self) -> torch.Tensor:
        """Grid points ``x_j = j L / n``, shape ``(n,)``, float64."""
        return torch.arange(self.params.n, dtype=torch.float64) * (self.params.L / self.params.n)

    # -- integration ----------------------------------------------------------
    def _operators(self, device, dtype) -> tuple[ETDRK4Coefficients, torch.Tensor]:
        key = (torch.device(device), dtype)
        if key not in self._cache:
            complex_dtype = torch.complex128 if dtype == torch.float64 else torch.complex64
            self._cache[key] = (
                self._coefficients.to(device, dtype),
                self._nonlin_factor.to(device=device, dtype=complex_dtype),
            )
        return self._cache[key]

    def _step(self, u_hat: torch.Tensor, coefficients: ETDRK4Coefficients, nonlin_factor: torch.Tensor) -> torch.Tensor:
        """Advance ``u_hat`` ``(B, n//2 + 1)`` by one ETDRK4 step (the four stages of Cox & Matthews 2002)."""
        n = self.params.n
        c = coefficients

        def nonlin(v_hat: torch.Tensor) -> torch.Tensor:
            v = torch.fft.irfft(v_hat, n=n)
            return nonlin_factor * torch.fft.rfft(v * v)

        n_u = nonlin(u_hat)
        a = c.exp_half * u_hat + c.q * n_u
        n_a = nonlin(a)
        b = c.exp_half * u_hat + c.q * n_a
        n_b = nonlin(b)
        cc = c.exp_half * a + c.q * (2 * n_b - n_u)
        n_c = nonlin(cc)
        return c.exp_full * u_hat + c.f1 * n_u + 2 * c.f2 * (n_a + n_b) + c.f3 * n_c

    def advance(self, state: torch.Tensor, duration: float) -> torch.Tensor:
        """Integrate ``u`` of shape ``(B, n)`` forward by ``duration``, rounded to whole steps ``dt``."""
        if state.ndim != 2 or state.shape[-1] != self.params.n:
            raise ValueError(f"expected states of shape (B, {self.params.n}), got {tuple(state.shape)}")
        if duration < 0:
            raise ValueError(f"duration = {duration} is negative: the solver only integrates forward")
        coefficients, nonlin_factor = self._operators(state.device, state.dtype)
        u_hat = torch.fft.rfft(state)
        for _ in range(steps_in(duration, self.params.dt)):
            u_hat = self._step(u_hat, coefficients, nonlin_factor)
        return torch.fft.irfft(u_hat, n=self.params.n)

    def random_smooth_state(self, batch: int, seed: int) -> torch.Tensor:
        """Draw ``batch`` smooth random states ``(batch, n)``, float64 on the CPU.

        Each state is a sum of the modes ``1 <= m <= 8`` with Gaussian coefficients of
        variance ``0.5 * exp(-m / 2)``, zero mean and rms of order 1.
        """
        n = self.params.n
        generator = torch.Generator().manual_seed(seed)
        coefficients = torch.randn(batch, 8, 2, generator=generator, dtype=torch.float64)
        modes = torch.arange(1, 9, dtype=torch.float64)
        amplitude = torch.sqrt(0.5 * torch.exp(-modes / 2))
        u_hat = torch.zeros(batch, n // 2 + 1, dtype=torch.complex128)
        u_hat[:, 1:9] = torch.complex(coefficients[..., 0], coefficients[..., 1]) * amplitude * (n / 2)
        return torch.fft.irfft(u_hat, n=n)

    def initial_state(self, batch: int, seed: int, device=None, dtype: torch.dtype = torch.float64) -> torch.Tensor:
        """Return ``batch`` states ``(batch, n)`` on the attractor.

        Smooth random states are drawn on the CPU from ``torch.Generator().manual_seed(seed)``,
        moved to ``device`` and integrated in float64 for :data:`SPINUP_TIME` time units,
        then cast to ``dtype``.
        """
        if batch < 1:
            raise ValueError(f"batch = {batch} must be at least 1")
        state = self.random_smooth_state(batch, seed).to(device)
        logger.debug("spinning up %d KS states for %g time units", batch, SPINUP_TIME)
        return self.advance(state, SPINUP_TIME).to(dtype)

    # -- diagnostics ----------------------------------------------------------
    def measure(self, field: torch.Tensor) -> torch.Tensor:
        """Return the energy ``0.5 * mean_x u^2`` of fields ``(B, 1, n)``, shape ``(B,)``."""
        return 0.5 * field.square().mean(dim=(-2, -1))

    def energy_spectrum(self, field: torch.Tensor) -> torch.Tensor:
        """Return the energy per wavenumber ``k = 2 pi m / L``, ``m = 0..n/2``, shape ``(B, n/2 + 1)``.

        With ``u_hat_m = rfft(u)_m / n`` the spectrum is ``0.5 |u_hat_m|^2`` at ``m = 0`` and
        ``m = n/2``, and ``0.5 (|u_hat_m|^2 + |u_hat_{-m}|^2) = |u_hat_m|^2`` in between: both
        signs of each wavenumber are counted, so the spectrum sums to :meth:`measure`.
        """
        n = field.shape[-1]
        u_hat = torch.fft.rfft(field[:, 0], dim=-1) / n
        spectrum = u_hat.abs().square()
        spectrum[:, 0] *= 0.5
        spectrum[:, -1] *= 0.5
        return spectrum

    @property
    def wavenumbers(self) -> torch.Tensor:
        """Angular wavenumbers ``2 pi m / L`` for ``m = 0..n/2``, shape ``(n/2 + 1,)``, float64."""
        return rfft_wavenumbers(self.params.n, self.params.L)
