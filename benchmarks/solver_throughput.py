"""Throughput of the true solvers: emulator intervals per second at several batch sizes, float64.

Each system runs with its default parameters through ``system.trajectory(state)``,
so multistep schemes keep their history across intervals as in the engine. The
batch is one state on the attractor (``initial_state(1)``) repeated with a
relative perturbation of 1e-6, because the cost of a step does not depend on the
state and spinning up 64 separate 2D states takes minutes. Each measurement runs
for at least ``--seconds`` and ``--min-intervals``, after one interval of
warm-up. Prints a Markdown table. Example::

    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/solver_throughput.py --batch 1 8 64
"""
from __future__ import annotations

import argparse
import sys
import time

import torch

from thermalizer_core.systems import SYSTEM_NAMES, get_system

from benchmark_environment import environment_line


def parse_arguments(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--systems", nargs="+", default=list(SYSTEM_NAMES), choices=SYSTEM_NAMES,
                        help="systems to time (default: all)")
    parser.add_argument("--batch", type=int, nargs="+", default=[1, 8, 64], help="batch sizes")
    parser.add_argument("--seconds", type=float, default=5.0, help="minimum timed seconds per measurement")
    parser.add_argument("--min-intervals", type=int, default=3, help="minimum timed intervals per measurement")
    parser.add_argument("--seed", type=int, default=0, help="seed of the initial state")
    parser.add_argument("--device", default="cpu", help="torch device (default cpu)")
    return parser.parse_args(argv)


def synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def intervals_per_second(system, base: torch.Tensor, batch: int, args) -> float:
    """Return the emulator intervals per second of ``system`` from ``batch`` copies of ``base``."""
    generator = torch.Generator().manual_seed(args.seed)
    perturbation = 1e-6 * base.abs().max() * torch.randn((batch, *base.shape[1:]), generator=generator,
                                                         dtype=torch.float64)
    state = base.repeat(batch, *[1] * (base.dim() - 1)) + perturbation.to(base.device)
    states = system.trajectory(state)
    next(states)
    device = base.device
    synchronize(device)
    intervals = 0
    started = time.perf_counter()
    while intervals < args.min_intervals or time.perf_counter() - started < args.seconds:
        next(states)
        intervals += 1
    synchronize(device)
    return intervals / (time.perf_counter() - started)


def describe_grid(system) -> str:
    params = system.params
    solver_grid = "x".join(str(n) for n in system.state_shape[-system.spatial_dims:])
    steps = round(system.emulator_interval / params.dt)
    return f"{solver_grid}, {steps} steps of dt {params.dt:g}"


def main(argv: list[str] | None = None) -> int:
    args = parse_arguments(argv)
    if min(args.batch) < 1 or args.min_intervals < 1:
        print("solver_throughput: error: batch sizes and --min-intervals must be at least 1", file=sys.stderr)
        return 2
    device = torch.device(args.device)
    print("## Solver throughput (float64)\n")
    print(f"Command: `{' '.join(['python', 'benchmarks/solver_throughput.py', *sys.argv[1:]])}`  ")
    print(f"Environment: {environment_line(args.device)}\n")
    print("| system | solver grid, steps per interval | " + " | ".join(f"batch {b} intervals/s" for b in args.batch)
          + " | " + " | ".join(f"batch {b} state-intervals/s" for b in args.batch) + " |")
    print("|---|---|" + "---|" * (2 * len(args.batch)))
    for name in args.systems:
        try:
            system = get_system(name)
            base = system.initial_state(1, seed=args.seed, device=device)
        except Exception as error:  # noqa: BLE001 -- a system still in development must not stop the others
            print(f"| {name} | not available: {type(error).__name__}: {error} |" + " |" * (2 * len(args.batch) - 1))
            continue
        rates = [intervals_per_second(system, base, batch, args) for batch in args.batch]
        print(f"| {name} | {describe_grid(system)} | " + " | ".join(f"{rate:.1f}" for rate in rates) + " | "
              + " | ".join(f"{rate * batch:.0f}" for rate, batch in zip(rates, args.batch)) + " |", flush=True)
    print("\nintervals/s: emulator intervals of the whole batch per second. state-intervals/s: the same times the "
          "batch size.")
    return 0


if __name__ == "__main__":
    sys.exit(main())
