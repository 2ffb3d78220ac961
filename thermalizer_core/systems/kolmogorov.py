"""Kolmogorov flow: forced 2D incompressible Navier–Stokes in vorticity form on ``[0, 2 pi)^2``.

    w_t + u . grad(w) = nu lap(w) - drag w + f,    f = curl F = -A k_f cos(k_f y),

with the body force ``F = (A sin(k_f y), 0)``, the stream function from ``lap(psi) = -w``
and the velocity ``u = psi_y``, ``v = -psi_x``. Fields are indexed ``[y, x]`` on the grid
``x_i = 2 pi i / n``, ``y_j = 2 pi j / n``.

Discretization: pseudo-spectral with the 2/3 rule (:func:`spectral.dealias_mask_2d`); the
retained modes form a Galerkin truncation that conserves energy and enstrophy when
``nu = drag = 0`` and ``A = 0``. Time stepping is the low-storage three-substep
Runge–Kutta/Crank–Nicolson scheme of Spalart, Moser & Rogers (1991, J. Comput. Phys.
96, 297): advection and forcing explicit (third-order RK), viscosity and drag implicit
(Crank–Nicolson on each substep). The combined scheme is second order in ``dt``; it is
third order when ``nu = drag = 0``. It costs three evaluations of the advection term per
step. :data:`MAX_COURANT` states the time-step limit.

Reynolds number: ``Re = sqrt(A) / nu`` with unit length scale (the domain is ``2 pi``),
so the defaults ``A = 1``, ``nu = 0.005`` give ``Re = 200``. The convention based on the
forcing scale, ``sqrt(A) k_f^{-3/2} / nu``, gives 25 at the defaults.

Resolution at the defaults (n = 128): in the stored attractor state the shell-summed
enstrophy spectrum falls 4.9 decades from its peak (shell 4) to shell 42 at the 2/3
cutoff, and the tests require more than 4 decades.
"""
from __future__ import annotations

import dataclasses
import logging
import math
from dataclasses import field
from importlib import resources
from pathlib import Path
from typing import ClassVar

import torch

from .base import InvalidParameterError, System, SystemParams
from .ks import check_whole_multiple, steps_in
from .spectral import (
    dealias_mask_2d,
    fourier_resample_2d,
    half_spectrum_weights_2d,
    isotropic_shell_spectrum,
    rfft2_wavenumbers,
)

logger = logging.getLogger(__name__)

#: Spalart, Moser & Rogers (1991) substep weights: explicit terms at the current and the
#: previous substep (gamma, zeta), Crank–Nicolson halves (alpha = beta).
SMR_GAMMA = (8 / 15, 5 / 12, 3 / 4)
SMR_ZETA = (0.0, -17 / 60, -5 / 12)
SMR_ALPHA = (4 / 15, 1 / 15, 1 / 6)
#: Largest allowed spectral Courant number ``C = dt * k_max * max(|u| + |v|)``, with ``k_max``
#: the largest retained wavenumber per direction (42 on the 128 grid). The linear stability
#: bound of the explicit RK3 stages is ``C <= sqrt(3)`` (about 2.0 with the implicit damping
#: of the corner modes), but the peak speed occurs in small regions only, so the flow
#: tolerates more. Measured at the default physics on 128 x 128 (2 runs of 300 time units
#: at dt = 0.01, then 50 time units at larger dt): dt = 0.01 peaks at C = 2.73; dt = 0.015
#: stays bounded with peaks of C = 3.43; dt = 0.0175 blows up within 5 time units and
#: dt = 0.02 within 2.5. 3.2 lies between the default's peaks and the failures.
MAX_COURANT = 3.2
#: Largest number of grid points (batch * n * n) integrated at once on the CPU.
CPU_CHUNK_POINTS = 16 * 128 * 128

