"""Solvers, diagnostics, emulators, thermalizers and the rollout engine, with no UI."""

__version__ = "0.1.0"
