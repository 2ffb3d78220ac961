"""Two-layer quasi-geostrophic turbulence, discretized as pyqg's ``QGModel`` (pyqg 0.7.2).

The potential-vorticity anomalies ``q1`` (upper layer) and ``q2`` (lower layer) on a doubly
periodic ``nx x nx`` grid of size ``L x W`` are

    q1 = lap(psi1) + F1 (psi2 - psi1),   q2 = lap(psi2) + F2 (psi1 - psi2),
    F1 = 1 / (rd^2 (1 + delta)),   F2 = delta F1,   delta = H1 / H2,

and evolve as

    q1_t + J(psi1, q1) + U1 q1_x + Qy1 psi1_x = ssd,
    q2_t + J(psi2, q2) + U2 q2_x + Qy2 psi2_x = -rek lap(psi2) + ssd,
    Qy1 = beta + F1 (U1 - U2),   Qy2 = beta - F2 (U1 - U2),

where ``ssd`` is the small-scale dissipation of the exponential spectral filter. The
numerics follow pyqg step by step, so that the same ``q`` gives the same trajectory:

1. ``psi_hat = A q_hat`` with pyqg's 2x2 inversion matrix per wavenumber; the domain-mean
   mode of ``psi`` is zero.
2. ``u = -psi_y``, ``v = psi_x`` by spectral derivatives, then the fluxes
   ``(u + U_i) q`` and ``v q`` are formed on the grid (no dealiasing) and differentiated in
   spectral space: ``dq_hat/dt = -(ik F[(u + U) q] + il F[v q] + ik Qy psi_hat)``.
3. Bottom drag adds ``rek |K|^2 psi2_hat`` to the lower-layer tendency.
4. Adams–Bashforth: forward Euler for the first step, AB2 for the second, AB3 after that;
   the filter multiplies the whole new ``q_hat`` after every step.

The filter is ``exp(-filterfac (wvx - 0.65 pi)^4)`` for ``wvx > 0.65 pi``, else 1, with
``wvx = sqrt((k dx)^2 + (l dy)^2)`` (pyqg, after Arbic & Flierl 2003).

Layout: states are ``(B, 2, ny, nx)`` with ``ny = nx``, upper layer first, indexed
``[layer, y, x]``, in s^-1. Time is in seconds. The emulator grid is the solver grid.
"""
from __future__ import annotations

import dataclasses
import json
import logging
import math
from dataclasses import field
from importlib import resources
from pathlib import Path
from typing import Iterator, ClassVar

import torch
from safetensors import safe_open
from safetensors.torch import load_file, save_file

from .base import InvalidParameterError, System, SystemParams

logger = logging.getLogger(__name__)

SECONDS_PER_DAY = 86400.0
#: Length of pyqg's model year (360 days), in seconds.
SECONDS_PER_YEAR = 360 * SECONDS_PER_DAY
#: Tolerance for ``emulator_interval`` being a whole multiple of ``dt``, relative to the interval.
MULTIPLE_TOLERANCE = 1e-9
#: Non-dimensional wavenumber ``wvx`` above which pyqg's filter damps a mode.
FILTER_CUTOFF = 0.65 * math.pi

#: Adams–Bashforth weights of the newest, previous and second previous tendency, by order.
ADAMS_BASHFORTH_WEIGHTS = {
    1: (1.0,),
    2: (1.5, -0.5),
    3: (23.0 / 12.0, -16.0 / 12.0, 5.0 / 12.0),
}

#: Spun-up state of the default configuration, relative to this package folder.
SPINUP_FILE = Path("spinup") / "qg_eddy_nx64.safetensors"
#: Model time that :func:`write_spinup_state` integrates from pyqg's random start: 10 years.
SPINUP_DURATION = 10 * SECONDS_PER_YEAR
#: Model time that :meth:`TwoLayerQG.initial_state` integrates each perturbed copy of the
#: spun-up state: 200 days, about 7 Lyapunov times of the default configuration.
DECORRELATION_DURATION = 200 * SECONDS_PER_DAY
#: Rms of the white noise added to the spun-up state, relative to each layer's rms.
PERTURBATION_AMPLITUDE = 0.3