#: Stored attractor state at the default parameters (vorticity on the 128 x 128 grid).
SPINUP_FILE = "kolmogorov_n128.safetensors"
#: Integration time (time units) of the stored state from a random start.
SPINUP_STORED_TIME = 400.0
#: Integration time of ``stored state + perturbation`` in :meth:`KolmogorovFlow.initial_state`:
#: about 7 Lyapunov times. Measured at the defaults on one CPU core: the largest Lyapunov
#: exponent is 0.47 +- 0.01 per time unit (4 twin pairs over 60 time units, renormalized
#: every time unit); the vorticity autocorrelation of one trajectory falls below 0.2 within
#: 5 time units; and 4 states from one call correlate with each other and with the stored
#: state as much as independent snapshots do (|r| < 0.3).
DECORRELATION_TIME = 15.0
#: Extra integration time in :meth:`KolmogorovFlow.initial_state` for non-default physics
#: (nu, drag, forcing), so the stored state can settle on the new attractor: 20 damping
#: times of the default drag.
ADJUSTMENT_TIME = 200.0
#: Relative rms of the seeded perturbation added to the stored state.
PERTURBATION_SIZE = 0.1


class CourantLimitError(RuntimeError):
    """The time step exceeds the stability limit of the explicit advection for the current flow."""


@dataclasses.dataclass(frozen=True)
class KolmogorovParams(SystemParams):
    """Parameters of Kolmogorov flow. Time and length are nondimensional (domain ``2 pi``)."""

    n: int = field(default=128, metadata={"units": "grid points", "doc": "solver grid size per direction (even)"})
    emulator_n: int = field(
        default=64, metadata={"units": "grid points", "doc": "emulator grid size per direction (even, <= n)"}
    )
    nu: float = field(default=0.005, metadata={"units": "length^2/time", "doc": "kinematic viscosity; Re = sqrt(A)/nu"})
    drag: float = field(default=0.1, metadata={"units": "1/time", "doc": "linear (Rayleigh) drag coefficient"})
    forcing_wavenumber: int = field(default=4, metadata={"units": "1/length", "doc": "k_f of the force A sin(k_f y)"})
    forcing_amplitude: float = field(default=1.0, metadata={"units": "length/time^2", "doc": "A of the force"})
    dt: float = field(default=0.01, metadata={"units": "time", "doc": "solver time step"})
    emulator_interval: float = field(
        default=0.06, metadata={"units": "time", "doc": "time between emulator steps, a whole multiple of dt"}
    )

    def validate(self) -> None:
        if self.n < 8 or self.n % 2:
            raise InvalidParameterError(f"n = {self.n} is invalid: the solver grid size must be even and >= 8")
        if self.emulator_n < 8 or self.emulator_n % 2 or self.emulator_n > self.n:
            raise InvalidParameterError(
                f"emulator_n = {self.emulator_n} is invalid: it must be even, >= 8 and <= n = {self.n}"
            )
        if not (self.nu >= 0 and math.isfinite(self.nu)):
            raise InvalidParameterError(f"nu = {self.nu} is invalid: the viscosity must be >= 0 and finite")
        if not (self.drag >= 0 and math.isfinite(self.drag)):
            raise InvalidParameterError(f"drag = {self.drag} is invalid: the drag must be >= 0 and finite")
        k_max = max_retained_wavenumber(self.n)
        if not (1 <= self.forcing_wavenumber <= k_max):
            raise InvalidParameterError(
                f"forcing_wavenumber = {self.forcing_wavenumber} is out of range: use 1..{k_max} "
                f"(the largest wavenumber the 2/3 rule keeps on an n = {self.n} grid)"
            )
        if not (self.forcing_amplitude >= 0 and math.isfinite(self.forcing_amplitude)):
            raise InvalidParameterError(
                f"forcing_amplitude = {self.forcing_amplitude} is invalid: it must be >= 0 and finite"
            )
        if not (0 < self.dt <= 0.1):
            raise InvalidParameterError(f"dt = {self.dt} is out of range: use 0 < dt <= 0.1")
        check_whole_multiple(self.emulator_interval, self.dt, "emulator_interval")


def max_retained_wavenumber(n: int) -> int:
    """Return the largest integer wavenumber per direction that the 2/3 rule keeps on an ``n`` grid."""
    return math.ceil(n / 3) - 1


