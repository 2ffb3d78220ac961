"""Stable horizon of the emulator alone against the thermalized emulator, over a batch of initial conditions.

The stable horizon and the exit reasons are those of
:mod:`thermalizer_core.stability` (non-finite, out of band, frozen, spectrum,
and the hard limit). Every run starts from the same ``--batch`` true initial
conditions (same ``--seed``) and runs for ``--steps`` emulator steps, or until
every trajectory has exited. ``--sweep`` runs the thermalized emulator for every
pair of ``--s-init-grid`` and ``--s-stop-grid`` with ``s_stop < s_init``.
Prints a Markdown table with the median and range of the horizon and the count
of each exit reason. Example::

    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/stable_horizon.py --system ks --steps 5000
"""
from __future__ import annotations

import argparse
import collections
import dataclasses
import statistics
import sys
import time

from thermalizer_core.engine import RolloutEngine, ThermalizerSettings
from thermalizer_core.models.catalog import load_pair
from thermalizer_core.stability import EXIT_REASONS

from benchmark_environment import environment_line

#: Steps between checks whether every trajectory has exited.
CHUNK_STEPS = 100
#: Steps between progress lines on standard error.
PROGRESS_STEPS = 1000
#: Minimum number of initial conditions, so that the median is worth reporting.
MIN_BATCH = 16