def steps_in(duration: float, dt: float) -> int:
    """Return the number of solver steps of size ``dt`` closest to ``duration``."""
    return int(round(duration / dt))


@dataclasses.dataclass(frozen=True)
class QGParams(SystemParams):
    """Parameters of the two-layer QG model, with pyqg's names, defaults and SI units."""

    nx: int = field(default=64, metadata={"units": "grid points", "doc": "grid points per side (even); ny = nx"})
    L: float = field(default=1e6, metadata={"units": "m", "doc": "domain length in x"})
    W: float = field(
        default=0.0, metadata={"units": "m", "doc": "domain width in y; 0 means W = L (pyqg's W=None)"}
    )
    beta: float = field(default=1.5e-11, metadata={"units": "1/(m s)", "doc": "gradient of the Coriolis parameter"})
    rd: float = field(default=15000.0, metadata={"units": "m", "doc": "deformation radius"})
    delta: float = field(default=0.25, metadata={"units": "1", "doc": "layer depth ratio H1/H2"})
    H1: float = field(default=500.0, metadata={"units": "m", "doc": "upper layer depth"})
    U1: float = field(default=0.025, metadata={"units": "m/s", "doc": "upper layer background zonal flow"})
    U2: float = field(default=0.0, metadata={"units": "m/s", "doc": "lower layer background zonal flow"})
    rek: float = field(default=5.787e-7, metadata={"units": "1/s", "doc": "linear bottom drag on the lower layer"})
    dt: float = field(default=7200.0, metadata={"units": "s", "doc": "Adams-Bashforth time step"})
    filterfac: float = field(
        default=23.6, metadata={"units": "1", "doc": "strength of the exponential spectral filter; 0 disables it"}
    )
    emulator_interval: float = field(
        default=86400.0,
        metadata={"units": "s", "doc": "model time between emulator steps, a whole multiple of dt (1 day = 12 steps)"},
    )

    def __post_init__(self) -> None:
        if self.W == 0.0:
            object.__setattr__(self, "W", self.L)

    @property
    def H2(self) -> float:
        """Lower layer depth ``H1 / delta``, in m."""
        return self.H1 / self.delta

    @property
    def F1(self) -> float:
        """Upper layer stretching coefficient ``1 / (rd^2 (1 + delta))``, in 1/m^2."""
        return self.rd**-2 / (1.0 + self.delta)

    @property
    def F2(self) -> float:
        """Lower layer stretching coefficient ``delta F1``, in 1/m^2."""
        return self.delta * self.F1

    @property
    def layer_fractions(self) -> tuple[float, float]:
        """Layer depths over the total depth, ``(H1/H, H2/H)``."""
        return self.delta / (1.0 + self.delta), 1.0 / (1.0 + self.delta)

    def validate(self) -> None:
        if self.nx < 8 or self.nx % 2:
            raise InvalidParameterError(f"nx = {self.nx} is invalid: the grid size must be even and >= 8")
        positive = {"L": self.L, "W": self.W, "rd": self.rd, "delta": self.delta, "H1": self.H1, "dt": self.dt}
        for name, value in positive.items():
            if not (value > 0 and math.isfinite(value)):
                raise InvalidParameterError(f"{name} = {value} is invalid: it must be positive and finite")
        finite = {"beta": self.beta, "U1": self.U1, "U2": self.U2}
        for name, value in finite.items():
            if not math.isfinite(value):
                raise InvalidParameterError(f"{name} = {value} is invalid: it must be finite")
        if not (self.rek >= 0 and math.isfinite(self.rek)):
            raise InvalidParameterError(f"rek = {self.rek} is invalid: the bottom drag must be >= 0 and finite")
        if not (self.filterfac >= 0 and math.isfinite(self.filterfac)):
            raise InvalidParameterError(f"filterfac = {self.filterfac} is invalid: it must be >= 0 and finite")
        steps = steps_in(self.emulator_interval, self.dt)
        if steps < 1 or abs(self.emulator_interval - steps * self.dt) > MULTIPLE_TOLERANCE * self.emulator_interval:
            raise InvalidParameterError(
                f"emulator_interval = {self.emulator_interval} must be a positive whole multiple of "
                f"dt = {self.dt}; try {max(steps, 1) * self.dt:g}"
            )

    def dynamics(self) -> dict[str, float]:
        """Return the parameters that change the trajectory (all but ``emulator_interval``)."""
        values = self.to_dict()
        values.pop("emulator_interval")
        return values


