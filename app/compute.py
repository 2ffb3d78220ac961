"""The torch device, the CPU thread cap and the one shared executor that runs the dashboard's engines.

Every session's worker thread hands its engine calls to one process-wide
executor. On CUDA the executor has a single thread, so kernels from different
sessions never interleave. On CPU it has ``cpu_count // threads_per_step``
threads, and torch's intra-op thread count is capped once for the process, so
several sessions share the cores instead of oversubscribing them. The queue of
a ``ThreadPoolExecutor`` is first in, first out, so sessions take turns step
by step.
"""
from __future__ import annotations

import concurrent.futures
import logging
import os
import threading
from typing import Callable, TypeVar

import torch

logger = logging.getLogger(__name__)

Result = TypeVar("Result")

#: Upper limit of torch intra-op threads per engine step on CPU.
MAX_CPU_THREADS_PER_STEP = 4


def select_device() -> torch.device:
    """Return CUDA when present, else the CPU."""
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


def cpu_threads_per_step(cpu_count: int | None = None) -> int:
    """Return the torch thread cap: half the cores, between 1 and :data:`MAX_CPU_THREADS_PER_STEP`."""
    cores = cpu_count or os.cpu_count() or 1
    return max(1, min(MAX_CPU_THREADS_PER_STEP, cores // 2))


def describe_device(device: torch.device) -> str:
    """Return the CUDA device name, or "CPU, N threads" with torch's current thread count."""
    if device.type == "cuda":
        return f"{torch.cuda.get_device_name(device)} (CUDA)"
    return f"CPU, {torch.get_num_threads()} threads"


class PoolClosedError(RuntimeError):
    """The executor was shut down, as happens when the interpreter exits."""


class ComputePool:
    """The process-wide executor that runs every engine call of every session."""

    def __init__(self, device: torch.device):
        self.device = device
        if device.type == "cuda":
            workers = 1
        else:
            threads = cpu_threads_per_step()
            torch.set_num_threads(threads)
            workers = max(1, (os.cpu_count() or 1) // threads)
        self.workers = workers
        self.executor = concurrent.futures.ThreadPoolExecutor(max_workers=workers, thread_name_prefix="engine")
        logger.info("compute pool on %s with %d worker thread(s)", describe_device(device), workers)

    def run(self, function: Callable[[], Result]) -> Result:
        """Run ``function`` on the pool, wait for it and return its result (or raise its exception).

        Raises PoolClosedError once the executor has been shut down.
        """
        try:
            future = self.executor.submit(function)
        except RuntimeError as error:
            raise PoolClosedError("the compute pool is shut down") from error
        return future.result()


_pool: ComputePool | None = None
_pool_lock = threading.Lock()


def shared_pool() -> ComputePool:
    """Return the process's ComputePool, creating it on first use."""
    global _pool
    with _pool_lock:
        if _pool is None:
            _pool = ComputePool(select_device())
        return _pool
