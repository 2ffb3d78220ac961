"""Common interface of the ground-truth systems.

Every system integrates a batch of states with a leading batch dimension, on the
device and in the dtype of the tensors it is given. The truth runs in float64 by
default. Emulators and thermalizers never see the solver's state directly: they
see a *field* on the emulator grid, of shape ``(B, C, *grid)``, produced by
:meth:`System.to_emulator_grid`.
"""
from __future__ import annotations

import abc
import dataclasses
import json
from importlib import resources
from typing import Any, ClassVar, Iterator

import torch


class InvalidParameterError(ValueError):
    """A system parameter has an unknown name or a value out of range."""


@dataclasses.dataclass(frozen=True)
class SystemParams:
    """Base of each system's parameter dataclass.

    Subclasses declare their fields with defaults and units in ``metadata``
    (``field(default=..., metadata={"units": "...", "doc": "..."})``) and check
    ranges in :meth:`validate`.
    """

    def validate(self) -> None:
        """Raise InvalidParameterError naming the first invalid value."""

    @classmethod
    def from_overrides(cls, overrides: dict[str, Any]) -> "SystemParams":
        """Build parameters from ``{name: value}``, casting each value to the field's type.

        Raises InvalidParameterError for an unknown name (listing the known ones)
        or a value that cannot be cast or is out of range.
        """
        fields = {f.name: f for f in dataclasses.fields(cls)}
        values = {}
        for name, value in overrides.items():
            if name not in fields:
                known = ", ".join(sorted(fields))
                raise InvalidParameterError(f"unknown parameter {name!r} for {cls.__name__}; known parameters: {known}")
            default = fields[name].default
            try:
                values[name] = type(default)(value)
            except (TypeError, ValueError) as error:
                raise InvalidParameterError(
                    f"invalid value {value!r} for parameter {name!r}: expected {type(default).__name__}"
                ) from error
        params = cls(**values)
        params.validate()
        return params

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


class System(abc.ABC):
    """A ground-truth PDE solver with the pieces the emulator pipeline needs.

    Subclasses set the class attributes and implement the abstract methods.
    Time is in the system's own unit (nondimensional for KS and Kolmogorov,
    seconds for QG).
    """

    name: ClassVar[str]
    Params: ClassVar[type[SystemParams]]
    #: Names of the field channels on the emulator grid, e.g. ``("vorticity",)``.
    channels: ClassVar[tuple[str, ...]]
    #: Name of the scalar tracked over time: ``"energy"`` (KS) or ``"enstrophy"`` (2D).
    measure_name: ClassVar[str]

    def __init__(self, params: SystemParams | None = None, **overrides: Any):
        if params is None:
            params = self.Params.from_overrides(overrides)
        elif overrides:
            raise TypeError("pass either params or keyword overrides, not both")
        params.validate()
        self.params = params

    # -- geometry -------------------------------------------------------------
    @property
    @abc.abstractmethod
    def state_shape(self) -> tuple[int, ...]:
        """Shape of one solver state, without the batch dimension."""

    @property
    @abc.abstractmethod
    def field_shape(self) -> tuple[int, ...]:
        """Shape ``(C, *grid)`` of one field on the emulator grid."""

    @property
    @abc.abstractmethod
    def emulator_interval(self) -> float:
        """Physical time between two emulator steps, in the system's time unit."""

    @property
    def spatial_dims(self) -> int:
        return len(self.field_shape) - 1

    # -- integration ----------------------------------------------------------
    @abc.abstractmethod
    def initial_state(self, batch: int, seed: int, device: torch.device | str | None = None,
                      dtype: torch.dtype = torch.float64) -> torch.Tensor:
        """Return ``batch`` states on the attractor, spun up from random states drawn with ``seed``.

        The result has shape ``(batch, *state_shape)`` and depends only on
        ``(batch, seed, params)`` for a given device.
        """

    @abc.abstractmethod
    def advance(self, state: torch.Tensor, duration: float) -> torch.Tensor:
        """Integrate ``state`` of shape ``(B, *state_shape)`` forward by ``duration``.

        ``duration`` is rounded to a whole number of solver steps ``dt``.
        """

    def trajectory(self, state: torch.Tensor) -> Iterator[torch.Tensor]:
        """Yield the states after 1, 2, 3, ... emulator intervals of one continuous run from ``state``.

        The default calls :meth:`advance` once per interval; a multistep scheme
        overrides it to carry its history across intervals.
        """
        while True:
            state = self.advance(state, self.emulator_interval)
            yield state

    def to_emulator_grid(self, state: torch.Tensor) -> torch.Tensor:
        """Map solver states ``(B, *state_shape)`` to fields ``(B, C, *grid)`` on the emulator grid."""
        return state.reshape(state.shape[0], *self.field_shape)

    # -- diagnostics on emulator-grid fields ----------------------------------
    @abc.abstractmethod
    def measure(self, field: torch.Tensor) -> torch.Tensor:
        """Return the scalar tracked over time (energy or enstrophy), shape ``(B,)``."""

    @abc.abstractmethod
    def energy_spectrum(self, field: torch.Tensor) -> torch.Tensor:
        """Return the energy spectrum of fields ``(B, C, *grid)``, shape ``(B, K)``, indexed by :attr:`wavenumbers`."""

    @property
    @abc.abstractmethod
    def wavenumbers(self) -> torch.Tensor:
        """Wavenumbers (shell centres in 2D) of :meth:`energy_spectrum`, shape ``(K,)``."""

    # -- reference statistics -------------------------------------------------
    def reference(self) -> dict[str, Any] | None:
        """Return the stored statistics of long true runs for the default parameters, or None.

        The file ``systems/reference/<name>.json`` is written by
        ``thermalizer calibrate``; it contains the stable-band thresholds and the
        time-mean spectrum. Statistics for non-default parameters are not
        stored, so None is returned for them.
        """
        if self.params != self.Params():
            return None
        path = resources.files("thermalizer_core.systems") / "reference" / f"{self.name}.json"
        if not path.is_file():
            return None
        return json.loads(path.read_text())

    def describe(self) -> dict[str, Any]:
        """Return the system's name, parameters and grid, for configs and file attributes."""
        return {
            "system": self.name,
            "params": self.params.to_dict(),
            "field_shape": list(self.field_shape),
            "state_shape": list(self.state_shape),
            "emulator_interval": self.emulator_interval,
            "channels": list(self.channels),
        }
