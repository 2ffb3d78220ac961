"""``thermalizer train {emulator,thermalizer}``: one command per model, also under ``torchrun``."""
from __future__ import annotations

import argparse
import json
import logging
import os
import pathlib

from safetensors.torch import save_file

from ..cli import UsageError, add_device_argument, resolve_device
from ..data import TrajectoryData
from ..models.checkpoint import describe_hardware, save_checkpoint, update_manifest
from ..systems import SYSTEM_NAMES
from .config import load_config
from .distributed import barrier, setup, teardown
from .state import weights_of

logger = logging.getLogger(__name__)


def training_command(argv: list[str]) -> str:
    """Return the command line ``argv`` that started this run, with the torchrun prefix when there was one."""
    command = "thermalizer " + " ".join(argv)
    world_size = int(os.environ.get("WORLD_SIZE", "1"))
    if world_size > 1:
        command = f"torchrun --nproc_per_node={world_size} -m thermalizer_core.cli " + " ".join(argv)
    return command


def command_train(args: argparse.Namespace) -> None:
    from .emulator import train_emulator
    from .thermalizer import train_thermalizer

    try:
        data = TrajectoryData(args.data)
    except FileNotFoundError as error:
        raise UsageError(str(error)) from error
    if data.meta["system"] != args.system:
        raise UsageError(f"dataset {args.data} contains system {data.meta['system']!r}, not {args.system!r}")
    try:
        config = load_config(args.model, args.system, args.config)
    except (ValueError, TypeError, FileNotFoundError) as error:
        raise UsageError(f"invalid --config {args.config}: {error}") from error
    out = pathlib.Path(args.out)
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        raise UsageError(f"cannot create output folder {out}: {error.strerror}") from error
    if args.resume and not (out / "resume" / "state.json").is_file():
        raise UsageError(f"--resume given but {out / 'resume'} contains no training state; run without --resume")

    info = setup(resolve_device(args.device))
    try:
        trainer = train_emulator if args.model == "emulator" else train_thermalizer
        try:
            model, record = trainer(data, out, config, info, resume=args.resume)
        except ValueError as error:
            raise UsageError(str(error)) from error
        if args.write_replica_weights:
            save_file(weights_of(model), str(out / f"replica-{info.rank}.safetensors"))
            # Rank 0 hashes every file of the folder into the manifest: wait until all replicas are written.
            barrier(info)
        if info.is_main:
            save_checkpoint(model, out, data.system.describe(),
                            training={"steps": record["steps"], "config": record["config"],
                                      "world_size": info.world_size},
                            data={"folder": str(args.data), "seeds": data.meta["seeds"],
                                  "trajectories": data.meta["trajectories"], "steps": data.meta["steps"]})
            (out / "evaluation.json").write_text(json.dumps(record["evaluation"], indent=1))
            update_manifest(out, training_command(args.argv), record["wall_time_s"],
                            f"{describe_hardware()}, {info.world_size} process(es)", record["evaluation"])
            logger.info("wrote %s checkpoint to %s", args.model, out)
    finally:
        teardown(info)


def register(commands: argparse._SubParsersAction) -> None:
    """Add the ``train`` command to the ``thermalizer`` parser."""
    parser = commands.add_parser("train", help="train an emulator or a thermalizer on a generated dataset")
    parser.add_argument("model", choices=("emulator", "thermalizer"), help="which model to train")
    parser.add_argument("--system", required=True, choices=SYSTEM_NAMES, help="system of the dataset")
    parser.add_argument("--data", required=True, help="dataset folder written by generate-data")
    parser.add_argument("--out", required=True, help="run folder: checkpoint, metrics.csv and resume state")
    parser.add_argument("--config", default=None, help="JSON file overriding training settings")
    parser.add_argument("--resume", action="store_true", help="continue from the state saved in OUT/resume")
    parser.add_argument("--write-replica-weights", action="store_true",
                        help="every process writes its final weights to OUT/replica-RANK.safetensors (DDP check)")
    add_device_argument(parser)
    parser.set_defaults(handler=command_train)
