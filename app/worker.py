"""One session's rollout engine and the thread that advances it, off the server's event loop.

The event loop only queues commands (configure, reset, play, pause, step) and
reads the newest :class:`~app.frames.Frame`. The worker thread applies the
commands between two steps, runs every engine call through the shared
:class:`~app.compute.ComputePool`, and publishes a frame after every
``steps_per_frame`` steps. A frame is published at most every
``frame_period_s``, which caps the speed at ``steps_per_frame / frame_period_s``
steps per second. How often the browser renders never changes that rate.
Threshold changes go straight to the engine and apply from its next step.
"""
from __future__ import annotations

import collections
import concurrent.futures
import dataclasses
import logging
import threading
import time
from typing import Callable, Mapping, TypeVar

import numpy as np

from thermalizer_core.engine import InvalidSettingsError, RolloutEngine, ThermalizerSettings
from thermalizer_core.history import RingBuffer
from thermalizer_core.models.checkpoint import CheckpointError

from .checkpoints import ModelChoice, choice_stamp, load_models, public_message
from .compute import ComputePool, PoolClosedError, describe_device, shared_pool
from .frames import EngineInfo, Frame, build_info, capture

logger = logging.getLogger(__name__)

Result = TypeVar("Result")

#: Rows of per-step history kept by the engine (and shown in the time series).
HISTORY_ROWS = 1000
#: Steps kept in the KS space-time diagram.
SPACE_TIME_ROWS = 256
#: Shortest time between two published frames, in seconds.
FRAME_PERIOD_S = 0.1
#: Publish a frame at least this often while steps are slow, in seconds.
MAX_FRAME_DELAY_S = 1.0
#: Window over which the wall-clock step rate is measured, in seconds.
RATE_WINDOW_S = 3.0
#: Perturbations kept for the page's markers; older ones are dropped.
MAX_PERTURBATIONS_SHOWN = 50
#: Levels assumed before an engine exists, to validate settings early.
DEFAULT_NUM_LEVELS = 1000


@dataclasses.dataclass(frozen=True)
class EngineRequest:
    """Model pair, batch size, initial-condition seed and thermalized variants of an engine to build."""

    choice: ModelChoice
    batch: int
    seed: int
    #: Extra thermalized runs, as ``(name, settings)`` pairs, that start from the same initial condition.
    variants: tuple[tuple[str, ThermalizerSettings], ...] = ()


@dataclasses.dataclass(frozen=True)
class Perturbation:
    """Noise added by hand to the emulated runs: the step, the diffusion level and the centre (None: global)."""

    step: int
    level: int
    center: tuple[float, ...] | None


@dataclasses.dataclass(frozen=True)
class Problem:
    """Why a session shows no (or stale) plots: a missing checkpoint or an error, for one engine generation."""

    generation: int
    kind: str
    message: str


@dataclasses.dataclass(frozen=True)
class Snapshot:
    """The newest frame, the current problem and the requested engine generation, as the views read them."""

    frame: Frame | None
    problem: Problem | None
    generation: int


class StepRate:
    """Wall-clock steps per second over the last :data:`RATE_WINDOW_S` seconds."""

    def __init__(self):
        self.samples: collections.deque[tuple[float, int]] = collections.deque()

    def add(self, step: int) -> None:
        now = time.perf_counter()
        self.samples.append((now, step))
        while len(self.samples) > 2 and now - self.samples[0][0] > RATE_WINDOW_S:
            self.samples.popleft()

    def clear(self) -> None:
        self.samples.clear()

    def value(self) -> float:
        if len(self.samples) < 2:
            return float("nan")
        (first_time, first_step), (last_time, last_step) = self.samples[0], self.samples[-1]
        return (last_step - first_step) / (last_time - first_time) if last_time > first_time else float("nan")