class QGSpectralOperators:
    """Wavenumbers, inversion matrix, filter and background terms of one grid, on one device and dtype.

    Half-spectrum arrays have shape ``(ny, nx//2 + 1)``: ``l`` runs over all signs in
    ``fftfreq`` order (pyqg's ``ll``, with the Nyquist row at ``l = -ny/2 dl``) and
    ``k >= 0``. All values are computed in float64 on the CPU, then cast, so they do not
    depend on the device.
    """

    def __init__(self, params: QGParams, device: torch.device | str | None, dtype: torch.dtype):
        self.params = params
        self.shape = (params.nx, params.nx)
        real_options = dict(device=device, dtype=dtype)
        complex_dtype = torch.complex128 if dtype == torch.float64 else torch.complex64
        complex_options = dict(device=device, dtype=complex_dtype)
        nx, ny = params.nx, params.nx
        dx, dy = params.L / nx, params.W / ny
        dk, dl = 2 * math.pi / params.L, 2 * math.pi / params.W

        k = dk * torch.arange(nx // 2 + 1, dtype=torch.float64)[None, :]
        l_modes = torch.cat([torch.arange(0, ny // 2), torch.arange(-(ny // 2), 0)]).to(torch.float64)
        l = dl * l_modes[:, None]
        wv2 = k**2 + l**2

        self.k = k.to(**real_options)
        self.l = l.to(**real_options)
        self.wv2 = wv2.to(**real_options)
        self.ik = (1j * k).to(**complex_options)
        self.il = (1j * l).to(**complex_options)
        self.inversion = self._inversion_matrix(wv2, params.F1, params.F2).to(**real_options)
        self.spectral_filter = self._exponential_filter(k * dx, l * dy, params.filterfac).to(**real_options)

        qy = torch.tensor([params.beta + params.F1 * (params.U1 - params.U2),
                           params.beta - params.F2 * (params.U1 - params.U2)], dtype=torch.float64)
        self.background_pv_gradient = qy.to(**real_options)
        self.ik_qy = (1j * qy[:, None, None] * k[None]).to(**complex_options)
        self.background_flow = torch.tensor([params.U1, params.U2], dtype=torch.float64)[:, None, None].to(**real_options)
        self.layer_fractions = torch.tensor(params.layer_fractions, dtype=torch.float64).to(**real_options)

    @staticmethod
    def _inversion_matrix(wv2: torch.Tensor, f1: float, f2: float) -> torch.Tensor:
        """Return pyqg's matrix ``A`` with ``psi_hat = A q_hat``, shape ``(2, 2, ny, nk)``; zero at ``K = 0``."""
        determinant = wv2 * (wv2 + f1 + f2)
        inverse_determinant = torch.where(determinant == 0, 0.0, 1.0 / determinant)
        return torch.stack([
            torch.stack([-(wv2 + f2) * inverse_determinant, -f1 * inverse_determinant]),
            torch.stack([-f2 * inverse_determinant, -(wv2 + f1) * inverse_determinant]),
        ])

    @staticmethod
    def _exponential_filter(k_dx: torch.Tensor, l_dy: torch.Tensor, filterfac: float) -> torch.Tensor:
        """Return pyqg's filter ``exp(-filterfac (wvx - 0.65 pi)^4)`` above the cutoff, else 1, shape ``(ny, nk)``."""
        wvx = torch.sqrt(k_dx**2 + l_dy**2)
        damped = torch.exp(-filterfac * (wvx - FILTER_CUTOFF) ** 4)
        return torch.where(wvx > FILTER_CUTOFF, damped, torch.ones_like(wvx))

    # -- transforms -----------------------------------------------------------
    def to_spectral(self, values: torch.Tensor) -> torch.Tensor:
        """Return ``rfft2`` of real fields ``(..., ny, nx)``, shape ``(..., ny, nx//2 + 1)``."""
        return torch.fft.rfft2(values)

    def to_grid(self, values_hat: torch.Tensor) -> torch.Tensor:
        """Return the real fields ``(..., ny, nx)`` of half-spectra ``(..., ny, nx//2 + 1)``."""
        return torch.fft.irfft2(values_hat, s=self.shape)

    # -- inversion ------------------------------------------------------------
    def streamfunction(self, q_hat: torch.Tensor) -> torch.Tensor:
        """Return ``psi_hat`` (m^2/s) of ``q_hat`` ``(..., 2, ny, nk)`` (1/s), same shape."""
        a = self.inversion
        q1, q2 = q_hat[..., 0, :, :], q_hat[..., 1, :, :]
        return torch.stack([a[0, 0] * q1 + a[0, 1] * q2, a[1, 0] * q1 + a[1, 1] * q2], dim=-3)

    def potential_vorticity(self, psi_hat: torch.Tensor) -> torch.Tensor:
        """Return ``q_hat`` of ``psi_hat`` ``(..., 2, ny, nk)``, the inverse of :meth:`streamfunction` for ``K != 0``."""
        f1, f2 = self.params.F1, self.params.F2
        psi1, psi2 = psi_hat[..., 0, :, :], psi_hat[..., 1, :, :]
        q1 = -(self.wv2 + f1) * psi1 + f1 * psi2
        q2 = f2 * psi1 - (self.wv2 + f2) * psi2
        return torch.stack([q1, q2], dim=-3)

    def velocity(self, psi_hat: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Return the eddy velocities ``u = -psi_y`` and ``v = psi_x`` on the grid, in m/s, shape ``(..., 2, ny, nx)``."""
        return self.to_grid(-self.il * psi_hat), self.to_grid(self.ik * psi_hat)

    # -- tendency -------------------------------------------------------------
    def tendency(self, q_hat: torch.Tensor) -> torch.Tensor:
        """Return ``dq_hat/dt`` (1/s^2) of ``q_hat`` ``(B, 2, ny, nk)`` without the filter, as pyqg computes it."""
        q = self.to_grid(q_hat)
        psi_hat = self.streamfunction(q_hat)
        u, v = self.velocity(psi_hat)
        zonal_flux_hat = self.to_spectral((u + self.background_flow) * q)
        meridional_flux_hat = self.to_spectral(v * q)
        dq_hat = -(self.ik * zonal_flux_hat + self.il * meridional_flux_hat + self.ik_qy * psi_hat)

        drag = torch.zeros_like(dq_hat)
        drag[:, -1] = self.params.rek * self.wv2 * psi_hat[:, -1]
        return dq_hat + drag


class AdamsBashforth3:
    """pyqg's time stepper: forward Euler, then AB2, then AB3, with the filter after each step.

    ``q_hat_new = filter * (q_hat + dt * sum_j w_j tendency_j)`` where the weights ``w_j``
    are those of ``ADAMS_BASHFORTH_WEIGHTS`` for the number of tendencies known. The
    stepper keeps the last two tendencies (newest first) in ``previous_tendencies``; a
    new stepper starts again with forward Euler, as a fresh pyqg model does.
    """

    def __init__(self, operators: QGSpectralOperators, dt: float, apply_filter: bool = True):
        self.operators = operators
        self.dt = dt
        self.apply_filter = apply_filter
        self.previous_tendencies: list[torch.Tensor] = []

    def step(self, q_hat: torch.Tensor) -> torch.Tensor:
        """Return ``q_hat`` ``(B, 2, ny, nk)`` one step ``dt`` later and remember its tendency."""
        tendencies = [self.operators.tendency(q_hat), *self.previous_tendencies]
        weights = ADAMS_BASHFORTH_WEIGHTS[len(tendencies)]
        q_hat_new = q_hat
        for weight, tendency in zip(weights, tendencies):
            q_hat_new = q_hat_new + (weight * self.dt) * tendency
        if self.apply_filter:
            q_hat_new = self.operators.spectral_filter * q_hat_new
        self.previous_tendencies = tendencies[:2]
        return q_hat_new


class TwoLayerQG(System):
    """Two-layer QG turbulence with pyqg's numerics, batched, in the dtype and device of the input.

    State and field: ``(2, nx, nx)``, PV anomalies ``q1, q2`` in 1/s, upper layer first,
    indexed ``[layer, y, x]``.

    Each :meth:`advance` call starts the Adams–Bashforth scheme again (forward Euler, AB2,
    then AB3), as a fresh pyqg model started from ``q`` does, because the state contains no
    past tendencies. Integrations longer than two steps run AB3 from the third step on.
    :meth:`rollout` keeps the AB3 history across emulator intervals.

    The default ``emulator_interval`` of 1 day (12 steps) changes ``q`` by about 9% (rms
    difference over rms) per emulator step. The largest Lyapunov exponent is about 0.033
    per day, so the Lyapunov time is about 30 days, i.e. 30 emulator steps. Both are
    estimates from the default configuration at equilibrium, measured on 8 states 100
    days apart (twin runs started 1e-12 apart, log of the rms difference fitted over
    days 20-160; a 12 h interval gives 4.4% and 48 h gives 17.5%).
    """

    name: ClassVar[str] = "qg"
    Params: ClassVar[type[SystemParams]] = QGParams
    channels: ClassVar[tuple[str, ...]] = ("q1", "q2")
    measure_name: ClassVar[str] = "enstrophy"

    def __init__(self, params: QGParams | None = None, **overrides):
        super().__init__(params, **overrides)
        self._operators: dict[tuple[torch.device, torch.dtype], QGSpectralOperators] = {}
        self._spun_up: torch.Tensor | None = None

    # -- geometry -------------------------------------------------------------
    @property
    def state_shape(self) -> tuple[int, ...]:
        return (2, self.params.nx, self.params.nx)

    @property
    def field_shape(self) -> tuple[int, ...]:
        return self.state_shape

    @property
    def emulator_interval(self) -> float:
        return self.params.emulator_interval

    def operators(self, device: torch.device | str | None = None,
                  dtype: torch.dtype = torch.float64) -> QGSpectralOperators:
        """Return the spectral operators on ``device`` in ``dtype``, built once and cached."""
        key = (torch.device(device if device is not None else "cpu"), dtype)
        if key not in self._operators:
            self._operators[key] = QGSpectralOperators(self.params, key[0], dtype)
        return self._operators[key]

    def _check_states(self, state: torch.Tensor, label: str = "states") -> None:
        if state.ndim != 4 or tuple(state.shape[1:]) != self.state_shape:
            raise ValueError(f"expected {label} of shape (B, {', '.join(map(str, self.state_shape))}), "
                             f"got {tuple(state.shape)}")

    # -- integration ----------------------------------------------------------
    def courant_number(self, state: torch.Tensor) -> float:
        """Return pyqg's CFL number ``max(|u + U|, |v|) dt / dx`` of the states ``(B, 2, ny, nx)``."""
        operators = self.operators(state.device, state.dtype)
        u, v = operators.velocity(operators.streamfunction(operators.to_spectral(state)))
        speed = torch.maximum((u + operators.background_flow).abs().amax(), v.abs().amax())
        return float(speed) * self.params.dt / (self.params.L / self.params.nx)

    def _run(self, q_hat: torch.Tensor, steps: int, stepper: AdamsBashforth3) -> torch.Tensor:
        for _ in range(steps):
            q_hat = stepper.step(q_hat)
        return q_hat

    def _start(self, state: torch.Tensor) -> tuple[torch.Tensor, AdamsBashforth3]:
        self._check_states(state)
        courant = self.courant_number(state)
        if not math.isfinite(courant):
            raise ValueError("the states contain non-finite values (NaN or inf); pass finite PV fields")
        if courant >= 1.0:
            raise ValueError(
                f"the CFL number is {courant:.3g} with dt = {self.params.dt} s, but the scheme needs it < 1; "
                f"use dt <= {0.5 * self.params.dt / courant:.4g} s"
            )
        operators = self.operators(state.device, state.dtype)
        return operators.to_spectral(state), AdamsBashforth3(operators, self.params.dt)

    def advance(self, state: torch.Tensor, duration: float) -> torch.Tensor:
        """Integrate ``q`` of shape ``(B, 2, ny, nx)`` forward by ``duration`` seconds, rounded to whole steps ``dt``.

        Raises ValueError when ``state`` is not finite or its CFL number is 1 or more.
        """
        if duration < 0:
            raise ValueError(f"duration = {duration} s is negative: the solver only integrates forward")
        q_hat, stepper = self._start(state)
        q_hat = self._run(q_hat, steps_in(duration, self.params.dt), stepper)
        return stepper.operators.to_grid(q_hat)

    def rollout(self, state: torch.Tensor, intervals: int, interval: float | None = None) -> torch.Tensor:
        """Return snapshots ``(B, intervals + 1, 2, ny, nx)`` every ``interval`` seconds of one continuous run.

        Unlike repeated :meth:`advance` calls, the Adams–Bashforth history carries across
        snapshots, so the run restarts with forward Euler only once. ``interval`` defaults
        to ``emulator_interval`` and is rounded to whole steps ``dt``.
        """
        interval = self.emulator_interval if interval is None else interval
        steps = steps_in(interval, self.params.dt)
        if intervals < 0:
            raise ValueError(f"intervals = {intervals} is negative: request 0 or more snapshots after the first")
        if steps < 1:
            raise ValueError(f"interval = {interval} s rounds to zero steps: use at least dt = {self.params.dt} s")
        q_hat, stepper = self._start(state)
        snapshots = [state]
        for _ in range(intervals):
            q_hat = self._run(q_hat, steps, stepper)
            snapshots.append(stepper.operators.to_grid(q_hat))
        return torch.stack(snapshots, dim=1)

    def trajectory(self, state: torch.Tensor) -> Iterator[torch.Tensor]:
        """Yield the states after each emulator interval of one continuous run, as :meth:`rollout` does."""
        q_hat, stepper = self._start(state)
        steps = steps_in(self.emulator_interval, self.params.dt)
        while True:
            q_hat = self._run(q_hat, steps, stepper)
            yield stepper.operators.to_grid(q_hat)

    # -- initial states -------------------------------------------------------
    def random_initial_state(self, batch: int, seed: int) -> torch.Tensor:
        """Draw pyqg's random start ``(batch, 2, ny, nx)``, float64 on the CPU.

        As in pyqg's ``QGModel``: ``q1 = 1e-7 r(y, x) + 1e-6 r(x)`` with ``r`` uniform on
        [0, 1), and ``q2 = 0``. It takes years of model time to reach the attractor.
        """
        generator = torch.Generator().manual_seed(seed)
        nx = self.params.nx
        small_scale = torch.rand(batch, nx, nx, generator=generator, dtype=torch.float64)
        zonal_profile = torch.rand(batch, 1, nx, generator=generator, dtype=torch.float64)
        q1 = 1e-7 * small_scale + 1e-6 * zonal_profile.expand(batch, nx, nx)
        return torch.stack([q1, torch.zeros_like(q1)], dim=1)

    def spin_up(self, batch: int, seed: int, duration: float = SPINUP_DURATION,
                device: torch.device | str | None = None) -> torch.Tensor:
        """Integrate pyqg's random start for ``duration`` seconds; return float64 states ``(batch, 2, ny, nx)``.

        The default 10 years are 43 200 steps: 27 s at batch 1 on one CPU core (measured
        for the default grid).
        """
        state = self.random_initial_state(batch, seed).to(device)
        logger.info("spinning up %d QG states for %.1f model years (%d steps)",
                    batch, duration / SECONDS_PER_YEAR, steps_in(duration, self.params.dt))
        return self.advance(state, duration)

    def initial_state(self, batch: int, seed: int, device: torch.device | str | None = None,
                      dtype: torch.dtype = torch.float64) -> torch.Tensor:
        """Return ``batch`` states ``(batch, 2, ny, nx)`` on the attractor, decorrelated across seeds.

        Each state is the stored spun-up state plus white noise of 30% of each layer's rms,
        integrated for ``DECORRELATION_DURATION`` (200 days, about 7 Lyapunov times). The
        noise is drawn on the CPU from ``seed``, one sample after the other, so sample ``i``
        starts from the same noise for any ``batch`` and device. In a measurement on 6
        samples, the correlation between the streamfunctions of two samples fell from 0.8
        to about 0.05 in 180 days.

        For parameters without a stored state, :meth:`spin_up` first makes one with
        ``SPINUP_DURATION`` (seed 0) and keeps it for later calls on this instance.
        """
        base = load_spinup_state(self.params)
        if base is None:
            if self._spun_up is None:
                logger.warning("no stored spun-up QG state matches these parameters, so one is spun up now")
                self._spun_up = self.spin_up(1, seed=0, device=device)[0].cpu()
            base = self._spun_up
        generator = torch.Generator().manual_seed(seed)
        # One draw per sample, so that sample i gets the same noise for any batch size.
        noise = torch.stack([torch.randn(self.state_shape, generator=generator, dtype=torch.float64)
                             for _ in range(batch)])
        layer_rms = base.pow(2).mean(dim=(-2, -1), keepdim=True).sqrt()
        state = base + PERTURBATION_AMPLITUDE * layer_rms * noise
        return self.advance(state.to(device=device, dtype=dtype), DECORRELATION_DURATION)

    # -- diagnostics ----------------------------------------------------------
    def measure(self, field: torch.Tensor) -> torch.Tensor:
        """Return the depth-weighted enstrophy ``0.5 mean(H1 q1^2 + H2 q2^2) / H`` (1/s^2), shape ``(B,)``."""
        self._check_states(field, "fields")
        fractions = self.operators(field.device, field.dtype).layer_fractions
        layer_means = field.pow(2).mean(dim=(-2, -1))
        return 0.5 * (layer_means * fractions).sum(dim=-1)

    def mode_kinetic_energy(self, field: torch.Tensor) -> torch.Tensor:
        """Return the kinetic energy of each half-spectrum mode ``(B, ny, nx//2 + 1)``, in m^2/s^2.

        ``0.5 sum_i (H_i/H) |K|^2 |psi_i_hat|^2 / M^2`` with ``M = nx ny``, counted twice
        in the columns ``0 < k < nx/2`` because each also represents its complex conjugate. Its sum is the domain-mean kinetic energy per unit mass.
        """
        self._check_states(field, "fields")
        operators = self.operators(field.device, field.dtype)
        psi_hat = operators.streamfunction(operators.to_spectral(field))
        fractions = operators.layer_fractions[:, None, None]
        energy = 0.5 * (fractions * operators.wv2 * psi_hat.abs().pow(2)).sum(dim=-3) / field[0, 0].numel() ** 2
        conjugate_count = torch.full_like(operators.wv2, 2.0)
        conjugate_count[:, 0] = 1.0
        conjugate_count[:, -1] = 1.0
        return energy * conjugate_count

    def kinetic_energy(self, field: torch.Tensor) -> torch.Tensor:
        """Return the depth-weighted domain-mean kinetic energy per unit mass (m^2/s^2), shape ``(B,)``."""
        return self.mode_kinetic_energy(field).sum(dim=(-2, -1))

    def _shell_index(self, device: torch.device, dtype: torch.dtype) -> torch.Tensor:
        """Return each mode's shell ``round(|K| / dk)``, ``dk = 2 pi / L``, shape ``(ny, nk)``, int64."""
        operators = self.operators(device, dtype)
        fundamental = 2 * math.pi / self.params.L
        return torch.round(operators.wv2.sqrt() / fundamental).long()

    def energy_spectrum(self, field: torch.Tensor) -> torch.Tensor:
        """Return the isotropic kinetic-energy spectrum of ``field`` ``(B, 2, ny, nx)``, shape ``(B, nx/2)``, in m^2/s^2.

        Shell ``n = 1 .. nx/2`` contains the energy of :meth:`mode_kinetic_energy` summed
        over the modes with ``(n - 1/2) dk <= |K| < (n + 1/2) dk``, ``dk = 2 pi / L``.
        The sum over shells is the domain-mean kinetic energy per unit mass of all modes
        with ``|K| < (nx/2 + 1/2) dk``. The corner modes beyond are left out: in the true
        dynamics the filter keeps their share below 1e-16 (measured on the stored state).
        """
        energy = self.mode_kinetic_energy(field).flatten(start_dim=1)
        shells = self._shell_index(field.device, field.dtype).flatten()
        spectrum = torch.zeros(field.shape[0], self.params.nx // 2 + 1, device=field.device, dtype=field.dtype)
        inside = shells <= self.params.nx // 2
        spectrum.index_add_(1, shells[inside], energy[:, inside])
        return spectrum[:, 1:]

    @property
    def wavenumbers(self) -> torch.Tensor:
        """Shell centres ``n 2 pi / L`` for ``n = 1 .. nx/2``, in 1/m, shape ``(nx/2,)``, float64."""
        shells = torch.arange(1, self.params.nx // 2 + 1, dtype=torch.float64)
        return shells * (2 * math.pi / self.params.L)


# -- stored spun-up state ------------------------------------------------------
def spinup_path() -> Path:
    """Return the path of the packaged spun-up state of the default configuration."""
    return Path(str(resources.files("thermalizer_core.systems"))) / SPINUP_FILE


def load_spinup_state(params: QGParams, path: Path | None = None) -> torch.Tensor | None:
    """Return the stored spun-up state ``(2, ny, nx)``, float64 on the CPU, or None.

    None is returned when the file is missing or was made with other dynamics parameters
    (all but ``emulator_interval`` must match).
    """
    path = spinup_path() if path is None else path
    if not path.is_file():
        return None
    with safe_open(str(path), framework="pt") as stored:
        stored_params = json.loads(stored.metadata()["params"])
    if stored_params != params.dynamics():
        return None
    return load_file(str(path))["q"]


def write_spinup_state(path: Path | None = None, seed: int = 0, duration: float = SPINUP_DURATION) -> Path:
    """Spin up one state of the default configuration from pyqg's random start and store it.

    Writes ``q`` ``(2, ny, nx)`` float64 to a safetensors file with the dynamics
    parameters as JSON metadata, and returns the path. The packaged file was made with
    the defaults (seed 0, 10 model years)::

        python -c "from thermalizer_core.systems.qg import write_spinup_state; write_spinup_state()"
    """
    path = spinup_path() if path is None else path
    system = TwoLayerQG()
    state = system.spin_up(1, seed, duration)[0].contiguous()
    metadata = {"params": json.dumps(system.params.dynamics()), "seed": str(seed), "duration_s": str(duration)}
    path.parent.mkdir(parents=True, exist_ok=True)
    save_file({"q": state}, str(path), metadata=metadata)
    logger.info("wrote the spun-up QG state to %s", path)
    return path
