"""``thermalizer rollout``: a headless run of truth, emulator alone and thermalized emulator."""
from __future__ import annotations

import argparse
import logging
import pathlib

import torch

from .cli import UsageError, add_device_argument, check_writable, resolve_device
from .engine import InvalidSettingsError, RolloutEngine, ThermalizerSettings
from .models.catalog import SHIPPED_CHECKPOINTS, load_pair
from .models.checkpoint import CheckpointError
from .systems import SYSTEM_NAMES

logger = logging.getLogger(__name__)


def command_rollout(args: argparse.Namespace) -> None:
    from .rollout import run_rollout, write_outputs

    for option in ("steps", "batch", "history"):
        value = getattr(args, option)
        if value < 1:
            raise UsageError(f"invalid --{option} {value}: expected at least 1")
    if args.save_every is not None and args.save_every < 1:
        raise UsageError(f"invalid --save-every {args.save_every}: expected at least 1")
    device = resolve_device(args.device)
    try:
        pair = load_pair(args.pair or args.system, args.checkpoint, device=device)
    except CheckpointError as error:
        raise UsageError(f"cannot load the {args.system} models: {error}") from error
    if pair.system.name != args.system:
        raise UsageError(f"pair {pair.name!r} was trained for {pair.system.name}, not {args.system}; "
                         f"pass --system {pair.system.name}")
    settings = ThermalizerSettings(s_init=args.s_init, s_stop=args.s_stop, forward_diffuse=args.forward_diffuse,
                                   hard_limit=args.hard_limit, emulator_sigma=args.sigma,
                                   classify_every=args.classify_every)
    try:
        settings.validate(pair.thermalizer.T)
    except InvalidSettingsError as error:
        raise UsageError(str(error)) from error
    # The output folder is created only after every input has been checked.
    out = pathlib.Path(args.out)
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        raise UsageError(f"cannot create output folder {out}: {error.strerror}") from error
    check_writable(out / "summary.json")
    runs = ("emulator", "thermalized") if args.no_truth else ("truth", "emulator", "thermalized")
    engine = RolloutEngine(pair.system, pair.emulator, pair.thermalizer, batch=args.batch, seed=args.seed,
                           device=device, runs=runs, settings=settings, history=args.history, field_history=0)
    save_every = args.save_every or max(1, args.steps // 100)
    record = run_rollout(engine, args.steps, save_every)
    summary = write_outputs(engine, record, pair, out)
    for name, run in summary["runs"].items():
        logger.info("%s: median stable horizon %.0f of %d steps, %.1f steps/s", name, run["median_stable_horizon"],
                    args.steps, run["steps_per_second"])


def register(commands: argparse._SubParsersAction) -> None:
    """Add the ``rollout`` command to the ``thermalizer`` parser."""
    parser = commands.add_parser("rollout", help="run truth, emulator and thermalized emulator headless")
    parser.add_argument("--system", required=True, choices=SYSTEM_NAMES, help="which system")
    parser.add_argument("--checkpoint", default=None,
                        help=f"models folder holding NAME-emulator and NAME-thermalizer (default {SHIPPED_CHECKPOINTS})")
    parser.add_argument("--pair", default=None, help="pair NAME in the models folder (default: the system name)")
    parser.add_argument("--steps", type=int, required=True, help="emulator steps to run")
    parser.add_argument("--batch", type=int, default=16, help="number of trajectories")
    parser.add_argument("--seed", type=int, default=0, help="seed of the initial states and of all noise")
    parser.add_argument("--s-init", type=int, default=10, help="denoise when the predicted level exceeds this")
    parser.add_argument("--s-stop", type=int, default=4, help="level where denoising stops")
    parser.add_argument("--forward-diffuse", action="store_true", help="noise to the predicted level before denoising")
    parser.add_argument("--hard-limit", type=int, default=None, help="stop a trajectory whose level exceeds this")
    parser.add_argument("--sigma", type=float, default=None, help="emulator noise (default: the checkpoint's)")
    parser.add_argument("--classify-every", type=int, default=1, help="classify every this many steps")
    parser.add_argument("--no-truth", action="store_true", help="skip the true run (faster for long runs)")
    parser.add_argument("--save-every", type=int, default=None,
                        help="steps between saved rows of the trajectory file (default: steps / 100)")
    parser.add_argument("--history", type=int, default=1000, help="rows kept in the engine's ring buffers")
    parser.add_argument("--out", required=True, help="output folder")
    add_device_argument(parser)
    parser.set_defaults(handler=command_rollout)