class RolloutWorker:
    """Owns one session's RolloutEngine and advances it on a private thread."""

    def __init__(self, pool: ComputePool | None = None, settings: ThermalizerSettings | None = None,
                 history: int = HISTORY_ROWS, space_time_rows: int = SPACE_TIME_ROWS,
                 frame_period_s: float = FRAME_PERIOD_S, steps_per_frame: int = 10, name: str = "session"):
        self.pool = pool or shared_pool()
        self.history = history
        self.space_time_rows = space_time_rows
        self.frame_period_s = frame_period_s
        self.steps_per_frame = steps_per_frame
        self.device_label = describe_device(self.pool.device)
        self._settings = settings or ThermalizerSettings()
        self._commands: collections.deque[Callable[[], None]] = collections.deque()
        self._wake = threading.Event()
        self._stopping = threading.Event()
        self._frame_lock = threading.Lock()
        self._frame: Frame | None = None
        self._problem: Problem | None = None
        self._requested_generation = 0
        self._sequence = 0
        self._run_id = 0
        self._running = False
        self._steps_requested = 0
        self._rate = StepRate()
        self.engine: RolloutEngine | None = None
        self.info: EngineInfo | None = None
        self._space_time: dict[str, RingBuffer] | None = None
        self._space_time_steps: RingBuffer | None = None
        #: The request whose pair was missing or rejected, its generation and the pair's file stamp then.
        self._missing: tuple[EngineRequest, int, tuple[int, ...]] | None = None
        #: Futures of :meth:`submit` calls whose command has not run yet; cancelled when the thread ends.
        self._pending: set[concurrent.futures.Future] = set()
        self._pending_lock = threading.Lock()
        self._perturbations: list[Perturbation] = []
        self._thread = threading.Thread(target=self._loop, name=f"rollout-{name}", daemon=True)

    # -- control, from any thread ---------------------------------------------------
    def start(self) -> None:
        self._thread.start()
        logger.info("worker %s started", self._thread.name)

    def stop(self, timeout: float = 30.0) -> bool:
        """Ask the thread to end after its current step and wait up to ``timeout`` seconds (0: do not wait).

        Returns True if the thread has ended.
        """
        self._stopping.set()
        self._wake.set()
        if timeout > 0 and self._thread.is_alive():
            self._thread.join(timeout)
            if self._thread.is_alive():
                logger.warning("worker %s did not stop within %.0f s", self._thread.name, timeout)
        return not self._thread.is_alive()

    @property
    def alive(self) -> bool:
        return self._thread.is_alive()

    @property
    def running(self) -> bool:
        return self._running

    def configure(self, request: EngineRequest) -> int:
        """Build a new engine for ``request`` on the worker thread; return its generation number."""
        self._requested_generation += 1
        generation = self._requested_generation
        self._queue(lambda: self._build(request, generation))
        return generation

    def reset(self, seed: int) -> None:
        """Start the runs again from step 0 with initial conditions drawn from ``seed``."""
        self._queue(lambda: self._reset(seed))

    def play(self) -> None:
        self._queue(self._play)

    def pause(self) -> None:
        self._queue(self._pause)

    def step(self, count: int = 1) -> None:
        """Pause and advance by ``count`` steps."""
        self._queue(lambda: self._request_steps(count))

    def apply_settings(self, settings: ThermalizerSettings) -> None:
        """Use ``settings`` from the engine's next step on; raises InvalidSettingsError if one is out of range."""
        engine = self.engine
        settings.validate(engine.num_levels if engine is not None else DEFAULT_NUM_LEVELS)
        self._settings = settings
        if engine is not None:
            # Assigning is atomic: the engine reads its settings once at the start of each step.
            engine.settings = settings

    def update_variant(self, name: str, settings: ThermalizerSettings) -> None:
        """Use ``settings`` for the thermalized variant ``name`` from the engine's next step on.

        Raises InvalidSettingsError if a setting is out of range; an unknown variant is logged and ignored.
        """
        engine = self.engine
        settings.validate(engine.num_levels if engine is not None else DEFAULT_NUM_LEVELS)
        self._queue(lambda: self._update_variant(name, settings))

    def perturb(self, level: int, center: tuple[float, ...] | None = None, width: float = 0.1) -> None:
        """Add diffusion noise of ``level`` to every emulated run, around ``center`` (domain fractions) or everywhere."""
        self._queue(lambda: self._perturb(level, center, width))

    def submit(self, function: Callable[[RolloutEngine], Result]) -> concurrent.futures.Future:
        """Run ``function(engine)`` on the compute pool between two steps; return a future of its result.

        The future raises RuntimeError when there is no engine yet, and is cancelled if the worker stops first.
        """
        future: concurrent.futures.Future = concurrent.futures.Future()
        with self._pending_lock:
            self._pending.add(future)

        def command() -> None:
            with self._pending_lock:
                self._pending.discard(future)
            if not future.set_running_or_notify_cancel():
                return
            engine = self.engine
            if engine is None:
                future.set_exception(RuntimeError("no rollout is loaded yet: wait until the fields show"))
                return
            try:
                future.set_result(self.pool.run(lambda: function(engine)))
            except Exception as error:  # noqa: BLE001 - handed to the caller through the future
                future.set_exception(error)

        self._queue(command)
        return future

    def snapshot(self) -> Snapshot:
        with self._frame_lock:
            return Snapshot(self._frame, self._problem, self._requested_generation)

    def wait_for(self, condition: Callable[[Snapshot], bool], timeout: float) -> Snapshot:
        """Poll snapshots until ``condition`` holds; raise TimeoutError after ``timeout`` seconds."""
        deadline = time.monotonic() + timeout
        while True:
            snapshot = self.snapshot()
            if condition(snapshot):
                return snapshot
            if time.monotonic() > deadline:
                raise TimeoutError(f"worker condition not met within {timeout} s; last problem: {snapshot.problem}")
            time.sleep(0.02)

    def _queue(self, command: Callable[[], None]) -> None:
        self._commands.append(command)
        self._wake.set()

    # -- the thread -------------------------------------------------------------------
    def _loop(self) -> None:
        try:
            self._run_until_stopped()
        finally:
            # Free the engine's tensors even if something still refers to this worker.
            self.engine = None
            with self._pending_lock:
                pending, self._pending = self._pending, set()
            for future in pending:
                future.cancel()
            logger.info("worker %s stopped", self._thread.name)

    def _run_until_stopped(self) -> None:
        while not self._stopping.is_set():
            try:
                self._run_commands()
                if self.engine is not None and (self._running or self._steps_requested > 0):
                    self._advance()
                else:
                    self._retry_missing_pair()
                    self._wake.wait(0.5)
                    self._wake.clear()
            except PoolClosedError:
                logger.info("worker %s: compute pool shut down, stopping", self._thread.name)
                return
            except Exception as error:  # noqa: BLE001 - a failing step must not end the session's thread
                logger.exception("worker %s: error while stepping", self._thread.name)
                self._running = False
                self._steps_requested = 0
                self._set_problem("error", f"The rollout stopped with an error: {type(error).__name__}: "
                                           f"{public_message(str(error))}. Press reset or pick another system.")
                self._publish_safely()

    def _run_commands(self) -> None:
        while self._commands and not self._stopping.is_set():
            self._commands.popleft()()

    def _advance(self) -> None:
        """Advance up to one frame's worth of steps, publish a frame, then wait out the speed cap."""
        started = time.perf_counter()
        target = self.steps_per_frame if self._running else self._steps_requested
        done = 0
        while done < target and not self._stopping.is_set():
            self.pool.run(self._step_once)
            done += 1
            if not self._running:
                self._steps_requested -= 1
            self._rate.add(self.engine.step_count)
            if self._commands or time.perf_counter() - started > MAX_FRAME_DELAY_S:
                break
        self._publish()
        remaining = self.frame_period_s - (time.perf_counter() - started)
        if self._running and remaining > 0:
            self._wake.wait(remaining)
            self._wake.clear()

    def _step_once(self) -> None:
        self.engine.step(1)
        self._record_space_time()

    def _record_space_time(self) -> None:
        """Append the current KS fields as the newest row of the space-time diagram (1D systems only)."""
        if self._space_time is None:
            return
        self._space_time_steps.append(np.int64(self.engine.step_count))
        for name, buffer in self._space_time.items():
            buffer.append(self.engine.runs[name].field[:, 0, :].detach().cpu().numpy())

    # -- commands, on the worker thread ---------------------------------------------
    def _build(self, request: EngineRequest, generation: int) -> None:
        if generation != self._requested_generation:
            return  # a newer request is queued
        self._missing = None
        self.engine = None
        self.info = None
        with self._frame_lock:
            self._frame = None
            self._problem = None
        try:
            pair = load_models(request.choice, self.pool.device)
        except CheckpointError as error:
            logger.warning("worker %s: no usable pair for %s: %s", self._thread.name, request.choice, error)
            self._set_problem("missing", public_message(str(error)), generation)
            self._missing = (request, generation, choice_stamp(request.choice))
            return

        def build() -> RolloutEngine:
            # A private System per engine: solvers keep per-instance caches.
            system = type(pair.system)(pair.system.params)
            settings = dataclasses.replace(self._settings, emulator_sigma=None)
            return RolloutEngine(system, pair.emulator, pair.thermalizer, batch=request.batch, seed=request.seed,
                                 device=self.pool.device, settings=settings, history=self.history,
                                 variants=dict(request.variants), classify_truth=True)

        try:
            engine = self.pool.run(build)
        except Exception as error:  # noqa: BLE001 - shown on the page; the session stays usable
            logger.exception("worker %s: could not start %s", self._thread.name, request.choice)
            self._set_problem("error", f"Could not start the {request.choice.system} rollout: "
                                       f"{type(error).__name__}: {public_message(str(error))}", generation)
            return
        self._settings = engine.settings
        self._perturbations = []
        self.engine = engine
        self.info = build_info(engine, generation, request.choice, self.device_label)
        self._start_space_time()
        self._rate.clear()
        logger.info("worker %s: built engine %d for %s (batch %d, seed %d)", self._thread.name, generation,
                    request.choice, request.batch, request.seed)
        self._publish()

    def _retry_missing_pair(self) -> None:
        """Build the engine again once the missing pair's files change, e.g. when its training finishes."""
        if self._missing is None:
            return
        request, generation, stamp = self._missing
        if generation != self._requested_generation:
            self._missing = None
        elif choice_stamp(request.choice) != stamp:
            logger.info("worker %s: checkpoint files of %s changed, loading again", self._thread.name,
                        request.choice)
            self._build(request, generation)

    def _reset(self, seed: int) -> None:
        if self.engine is None:
            return
        self.pool.run(lambda: self.engine.reset(seed))
        self._run_id += 1
        self._perturbations = []
        self._start_space_time()
        self._rate.clear()
        with self._frame_lock:
            if self._problem is not None and self._problem.kind == "error":
                self._problem = None
        self._publish()

    def _update_variant(self, name: str, settings: ThermalizerSettings) -> None:
        if self.engine is None or name not in self.engine.variant_names:
            logger.warning("worker %s: no thermalized variant %r to update", self._thread.name, name)
            return
        self.engine.update_variant(name, settings)
        self._publish()

    def _perturb(self, level: int, center: tuple[float, ...] | None, width: float) -> None:
        if self.engine is None:
            return
        engine = self.engine
        self.pool.run(lambda: engine.perturb(level, center=center, width=width))
        self._perturbations = [*self._perturbations[-(MAX_PERTURBATIONS_SHOWN - 1):],
                               Perturbation(engine.step_count, level, center)]
        logger.info("worker %s: perturbed at step %d with level %d around %s", self._thread.name,
                    engine.step_count, level, center if center is not None else "the whole domain")
        self._publish()

    def _play(self) -> None:
        self._running = True
        self._rate.clear()

    def _pause(self) -> None:
        self._running = False
        self._steps_requested = 0
        self._rate.clear()
        if self.engine is not None:
            self._publish()

    def _request_steps(self, count: int) -> None:
        self._running = False
        self._steps_requested += count

    def _start_space_time(self) -> None:
        if self.info is None or not self.info.is_1d:
            self._space_time = self._space_time_steps = None
            return
        batch, grid = self.engine.batch, self.info.field_shape[-1]
        self._space_time = {name: RingBuffer(self.space_time_rows, (batch, grid), np.float32)
                            for name in self.engine.run_names}
        self._space_time_steps = RingBuffer(self.space_time_rows, (), np.int64)
        self._record_space_time()

    def _publish(self) -> None:
        engine, info = self.engine, self.info
        if engine is None or info is None:
            return
        self._sequence += 1
        rate = self._rate.value() if self._running else float("nan")
        perturbations = tuple(self._perturbations)
        frame = self.pool.run(lambda: capture(engine, info, self._sequence, self._run_id, rate, self._running,
                                              self._space_time, self._space_time_steps, perturbations))
        with self._frame_lock:
            self._frame = frame

    def _publish_safely(self) -> None:
        try:
            self._publish()
        except Exception:  # noqa: BLE001 - the error is already shown; a stale frame is acceptable
            logger.exception("worker %s: could not publish a frame after an error", self._thread.name)

    def _set_problem(self, kind: str, message: str, generation: int | None = None) -> None:
        with self._frame_lock:
            self._problem = Problem(self._requested_generation if generation is None else generation, kind, message)
