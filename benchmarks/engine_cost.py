"""Cost of the rollout engine: overhead over its networks, thermalized against emulator-only, emulator against solver.

Prints three Markdown tables:

(a) engine overhead: for one thermalized run, the wall time per step against the
    time of the network evaluations it makes (the engine's own timers,
    ``runs["thermalized"].timer``). ``total_s`` covers the emulator, the
    classifier, denoising and the stability checks; the wall time of
    ``engine.step()`` also covers the per-step records.
(b) thermalized throughput as a cost ratio to the emulator alone (no classifier),
    with the classifier run every k steps, and the stable horizon each run
    reached in the same steps.
(c) emulator steps against solver intervals per second, at the same batch.

The engines compared in a table advance in interleaved chunks in one process, so
load from other processes slows them alike. Read the ratios, not the absolute
rates. Example::

    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/engine_cost.py --system ks --batch 8 --steps 300
"""
from __future__ import annotations

import argparse
import collections
import dataclasses
import statistics
import sys
import time

import torch

from thermalizer_core.engine import RolloutEngine, ThermalizerSettings
from thermalizer_core.models.catalog import load_pair

from benchmark_environment import environment_line

#: Steps each engine advances before it is handed to the next one in part (b).
CHUNK_STEPS = 10


def parse_arguments(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--system", default="ks", help="pair name in the models folder (default ks)")
    parser.add_argument("--checkpoint", default=None, help="models folder (default: the shipped checkpoints)")
    parser.add_argument("--batch", type=int, default=8, help="trajectories per run")
    parser.add_argument("--steps", type=int, default=300, help="emulator steps per run in parts (a) and (b)")
    parser.add_argument("--warm-up", type=int, default=10, help="steps run and discarded before timing")
    parser.add_argument("--classify-every", type=int, nargs="+", default=[1, 2, 5, 10],
                        help="values of k for part (b)")
    parser.add_argument("--s-init", type=int, default=10, help="denoise above this predicted level")
    parser.add_argument("--s-stop", type=int, default=4, help="level where denoising stops")
    parser.add_argument("--sigma", type=float, default=None,
                        help="emulator noise in normalized units (default: the checkpoint's)")
    parser.add_argument("--solver-intervals", type=int, default=20, help="emulator intervals timed in part (c)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the initial states and the noise")
    parser.add_argument("--device", default="cpu", help="torch device (default cpu)")
    return parser.parse_args(argv)


def exit_counts(engine: RolloutEngine, name: str) -> str:
    counts = collections.Counter(reason or "stable" for _, reason in engine.exits(name))
    return ", ".join(f"{reason} {count}" for reason, count in sorted(counts.items()))


def measure_overhead(pair, args, settings: ThermalizerSettings) -> None:
    engine = RolloutEngine(pair.system, pair.emulator, pair.thermalizer, batch=args.batch, seed=args.seed,
                           device=args.device, runs=("thermalized",), settings=settings)
    engine.step(args.warm_up)
    engine.reset()
    started = time.perf_counter()
    engine.step(args.steps)
    wall_s = time.perf_counter() - started

    timer = engine.runs["thermalized"].timer
    summary = engine.summary()["runs"]["thermalized"]
    per_step_ms = 1e3 / args.steps
    print("### (a) Engine overhead over network time, thermalized run\n")
    print("| steps | wall ms/step | engine ms/step | network ms/step | engine overhead | wall overhead "
          "| network calls/step | sample evaluations/step | mean denoising steps | thermalized fraction |")
    print("|---|---|---|---|---|---|---|---|---|---|")
    print(f"| {args.steps} | {wall_s * per_step_ms:.2f} | {timer.total_s * per_step_ms:.2f} "
          f"| {timer.network_s * per_step_ms:.2f} | {timer.total_s / timer.network_s - 1:+.1%} "
          f"| {wall_s / timer.network_s - 1:+.1%} | {timer.network_calls / args.steps:.2f} "
          f"| {timer.sample_evaluations / args.steps:.1f} | {summary['mean_denoising_steps']:.2f} "
          f"| {summary['thermalized_fraction']:.3f} |")
    print("\nEngine overhead: timer.total_s / timer.network_s - 1. Wall overhead: the same with the wall time "
          "of engine.step(), which also writes the history rows.\n")


def measure_throughput(pair, args, settings: ThermalizerSettings) -> None:
    engines = {"emulator alone": RolloutEngine(pair.system, pair.emulator, None, batch=args.batch, seed=args.seed,
                                               device=args.device, runs=("emulator",), settings=settings)}
    for k in args.classify_every:
        engines[f"thermalized, k = {k}"] = RolloutEngine(
            pair.system, pair.emulator, pair.thermalizer, batch=args.batch, seed=args.seed, device=args.device,
            runs=("thermalized",), settings=dataclasses.replace(settings, classify_every=k))
    for engine in engines.values():
        engine.step(args.warm_up)
        engine.reset()
    wall_s = dict.fromkeys(engines, 0.0)
    for _ in range(0, args.steps, CHUNK_STEPS):
        for label, engine in engines.items():
            count = min(CHUNK_STEPS, args.steps - engine.step_count)
            started = time.perf_counter()
            engine.step(count)
            wall_s[label] += time.perf_counter() - started

    baseline = args.steps / wall_s["emulator alone"]
    print(f"### (b) Thermalized throughput against the emulator alone ({args.steps} steps each)\n")
    print("| run | steps/s | cost ratio | network calls/step | sample evaluations/step | mean denoising steps "
          "| thermalized fraction | median stable horizon | exits |")
    print("|---|---|---|---|---|---|---|---|---|")
    for label, engine in engines.items():
        name = engine.run_names[0]
        run = engine.summary()["runs"][name]
        rate = args.steps / wall_s[label]
        print(f"| {label} | {rate:.1f} | {baseline / rate:.2f} | {run['network_calls'] / args.steps:.2f} "
              f"| {run['sample_evaluations'] / args.steps:.1f} | {run.get('mean_denoising_steps', 0.0):.2f} "
              f"| {run.get('thermalized_fraction', 0.0):.3f} | {statistics.median(run['stable_horizon']):.0f} "
              f"| {exit_counts(engine, name)} |")
    print("\nCost ratio: wall time per step of the run over that of the emulator alone (goal: 3 or less). "
          "k: the classifier runs every k steps.\n")


@torch.no_grad()
def measure_emulator_against_solver(pair, args) -> None:
    system, emulator = pair.system, pair.emulator.to(args.device).eval()
    state = system.initial_state(args.batch, seed=args.seed, device=args.device)
    field = system.to_emulator_grid(state).float()
    generator = torch.Generator(device=args.device).manual_seed(args.seed)
    solver_states = system.trajectory(state)
    next(solver_states)
    emulator.step(field, generator=generator)
    solver_s = emulator_s = 0.0
    for _ in range(args.solver_intervals):
        started = time.perf_counter()
        next(solver_states)
        solver_s += time.perf_counter() - started
        started = time.perf_counter()
        field = emulator.step(field, generator=generator, sigma=args.sigma)
        emulator_s += time.perf_counter() - started

    solver_rate = args.solver_intervals / solver_s
    emulator_rate = args.solver_intervals / emulator_s
    print(f"### (c) Emulator against the solver, batch {args.batch}, interval {system.emulator_interval} "
          f"({args.solver_intervals} intervals)\n")
    print("| solver intervals/s (float64) | emulator steps/s (float32) | emulator speed-up |")
    print("|---|---|---|")
    print(f"| {solver_rate:.1f} | {emulator_rate:.1f} | {emulator_rate / solver_rate:.2f} |\n")


def main(argv: list[str] | None = None) -> int:
    args = parse_arguments(argv)
    for option in ("batch", "steps", "solver_intervals"):
        if getattr(args, option) < 1:
            print(f"engine_cost: error: --{option.replace('_', '-')} must be at least 1", file=sys.stderr)
            return 2
    pair = load_pair(args.system, args.checkpoint, device=args.device)
    settings = ThermalizerSettings(s_init=args.s_init, s_stop=args.s_stop, emulator_sigma=args.sigma)
    print(f"## Engine cost: {pair.system.name}, batch {args.batch}, s_init {args.s_init}, s_stop {args.s_stop}, "
          f"emulator sigma {args.sigma if args.sigma is not None else pair.emulator.sigma}\n")
    print(f"Command: `{' '.join(['python', 'benchmarks/engine_cost.py', *sys.argv[1:]])}`  ")
    print(f"Environment: {environment_line(args.device)}\n")
    measure_overhead(pair, args, settings)
    measure_throughput(pair, args, settings)
    measure_emulator_against_solver(pair, args)
    return 0


if __name__ == "__main__":
    sys.exit(main())