def parse_arguments(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--system", default="ks", help="pair name in the models folder (default ks)")
    parser.add_argument("--checkpoint", default=None, help="models folder (default: the shipped checkpoints)")
    parser.add_argument("--batch", type=int, default=MIN_BATCH, help=f"initial conditions (at least {MIN_BATCH})")
    parser.add_argument("--steps", type=int, default=1000, help="maximum emulator steps per run")
    parser.add_argument("--s-init", type=int, default=10, help="denoise above this predicted level")
    parser.add_argument("--s-stop", type=int, default=4, help="level where denoising stops")
    parser.add_argument("--classify-every", type=int, default=1, help="classify every this many steps")
    parser.add_argument("--hard-limit", type=int, default=None, help="stop a trajectory above this level")
    parser.add_argument("--forward-diffuse", action="store_true", help="noise to the predicted level first")
    parser.add_argument("--sigma", type=float, default=None,
                        help="emulator noise in normalized units (default: the checkpoint's)")
    parser.add_argument("--sweep", action="store_true", help="run every (s_init, s_stop) of the grids below")
    parser.add_argument("--s-init-grid", type=int, nargs="+", default=[10, 20, 30], help="s_init values of --sweep")
    parser.add_argument("--s-stop-grid", type=int, nargs="+", default=[0, 4], help="s_stop values of --sweep")
    parser.add_argument("--no-emulator", action="store_true", help="skip the emulator-only run")
    parser.add_argument("--seed", type=int, default=1000, help="seed of the initial conditions and the noise")
    parser.add_argument("--device", default="cpu", help="torch device (default cpu)")
    return parser.parse_args(argv)


def run_to_horizon(engine: RolloutEngine, name: str, steps: int, label: str) -> float:
    """Advance ``engine`` until ``steps`` or until every trajectory of run ``name`` has exited; return the wall time.

    Writes a progress line to standard error every ``PROGRESS_STEPS`` steps.
    """
    started = time.perf_counter()
    while engine.step_count < steps:
        engine.step(min(CHUNK_STEPS, steps - engine.step_count))
        stable = int(engine.runs[name].monitor.stable.sum())
        if engine.step_count % PROGRESS_STEPS == 0:
            print(f"{label}: step {engine.step_count}, {stable} of {engine.batch} stable, "
                  f"{time.perf_counter() - started:.0f} s", file=sys.stderr, flush=True)
        if stable == 0:
            break
    return time.perf_counter() - started


def table_row(label: str, engine: RolloutEngine, name: str, steps: int, wall_s: float) -> str:
    summary = engine.summary()["runs"][name]
    # A trajectory still stable when the run ended early has a horizon of at least `steps`.
    horizon = [step if reason is not None else steps
               for step, reason in zip(summary["stable_horizon"], summary["exit_reasons"])]
    counts = collections.Counter(reason or "stable" for reason in summary["exit_reasons"])
    reasons = " | ".join(str(counts.get(reason, 0)) for reason in ("stable", *EXIT_REASONS))
    thermalized = (f"{summary['thermalized_fraction']:.3f} | {summary['mean_denoising_steps']:.2f}"
                   if "thermalized_fraction" in summary else "- | -")
    return (f"| {label} | {engine.step_count} | {statistics.median(horizon):.0f} | {min(horizon)}-{max(horizon)} "
            f"| {reasons} | {thermalized} | {engine.step_count / wall_s:.1f} | {wall_s:.0f} |")


def thermalized_settings(args) -> list[ThermalizerSettings]:
    base = ThermalizerSettings(s_init=args.s_init, s_stop=args.s_stop, forward_diffuse=args.forward_diffuse,
                               hard_limit=args.hard_limit, emulator_sigma=args.sigma,
                               classify_every=args.classify_every)
    if not args.sweep:
        return [base]
    return [dataclasses.replace(base, s_init=s_init, s_stop=s_stop)
            for s_init in args.s_init_grid for s_stop in args.s_stop_grid if s_stop < s_init]


def main(argv: list[str] | None = None) -> int:
    args = parse_arguments(argv)
    if args.batch < MIN_BATCH or args.steps < 1:
        print(f"stable_horizon: error: expected --batch >= {MIN_BATCH} and --steps >= 1", file=sys.stderr)
        return 2
    pair = load_pair(args.system, args.checkpoint, device=args.device)
    grid = thermalized_settings(args)
    for settings in grid:
        settings.validate(pair.thermalizer.T)
    sigma = args.sigma if args.sigma is not None else pair.emulator.sigma
    print(f"## Stable horizon: {pair.system.name}, {args.batch} initial conditions (seed {args.seed}), "
          f"up to {args.steps} steps, emulator sigma {sigma}\n")
    print(f"Command: `{' '.join(['python', 'benchmarks/stable_horizon.py', *sys.argv[1:]])}`  ")
    print(f"Environment: {environment_line(args.device)}\n")
    print("| run | steps run | median horizon | range | stable | " + " | ".join(EXIT_REASONS)
          + " | thermalized fraction | mean denoising steps | steps/s | wall s |")
    print("|---|---|---|---|---|" + "---|" * len(EXIT_REASONS) + "---|---|---|---|")

    common = {"batch": args.batch, "seed": args.seed, "device": args.device}
    if not args.no_emulator:
        engine = RolloutEngine(pair.system, pair.emulator, None, runs=("emulator",), settings=grid[0], **common)
        wall_s = run_to_horizon(engine, "emulator", args.steps, "emulator alone")
        print(table_row("emulator alone", engine, "emulator", args.steps, wall_s), flush=True)
    for settings in grid:
        engine = RolloutEngine(pair.system, pair.emulator, pair.thermalizer, runs=("thermalized",),
                               settings=settings, **common)
        label = (f"thermalized s_init {settings.s_init}, s_stop {settings.s_stop}, k {settings.classify_every}"
                 + (f", hard limit {settings.hard_limit}" if settings.hard_limit is not None else "")
                 + (", forward diffuse" if settings.forward_diffuse else ""))
        wall_s = run_to_horizon(engine, "thermalized", args.steps, label)
        print(table_row(label, engine, "thermalized", args.steps, wall_s), flush=True)
    print("\nHorizon: first step at which a trajectory left the stable band; a trajectory still stable counts "
          "as the number of steps run. A run stops early once every trajectory has exited. "
          "k: the classifier runs every k steps.")
    return 0


if __name__ == "__main__":
    sys.exit(main())