def vorticity_to_velocity_hat(w_hat: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Return ``(u_hat, v_hat)`` from ``w_hat`` ``(..., n, n//2 + 1)`` on ``[0, 2 pi)^2`` (zero-mean velocity)."""
    n = w_hat.shape[-2]
    ky, kx = rfft2_wavenumbers(n, device=w_hat.device, dtype=w_hat.real.dtype)
    k2 = kx**2 + ky**2
    psi_hat = w_hat / torch.where(k2 == 0, torch.ones_like(k2), k2)
    psi_hat = psi_hat * (k2 != 0)
    return 1j * ky * psi_hat, -1j * kx * psi_hat


def kinetic_energy(vorticity: torch.Tensor) -> torch.Tensor:
    """Return ``E = 0.5 mean(|u|^2)`` of vorticity fields ``(..., n, n)``, shape ``(...)``."""
    n = vorticity.shape[-1]
    w_hat = torch.fft.rfft2(vorticity) / (n * n)
    ky, kx = rfft2_wavenumbers(n, device=vorticity.device, dtype=vorticity.dtype)
    k2 = kx**2 + ky**2
    inverse_k2 = torch.where(k2 == 0, torch.zeros_like(k2), 1 / torch.where(k2 == 0, torch.ones_like(k2), k2))
    weights = half_spectrum_weights_2d(n, device=vorticity.device, dtype=vorticity.dtype)
    return 0.5 * (weights * inverse_k2 * w_hat.abs().square()).sum(dim=(-2, -1))


def enstrophy(vorticity: torch.Tensor) -> torch.Tensor:
    """Return ``Z = 0.5 mean(w^2)`` of vorticity fields ``(..., n, n)``, shape ``(...)``."""
    return 0.5 * vorticity.square().mean(dim=(-2, -1))


class KolmogorovFlow(System):
    """Kolmogorov flow, batched pseudo-spectral RK3/CN solver in the dtype of the input (float64 by default).

    State: vorticity ``w[y, x]`` on the ``n x n`` solver grid, shape ``(n, n)``. Field: the
    vorticity Fourier-truncated to the ``emulator_n`` grid, shape ``(1, emulator_n, emulator_n)``.
    :meth:`advance` projects its input onto the modes that the 2/3 rule keeps, so outputs
    have no content beyond ``|k_x|, |k_y| <= k_max``.
    """

    name: ClassVar[str] = "kolmogorov"
    Params: ClassVar[type[SystemParams]] = KolmogorovParams
    channels: ClassVar[tuple[str, ...]] = ("vorticity",)
    measure_name: ClassVar[str] = "enstrophy"

    def __init__(self, params: KolmogorovParams | None = None, **overrides):
        super().__init__(params, **overrides)
        self._cache: dict[tuple, dict[str, torch.Tensor]] = {}

    # -- geometry -------------------------------------------------------------
    @property
    def state_shape(self) -> tuple[int, ...]:
        return (self.params.n, self.params.n)

    @property
    def field_shape(self) -> tuple[int, ...]:
        return (1, self.params.emulator_n, self.params.emulator_n)

    @property
    def emulator_interval(self) -> float:
        return self.params.emulator_interval

    @property
    def reynolds_number(self) -> float:
        """``Re = sqrt(A) / nu`` (unit length scale); infinite when ``nu = 0``."""
        p = self.params
        return math.sqrt(p.forcing_amplitude) / p.nu if p.nu > 0 else math.inf

    # -- integration ----------------------------------------------------------
    def _operators(self, device, dtype) -> dict[str, torch.Tensor]:
        """Build (once per device and dtype) the spectral operators on the ``(n, n//2 + 1)`` half-spectrum."""
        key = (torch.device(device), dtype)
        if key in self._cache:
            return self._cache[key]
        p = self.params
        n = p.n
        ky, kx = rfft2_wavenumbers(n, device=device, dtype=dtype)
        k2 = kx**2 + ky**2
        inverse_k2 = torch.where(k2 == 0, torch.zeros_like(k2), 1 / torch.where(k2 == 0, torch.ones_like(k2), k2))
        mask = dealias_mask_2d(n, device=device).to(dtype)
        # Spectral multipliers that turn w_hat into (u, v, w_x, w_y), stacked for one inverse FFT.
        gradients = torch.stack([1j * ky * inverse_k2, -1j * kx * inverse_k2, 1j * kx + 0 * ky, 1j * ky + 0 * kx])

        # Forcing f = -A k_f cos(k_f y), constant in x and time.
        y = torch.arange(n, device=device, dtype=dtype) * (2 * math.pi / n)
        forcing = -p.forcing_amplitude * p.forcing_wavenumber * torch.cos(p.forcing_wavenumber * y)
        forcing_hat = torch.fft.rfft2(forcing[:, None].expand(n, n)) * mask

        operators = {
            "linear": -(p.nu * k2 + p.drag),
            "gradients": gradients,
            "mask": mask,
            "forcing_hat": forcing_hat,
        }
        self._cache[key] = operators
        return operators

    def _explicit_tendency(self, w_hat: torch.Tensor, ops: dict[str, torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
        """Return ``(-(u . grad w) + f)^hat`` dealiased, shape ``(B, n, n//2 + 1)``, and ``max(|u| + |v|)`` ``(B,)``."""
        n = self.params.n
        u, v, w_x, w_y = torch.fft.irfft2(w_hat[:, None] * ops["gradients"], s=(n, n)).unbind(dim=1)
        advection_hat = torch.fft.rfft2(u * w_x + v * w_y)
        speed = (u.abs() + v.abs()).amax(dim=(-2, -1))
        return ops["forcing_hat"] - ops["mask"] * advection_hat, speed

    def _step(self, w_hat: torch.Tensor, ops: dict[str, torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
        """Advance ``w_hat`` by one step ``dt`` (three SMR91 substeps); return it and the max speed seen."""
        dt = self.params.dt
        linear = ops["linear"]
        previous_tendency = None
        max_speed = None
        for gamma, zeta, alpha in zip(SMR_GAMMA, SMR_ZETA, SMR_ALPHA):
            tendency, speed = self._explicit_tendency(w_hat, ops)
            max_speed = speed if max_speed is None else torch.maximum(max_speed, speed)
            explicit = gamma * tendency
            if previous_tendency is not None:
                explicit = explicit + zeta * previous_tendency
            # Crank–Nicolson over the substep, alpha = beta: (1 - alpha dt L) w' = (1 + alpha dt L) w + dt * explicit.
            w_hat = ((1 + alpha * dt * linear) * w_hat + dt * explicit) / (1 - alpha * dt * linear)
            previous_tendency = tendency
        return w_hat, max_speed

    def stable_dt(self, max_speed: float) -> float:
        """Return the largest stable ``dt`` for a flow with ``max(|u| + |v|) = max_speed``."""
        return MAX_COURANT / (max_retained_wavenumber(self.params.n) * max_speed)

    def _check_courant(self, max_speed: torch.Tensor) -> None:
        peak = float(max_speed.max())
        if not math.isfinite(peak):
            raise CourantLimitError(
                f"the velocity is not finite (max(|u| + |v|) = {peak}): the input was not finite or the run "
                f"blew up; lower dt = {self.params.dt}"
            )
        courant = self.params.dt * max_retained_wavenumber(self.params.n) * peak
        if courant > MAX_COURANT:
            raise CourantLimitError(
                f"time step dt = {self.params.dt} exceeds the stable step {self.stable_dt(peak):.4g} "
                f"for max(|u| + |v|) = {peak:.4g} (spectral Courant number {courant:.3g} > {MAX_COURANT:.3g}); "
                f"lower dt"
            )

    def advance(self, state: torch.Tensor, duration: float) -> torch.Tensor:
        """Integrate vorticity ``(B, n, n)`` forward by ``duration``, rounded to whole steps ``dt``.

        On the CPU the batch is integrated in chunks of at most :data:`CPU_CHUNK_POINTS`
        grid points, which keeps the FFT buffers small: at batch 64 on 128 x 128 this is
        several times faster than one call. Samples are independent, so chunking does not
        change the result.

        Raises CourantLimitError when the spectral Courant number exceeds :data:`MAX_COURANT`,
        checked on the input and, after the run, on every substep.
        """
        n = self.params.n
        if state.ndim != 3 or state.shape[-2:] != (n, n):
            raise ValueError(f"expected vorticity of shape (B, {n}, {n}), got {tuple(state.shape)}")
        if duration < 0:
            raise ValueError(f"duration = {duration} is negative: the solver only integrates forward")
        steps = steps_in(duration, self.params.dt)
        if state.device.type != "cpu":
            return self._advance_chunk(state, steps)
        chunk = max(1, CPU_CHUNK_POINTS // (n * n))
        return torch.cat([self._advance_chunk(part, steps) for part in state.split(chunk)])

    def _advance_chunk(self, state: torch.Tensor, steps: int) -> torch.Tensor:
        n = self.params.n
        ops = self._operators(state.device, state.dtype)
        w_hat = torch.fft.rfft2(state) * ops["mask"]
        if steps == 0:
            return torch.fft.irfft2(w_hat, s=(n, n))

        u, v = self.velocity(torch.fft.irfft2(w_hat, s=(n, n))).unbind(dim=1)
        self._check_courant((u.abs() + v.abs()).amax(dim=(-2, -1)))

        max_speed = torch.zeros(state.shape[0], device=state.device, dtype=state.dtype)
        for _ in range(steps):
            w_hat, speed = self._step(w_hat, ops)
            max_speed = torch.maximum(max_speed, speed)
        self._check_courant(max_speed)
        return torch.fft.irfft2(w_hat, s=(n, n))

    def velocity(self, vorticity: torch.Tensor) -> torch.Tensor:
        """Return the velocity ``(B, 2, n, n)`` (channels ``u``, ``v``) of vorticity ``(B, n, n)`` on any square grid."""
        n = vorticity.shape[-1]
        u_hat, v_hat = vorticity_to_velocity_hat(torch.fft.rfft2(vorticity))
        return torch.fft.irfft2(torch.stack([u_hat, v_hat], dim=1), s=(n, n))

    def forcing_work(self, vorticity: torch.Tensor) -> torch.Tensor:
        """Return the power input ``mean(u . F) = mean(u A sin(k_f y))`` of vorticity ``(B, n, n)``, shape ``(B,)``."""
        p = self.params
        n = vorticity.shape[-1]
        y = torch.arange(n, device=vorticity.device, dtype=vorticity.dtype) * (2 * math.pi / n)
        force_x = p.forcing_amplitude * torch.sin(p.forcing_wavenumber * y)[:, None]
        return (self.velocity(vorticity)[:, 0] * force_x).mean(dim=(-2, -1))

    def to_emulator_grid(self, state: torch.Tensor) -> torch.Tensor:
        """Fourier-truncate vorticity ``(B, n, n)`` to fields ``(B, 1, emulator_n, emulator_n)``."""
        return fourier_resample_2d(state, self.params.emulator_n)[:, None]

    # -- initial states -------------------------------------------------------
    def random_state(self, batch: int, seed: int) -> torch.Tensor:
        """Draw vorticity ``(batch, n, n)``, float64 on the CPU, with random phases in the shells ``1 <= |k| <= 8``.

        The rms vorticity is 1. Values come from ``torch.Generator().manual_seed(seed)``.
        """
        n = self.params.n
        generator = torch.Generator().manual_seed(seed)
        noise = torch.randn(batch, n, n, generator=generator, dtype=torch.float64)
        ky, kx = rfft2_wavenumbers(n)
        band = ((kx**2 + ky**2) >= 1) & ((kx**2 + ky**2) <= 64)
        vorticity = torch.fft.irfft2(torch.fft.rfft2(noise) * band, s=(n, n))
        return vorticity / vorticity.square().mean(dim=(-2, -1), keepdim=True).sqrt()

    def initial_state(self, batch: int, seed: int, device=None, dtype: torch.dtype = torch.float64) -> torch.Tensor:
        """Return ``batch`` vorticity states ``(batch, n, n)`` on the attractor.

        Each state is the stored attractor state (:data:`SPINUP_FILE`, resampled to ``n`` if
        needed) plus a seeded perturbation of relative rms :data:`PERTURBATION_SIZE` from
        :meth:`random_state`, integrated in float64 on ``device`` for
        :data:`DECORRELATION_TIME` (about 7 Lyapunov times), so distinct seeds and batch
        members give decorrelated states. For non-default ``nu``, ``drag`` or forcing the
        integration is :data:`ADJUSTMENT_TIME` longer. The result is cast to ``dtype``.
        """
        if batch < 1:
            raise ValueError(f"batch = {batch} must be at least 1")
        base = fourier_resample_2d(load_spinup_state(), self.params.n)
        perturbation = self.random_state(batch, seed)
        base_rms = base.square().mean().sqrt()
        state = (base + PERTURBATION_SIZE * base_rms * perturbation).to(device)

        duration = DECORRELATION_TIME
        if not self._has_default_physics():
            duration += ADJUSTMENT_TIME
        logger.info("integrating %d Kolmogorov states for %g time units from the stored attractor state",
                    batch, duration)
        return self.advance(state, duration).to(dtype)

    def _has_default_physics(self) -> bool:
        defaults = KolmogorovParams()
        names = ("nu", "drag", "forcing_wavenumber", "forcing_amplitude")
        return all(getattr(self.params, name) == getattr(defaults, name) for name in names)

    # -- diagnostics ----------------------------------------------------------
    def measure(self, field: torch.Tensor) -> torch.Tensor:
        """Return the enstrophy ``0.5 mean(w^2)`` of fields ``(B, 1, m, m)``, shape ``(B,)``."""
        return enstrophy(field[:, 0])

    def energy_spectrum(self, field: torch.Tensor) -> torch.Tensor:
        """Return the shell-binned kinetic-energy spectrum of fields ``(B, 1, m, m)``, shape ``(B, emulator_n/2)``.

        ``E(k) = sum over modes with k - 1/2 <= |k_vec| < k + 1/2 of 0.5 |w_hat|^2 / |k_vec|^2``
        with ``w_hat = rfft2(w) / m^2``, for shells ``k = 1..emulator_n/2``. The shells sum to
        ``0.5 mean(|u|^2)`` except for the modes beyond ``|k| = emulator_n/2 + 1/2`` in the
        grid's corners (5e-7 of the energy in the stored attractor state at the defaults).
        """
        m = field.shape[-1]
        w_hat = torch.fft.rfft2(field[:, 0]) / (m * m)
        ky, kx = rfft2_wavenumbers(m, device=field.device, dtype=field.dtype)
        k2 = kx**2 + ky**2
        density = 0.5 * w_hat.abs().square() / torch.where(k2 == 0, torch.ones_like(k2), k2)
        return isotropic_shell_spectrum(density, self.params.emulator_n // 2)

    @property
    def wavenumbers(self) -> torch.Tensor:
        """Shell centres ``k = 1..emulator_n/2``, shape ``(emulator_n/2,)``, float64."""
        return torch.arange(1, self.params.emulator_n // 2 + 1, dtype=torch.float64)


# -- stored attractor state ---------------------------------------------------
def spinup_path() -> Path:
    """Return the path of the stored attractor state inside the package."""
    return Path(str(resources.files("thermalizer_core.systems") / "spinup" / SPINUP_FILE))


def load_spinup_state() -> torch.Tensor:
    """Load the stored attractor vorticity at the default parameters, shape ``(128, 128)``, float64."""
    from safetensors.torch import load_file

    path = spinup_path()
    if not path.is_file():
        raise FileNotFoundError(
            f"stored Kolmogorov attractor state {path} is missing; recreate it with "
            f"thermalizer_core.systems.kolmogorov.write_spinup_state()"
        )
    return load_file(str(path))["vorticity"]


def write_spinup_state(path: Path | None = None, seed: int = 0, duration: float = SPINUP_STORED_TIME) -> Path:
    """Integrate a random state at the default parameters for ``duration`` and store it as safetensors.

    Takes a few minutes on one CPU core (40,000 steps on the 128 x 128 grid). The file
    contains the float64 vorticity ``(n, n)`` under the key ``"vorticity"`` and the seed and
    duration in its metadata.
    """
    from safetensors.torch import save_file

    system = KolmogorovFlow()
    state = system.random_state(1, seed)
    state = system.advance(state, duration)[0].contiguous()
    path = spinup_path() if path is None else Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    save_file({"vorticity": state}, str(path), metadata={"seed": str(seed), "duration": str(duration)})
    logger.info("stored Kolmogorov attractor state at %s (enstrophy %.4g)", path, float(enstrophy(state)))
    return path
