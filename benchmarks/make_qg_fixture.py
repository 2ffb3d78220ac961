"""Write pyqg reference trajectories for tests/test_qg.py.

pyqg 0.7.2 does not build in the project's environment: its kernel.pyx fails to compile
with Cython 3, and the C code from Cython 0.29 fails to compile against NumPy 2 headers.
This script therefore runs in a separate environment with NumPy 1.26 and Cython 0.29.
There pip installs pyFFTW only after building pyqg's kernel, so the kernel uses numpy.fft
(it warns "No pyfftw detected"). setuptools_scm gives pyqg's source its version; without
it pip rejects the 0.7.x sources and falls back to pyqg 0.4.0::

    python -m venv /tmp/pyqgenv
    /tmp/pyqgenv/bin/pip install "numpy<2" "cython<3" setuptools wheel setuptools_scm
    /tmp/pyqgenv/bin/pip install --no-build-isolation "pyqg==0.7.2" "numpy<2"
    OMP_NUM_THREADS=1 /tmp/pyqgenv/bin/python benchmarks/make_qg_fixture.py

For each configuration it spins pyqg up from its random start, then starts a fresh model
from the spun-up ``q`` (so the Adams–Bashforth start-up steps run again, as in
``TwoLayerQG.advance``) and stores ``q`` after the step counts in ``STEPS``. Output:
``tests/fixtures/qg_pyqg_<name>.npz`` with ``q0`` and ``q_<steps>``, float64
``(2, ny, nx)``, and the parameters as a JSON string ``params``.
"""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pyqg

SECONDS_PER_YEAR = 360 * 86400.0
#: Step counts after which ``q`` is stored: the Euler, AB2 and first AB3 steps, then a long AB3 run.
STEPS = (1, 2, 3, 300)
#: Parameters of each configuration (pyqg names) and how long it is spun up, in model years.
CONFIGURATIONS = {
    "default": ({}, 5.0),
    "variant": (
        dict(nx=32, L=5e5, beta=1.0e-11, rd=20000.0, delta=0.5, H1=800.0, U1=0.04, U2=-0.01,
             rek=1.0e-6, dt=3600.0, filterfac=18.4),
        1.0,
    ),
}
FIXTURE_DIR = Path(__file__).resolve().parents[1] / "tests" / "fixtures"


def spun_up_q(params: dict, years: float) -> np.ndarray:
    """Return pyqg's ``q`` after ``years`` from its random start with ``np.random.seed(0)``."""
    np.random.seed(0)
    model = pyqg.QGModel(log_level=0, tmax=years * SECONDS_PER_YEAR, tavestart=2 * years * SECONDS_PER_YEAR,
                         **params)
    model.run()
    return np.array(model.q)


def trajectory(params: dict, q0: np.ndarray) -> dict[str, np.ndarray]:
    """Return ``q`` of a fresh pyqg model started from ``q0`` after each count in ``STEPS``."""
    model = pyqg.QGModel(log_level=0, tavestart=1e30, **params)
    model.q = q0.copy()
    snapshots = {"q0": q0.copy()}
    for step in range(1, max(STEPS) + 1):
        model._step_forward()
        if step in STEPS:
            snapshots[f"q_{step}"] = np.array(model.q)
    return snapshots


def main() -> None:
    FIXTURE_DIR.mkdir(parents=True, exist_ok=True)
    for name, (params, years) in CONFIGURATIONS.items():
        q0 = spun_up_q(params, years)
        snapshots = trajectory(params, q0)
        path = FIXTURE_DIR / f"qg_pyqg_{name}.npz"
        np.savez_compressed(path, params=json.dumps(params), pyqg_version=pyqg.__version__, **snapshots)
        print(f"wrote {path}")


if __name__ == "__main__":
    main()
