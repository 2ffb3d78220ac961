"""Throughput of the dashboard's worker against the headless engine, same system, batch and device.

The app path is :class:`app.worker.RolloutWorker` as a served session uses it:
commands between steps, every engine call through the shared compute pool, and a
frame (fields, spectra, history, space-time rows) copied off the engine every
``--steps-per-frame`` steps. The browser's rendering runs on the server's event
loop from the newest frame and is not part of this figure. The two paths
alternate in rounds inside one process, so both see the same machine load.
Prints a Markdown table. Example::

    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/app_throughput.py --system ks --batch 4 --steps 200
"""
from __future__ import annotations

import argparse
import datetime
import platform
import time

import torch

from app.checkpoints import load_models, shipped_choice
from app.compute import shared_pool
from app.worker import EngineRequest, RolloutWorker
from thermalizer_core.engine import RolloutEngine


def headless_rate(system: str, batch: int, seed: int, steps: int, device: torch.device) -> float:
    """Return steps per second of a fresh engine over ``steps`` steps.

    The engine does the work that the dashboard's engine does too: it classifies the true states and
    keeps recent fields for the statistics and exports.
    """
    pair = load_models(shipped_choice(system), device)
    engine = RolloutEngine(pair.system, pair.emulator, pair.thermalizer, batch=batch, seed=seed, device=device,
                           classify_truth=True, field_history=None)
    started = time.perf_counter()
    engine.step(steps)
    return steps / (time.perf_counter() - started)


def worker_rate(system: str, batch: int, seed: int, steps: int, steps_per_frame: int) -> float:
    """Return steps per second of a dashboard worker, from play to the frame at ``steps``."""
    worker = RolloutWorker(frame_period_s=0.0, steps_per_frame=steps_per_frame, name="benchmark")
    worker.start()
    try:
        worker.configure(EngineRequest(shipped_choice(system), batch, seed))
        worker.wait_for(lambda snapshot: snapshot.frame is not None, timeout=600)
        started = time.perf_counter()
        worker.play()
        worker.wait_for(lambda snapshot: snapshot.frame is not None and snapshot.frame.step >= steps, timeout=3600)
        elapsed = time.perf_counter() - started
        worker.pause()
        return steps / elapsed
    finally:
        worker.stop()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--system", default="ks", help="shipped pair: ks, kolmogorov or qg")
    parser.add_argument("--batch", type=int, default=4, help="trajectories per run")
    parser.add_argument("--steps", type=int, default=200, help="emulator steps per measurement")
    parser.add_argument("--rounds", type=int, default=2, help="alternating rounds of both paths")
    parser.add_argument("--steps-per-frame", type=int, default=10, help="steps between frames of the worker")
    parser.add_argument("--seed", type=int, default=0, help="initial-condition seed")
    args = parser.parse_args()

    device = shared_pool().device
    headless, app = [], []
    for _ in range(args.rounds):
        headless.append(headless_rate(args.system, args.batch, args.seed, args.steps, device))
        app.append(worker_rate(args.system, args.batch, args.seed, args.steps, args.steps_per_frame))
    print(f"Environment: {datetime.datetime.now(datetime.timezone.utc):%Y-%m-%d %H:%M} UTC; {platform.machine()}, "
          f"torch {torch.__version__}, device {device}, {torch.get_num_threads()} thread(s)\n")
    print("| round | headless steps/s | app worker steps/s | ratio app / headless |")
    print("|---|---|---|---|")
    for index, (engine_rate, app_rate) in enumerate(zip(headless, app), start=1):
        print(f"| {index} | {engine_rate:.2f} | {app_rate:.2f} | {app_rate / engine_rate:.2f} |")
    print(f"| total | {sum(headless) / len(headless):.2f} | {sum(app) / len(app):.2f} | "
          f"{sum(app) / sum(headless):.2f} |")


if __name__ == "__main__":
    main()
