"""Heterogeneous batched denoising against the per-member loop: same inputs, same outputs, time ratio.

Both paths denoise the same true fields, noised to mixed start levels, with the
thermalizer's eps head and generators in equal states
(:func:`ddpm.denoise_heterogeneous` against :func:`ddpm.denoise_per_member_reference`).
The script checks that the outputs agree and prints a Markdown table. Example::

    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/denoise_vectorized.py --system ks --batch 16 64
"""
from __future__ import annotations

import argparse
import sys
import time

import torch

from thermalizer_core.models import ddpm
from thermalizer_core.models.catalog import load_pair

from benchmark_environment import environment_line

#: Largest difference accepted between the two paths, in normalized units (fields of unit variance).
#: The batched path runs convolutions on sub-batches and the loop on single members, and convolution
#: kernels may sum in a different order for different batch sizes, so the outputs need not be bitwise equal.
TOLERANCE = 1e-5


def parse_arguments(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--system", default="ks", help="pair name in the models folder (default ks)")
    parser.add_argument("--checkpoint", default=None, help="models folder (default: the shipped checkpoints)")
    parser.add_argument("--batch", type=int, nargs="+", default=[16, 64], help="batch sizes to time")
    parser.add_argument("--min-level", type=int, default=5, help="lowest start level (inclusive)")
    parser.add_argument("--max-level", type=int, default=40, help="highest start level (inclusive)")
    parser.add_argument("--s-stop", type=int, default=4, help="level where denoising stops")
    parser.add_argument("--repeats", type=int, default=3, help="timed repeats of the batched path (best is kept)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the fields, levels and noise")
    parser.add_argument("--device", default="cpu", help="torch device (default cpu)")
    return parser.parse_args(argv)


def noised_fields(pair, batch: int, args) -> tuple[torch.Tensor, torch.Tensor]:
    """Return normalized true fields noised to random levels in [min_level, max_level], and those levels."""
    system, thermalizer = pair.system, pair.thermalizer
    state = system.initial_state(batch, seed=args.seed, device=args.device)
    clean = thermalizer.normalization.normalize(system.to_emulator_grid(state).float())
    generator = torch.Generator(device=args.device).manual_seed(args.seed)
    levels = torch.randint(args.min_level, args.max_level + 1, (batch,), generator=generator, device=args.device)
    noise = torch.randn(clean.shape, generator=generator, device=args.device)
    return ddpm.q_sample(clean, levels, noise, thermalizer.schedule_on(clean.device)), levels


def timed(function) -> tuple[float, tuple[torch.Tensor, torch.Tensor]]:
    if torch.cuda.is_available():
        torch.cuda.synchronize()
    started = time.perf_counter()
    result = function()
    if torch.cuda.is_available():
        torch.cuda.synchronize()
    return time.perf_counter() - started, result


@torch.no_grad()
def compare(pair, batch: int, args) -> str:
    thermalizer = pair.thermalizer
    schedule = thermalizer.schedule_on(torch.device(args.device))
    x, levels = noised_fields(pair, batch, args)

    def generator() -> torch.Generator:
        return torch.Generator(device=args.device).manual_seed(args.seed + 1)

    batched_s = float("inf")
    for _ in range(args.repeats):
        seconds, (batched, batched_steps) = timed(lambda: ddpm.denoise_heterogeneous(
            thermalizer.predict_noise, x, levels, args.s_stop, schedule, generator()))
        batched_s = min(batched_s, seconds)
    loop_s, (looped, looped_steps) = timed(lambda: ddpm.denoise_per_member_reference(
        thermalizer.predict_noise, x, levels, args.s_stop, schedule, generator()))

    difference = (batched - looped).abs().max().item()
    if difference > TOLERANCE or not torch.equal(batched_steps, looped_steps):
        raise AssertionError(f"batch {batch}: the paths differ by {difference:.3g} (tolerance {TOLERANCE}) "
                             f"or in steps applied")
    batched_calls = int(levels.max()) - args.s_stop
    looped_calls = int(looped_steps.sum())
    return (f"| {batch} | {int(levels.min())}-{int(levels.max())} | {batched_s * 1e3:.0f} | {loop_s * 1e3:.0f} "
            f"| {loop_s / batched_s:.1f} | {batched_calls} | {looped_calls} | {difference:.2g} "
            f"| {'yes' if torch.equal(batched, looped) else 'no'} |")


def main(argv: list[str] | None = None) -> int:
    args = parse_arguments(argv)
    if not 0 <= args.s_stop < args.min_level <= args.max_level:
        print("denoise_vectorized: error: expected 0 <= --s-stop < --min-level <= --max-level", file=sys.stderr)
        return 2
    pair = load_pair(args.system, args.checkpoint, device=args.device)
    print(f"## Heterogeneous denoising: {pair.system.name} thermalizer, start levels {args.min_level}-"
          f"{args.max_level}, s_stop {args.s_stop}\n")
    print(f"Command: `{' '.join(['python', 'benchmarks/denoise_vectorized.py', *sys.argv[1:]])}`  ")
    print(f"Environment: {environment_line(args.device)}\n")
    print("| batch | start levels | batched ms | per-member loop ms | speed-up | UNet calls batched "
          "| UNet calls loop | max difference | bitwise equal |")
    print("|---|---|---|---|---|---|---|---|---|")
    for batch in args.batch:
        print(compare(pair, batch, args), flush=True)
    print(f"\nBatched time: best of {args.repeats}. Max difference in normalized units; "
          f"the script fails above {TOLERANCE}.")
    return 0


if __name__ == "__main__":
    sys.exit(main())
