"""The ``thermalizer`` command: simulate, generate data, calibrate, train and roll out.

Bad input ends the command with one line on standard error and exit code 2.
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import logging
import math
import pathlib
import sys
from typing import Any, Sequence

import numpy as np
import torch
from tqdm.auto import tqdm

from .systems import SYSTEM_NAMES, InvalidParameterError, System, get_system

logger = logging.getLogger("thermalizer")


class UsageError(Exception):
    """Invalid command-line input; the message is printed as one line and the exit code is 2."""


class OneLineArgumentParser(argparse.ArgumentParser):
    """An argument parser whose errors are one line on standard error, with exit code 2.

    argparse prints the whole usage block before the error; here the line names
    the command and points to ``--help`` instead.
    """

    def error(self, message: str) -> None:  # type: ignore[override]
        self.exit(2, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


def parse_overrides(pairs: Sequence[str]) -> dict[str, str]:
    """Parse ``NAME=VALUE`` strings into a dict of strings (the system casts the values)."""
    overrides = {}
    for pair in pairs:
        name, sep, value = pair.partition("=")
        if not sep or not name:
            raise UsageError(f"invalid --set {pair!r}: expected NAME=VALUE, e.g. --set nu=0.01")
        overrides[name.strip()] = value.strip()
    return overrides


def build_system(name: str, overrides: Sequence[str]) -> System:
    try:
        return get_system(name, **parse_overrides(overrides))
    except InvalidParameterError as error:
        raise UsageError(str(error)) from error


def resolve_device(name: str | None) -> torch.device:
    """Return the device named ``name``, or CUDA when present and the CPU otherwise."""
    if name is None:
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(name)
    except RuntimeError as error:
        raise UsageError(f"invalid --device {name!r}: use cpu, cuda or cuda:N") from error
    if device.type == "cuda" and not torch.cuda.is_available():
        raise UsageError(f"--device {name} requested but CUDA is not available; use --device cpu")
    return device


def check_writable(path: pathlib.Path, suffixes: Sequence[str] | None = None) -> None:
    """Raise UsageError unless ``path`` can be created as a file (and has one of ``suffixes``).

    The check opens the file for appending, so it is also right for root and for
    read-only file systems. A file that did not exist before is removed again.
    """
    if suffixes is not None and path.suffix not in suffixes:
        raise UsageError(f"invalid output {path}: the file name must end in {' or '.join(suffixes)}")
    parent = path.parent if path.parent != pathlib.Path("") else pathlib.Path(".")
    if not parent.is_dir():
        raise UsageError(f"output folder {parent} does not exist; create it first")
    if path.is_dir():
        raise UsageError(f"output {path} is a folder; give a file name")
    existed = path.exists()
    try:
        with open(path, "ab"):
            pass
    except OSError as error:
        raise UsageError(f"output {path} is not writable ({error.strerror}); choose another path") from error
    if not existed:
        path.unlink()


def solver_steps(system: System, duration: float, label: str) -> int:
    """Return ``duration / dt`` as an integer, or raise UsageError if it is not whole."""
    steps = duration / system.params.dt
    if duration <= 0 or not math.isfinite(duration):
        raise UsageError(f"invalid {label} {duration}: expected a positive time")
    if abs(steps - round(steps)) > 1e-6 * max(1.0, steps):
        raise UsageError(f"invalid {label} {duration}: expected a whole multiple of dt = {system.params.dt}")
    return int(round(steps))


def load_initial(path: pathlib.Path, system: System) -> torch.Tensor:
    """Load initial states ``(B, *state_shape)`` from a ``.npy`` file, or raise UsageError saying what is wrong."""
    if not path.is_file():
        raise UsageError(f"initial state file {path} not found")
    try:
        array = np.load(path, allow_pickle=False)
    except ValueError as error:
        raise UsageError(f"invalid initial state file {path}: not a .npy array ({error})") from error
    expected = tuple(system.state_shape)
    if array.ndim != len(expected) + 1 or tuple(array.shape[1:]) != expected:
        raise UsageError(f"invalid initial state shape {array.shape} in {path}: expected (B, {', '.join(map(str, expected))})")
    if not np.isfinite(array).all():
        raise UsageError(f"invalid initial state in {path}: it contains NaN or infinite values")
    return torch.from_numpy(array.astype(np.float64))


def command_simulate(args: argparse.Namespace) -> None:
    from .export import states_to_dataset, write_netcdf

    system = build_system(args.system, args.set)
    out = pathlib.Path(args.out)
    check_writable(out, (".npy", ".nc"))
    total = solver_steps(system, args.duration, "--duration")
    every = solver_steps(system, args.save_every, "--save-every")
    if total % every:
        raise UsageError(f"invalid --duration {args.duration}: expected a whole multiple of --save-every {args.save_every}")
    device = resolve_device(args.device)
    if args.initial is not None:
        state = load_initial(pathlib.Path(args.initial), system).to(device)
    else:
        if args.batch < 1:
            raise UsageError(f"invalid --batch {args.batch}: expected at least 1")
        state = system.initial_state(args.batch, seed=args.seed, device=device)

    saves = total // every
    save_interval = every * system.params.dt
    # One continuous run: a copy of the system whose emulator interval is the save interval
    # yields the saved states, so a multistep solver (QG) keeps its history across saves
    # instead of restarting at each one as repeated ``advance`` calls would.
    saver = type(system)(dataclasses.replace(system.params, emulator_interval=save_interval))
    run = saver.trajectory(state)
    states = [state.cpu().numpy()]
    for _ in tqdm(range(saves), desc=f"simulate {system.name}", unit="save"):
        states.append(next(run).cpu().numpy())
    array = np.stack(states, axis=1)
    if out.suffix == ".npy":
        np.save(out, array)
    else:
        times = np.arange(saves + 1) * save_interval
        dataset = states_to_dataset(system, array, times, attributes={"seed": args.seed if args.initial is None else -1,
                                                                      "initial_file": args.initial or ""})
        write_netcdf(dataset, out)
    logger.info("wrote %s of shape %s", out, array.shape)


def command_generate_data(args: argparse.Namespace) -> None:
    from .data import generate_dataset

    system = build_system(args.system, args.set)
    out = pathlib.Path(args.out)
    if out.exists() and not out.is_dir():
        raise UsageError(f"output {out} exists and is not a folder")
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        raise UsageError(f"cannot create output folder {out}: {error.strerror}") from error
    check_writable(out / "meta.json")
    for name in ("train", "valid", "test", "steps", "batch_size"):
        if getattr(args, name) < (1 if name in ("steps", "batch_size", "train") else 0):
            raise UsageError(f"invalid --{name.replace('_', '-')} {getattr(args, name)}: too small")
    generate_dataset(system, out, args.train, args.valid, args.test, args.steps, seed=args.seed,
                     batch_size=args.batch_size, device=resolve_device(args.device))


def command_calibrate(args: argparse.Namespace) -> None:
    from .calibration import calibrate

    system = build_system(args.system, [])
    for name in ("batch", "steps", "window", "spectrum_window", "lyapunov_steps"):
        if getattr(args, name) < 1:
            raise UsageError(f"invalid --{name.replace('_', '-')} {getattr(args, name)}: expected at least 1")
    if args.data is None and (args.window > args.steps or args.spectrum_window > args.steps):
        raise UsageError(f"invalid --steps {args.steps}: expected at least --window {args.window} "
                         f"and --spectrum-window {args.spectrum_window}")
    out = pathlib.Path(args.out) if args.out else pathlib.Path(__file__).parent / "systems" / "reference" / f"{system.name}.json"
    check_writable(out, (".json",))
    fields = None
    if args.data is not None:
        from .data import TrajectoryData

        try:
            data = TrajectoryData(args.data)
        except FileNotFoundError as error:
            raise UsageError(str(error)) from error
        if data.meta["system"] != system.name or data.meta["params"] != system.params.to_dict():
            raise UsageError(f"dataset {args.data} was made for other system parameters; calibrate uses the defaults")
        arrays = [np.asarray(data.split(name)) for name in ("valid", "test")]
        fields = torch.from_numpy(np.concatenate(arrays)).transpose(0, 1)[1:].double()
    reference = calibrate(system, args.batch, args.steps, args.window, args.spectrum_window, args.lyapunov_steps,
                          seed=args.seed, fields=fields,
                          device=resolve_device(args.device))
    reference["command"] = "thermalizer " + " ".join(args.argv)
    out.write_text(json.dumps(reference, indent=1))
    logger.info("wrote %s", out)


def add_system_argument(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--system", required=True, choices=SYSTEM_NAMES, help="which system")


def add_device_argument(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--device", default=None, help="torch device (default: cuda when available, else cpu)")


def build_parser() -> argparse.ArgumentParser:
    parser = OneLineArgumentParser(prog="thermalizer", description=__doc__.splitlines()[0])
    parser.add_argument("-v", "--verbose", action="store_true", help="log debug messages")
    commands = parser.add_subparsers(dest="command", required=True)

    simulate = commands.add_parser("simulate", help="integrate the true system and save its states")
    add_system_argument(simulate)
    simulate.add_argument("--set", action="append", default=[], metavar="NAME=VALUE",
                          help="change a system parameter (repeatable)")
    source = simulate.add_mutually_exclusive_group(required=True)
    source.add_argument("--initial", help="a .npy array of initial states, shape (B, *state_shape)")
    source.add_argument("--seed", type=int, help="seed of spun-up initial states (with --batch)")
    simulate.add_argument("--batch", type=int, default=1, help="number of trajectories with --seed")
    simulate.add_argument("--duration", type=float, required=True, help="time to integrate, in the system's unit")
    simulate.add_argument("--save-every", type=float, required=True, help="time between saved states")
    simulate.add_argument("--out", required=True, help="output file: .npy (bare array) or .nc (netCDF)")
    add_device_argument(simulate)
    simulate.set_defaults(handler=command_simulate)

    generate = commands.add_parser("generate-data", help="write train/valid/test trajectories on the emulator grid")
    add_system_argument(generate)
    generate.add_argument("--set", action="append", default=[], metavar="NAME=VALUE",
                          help="change a system parameter (repeatable)")
    generate.add_argument("--out", required=True, help="output folder")
    generate.add_argument("--train", type=int, default=32, help="training trajectories")
    generate.add_argument("--valid", type=int, default=4, help="validation trajectories")
    generate.add_argument("--test", type=int, default=4, help="test trajectories")
    generate.add_argument("--steps", type=int, default=500, help="emulator steps per trajectory")
    generate.add_argument("--seed", type=int, default=0, help="base seed of the initial states")
    generate.add_argument("--batch-size", type=int, default=16, help="trajectories integrated together")
    add_device_argument(generate)
    generate.set_defaults(handler=command_generate_data)

    calibrate = commands.add_parser("calibrate", help="derive stable-band thresholds from long true runs")
    add_system_argument(calibrate)
    calibrate.add_argument("--batch", type=int, default=8, help="true trajectories")
    calibrate.add_argument("--steps", type=int, default=2000, help="emulator steps per trajectory")
    calibrate.add_argument("--window", type=int, default=50, help="window of the frozen and spectrum checks, in steps")
    calibrate.add_argument("--spectrum-window", type=int, default=200,
                           help="time constant of the running spectrum average, in steps")
    calibrate.add_argument("--lyapunov-steps", type=int, default=300, help="steps of the twin-trajectory run")
    calibrate.add_argument("--seed", type=int, default=1000, help="seed of the initial states")
    calibrate.add_argument("--data", default=None,
                           help="take the true fields from this dataset's valid and test splits instead of new runs")
    calibrate.add_argument("--out", default=None, help="output JSON (default: the package's reference folder)")
    add_device_argument(calibrate)
    calibrate.set_defaults(handler=command_calibrate)

    for register in extra_commands():
        register(commands)
    return parser


def extra_commands() -> list:
    """Return the registration functions of the train and rollout commands, where those modules exist."""
    registrations = []
    for module_name in ("thermalizer_core.training.cli", "thermalizer_core.rollout_cli"):
        try:
            module = __import__(module_name, fromlist=["register"])
        except ModuleNotFoundError as error:
            if error.name != module_name:
                raise
            continue
        registrations.append(module.register)
    return registrations


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command in ``argv`` (default: ``sys.argv[1:]``) and return the exit code."""
    argv = list(sys.argv[1:] if argv is None else argv)
    parser = build_parser()
    args = parser.parse_args(argv)
    args.argv = argv
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    try:
        args.handler(args)
    except UsageError as error:
        print(f"thermalizer {args.command}: error: {error}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    # Under ``python -m thermalizer_core.cli`` (as torchrun runs it) this file is
    # the module ``__main__``, and the train command would raise the UsageError of a
    # second copy, ``thermalizer_core.cli``, which the ``main`` here does not catch.
    from thermalizer_core.cli import main as package_main

    sys.exit(package_main())
