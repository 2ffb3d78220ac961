"""Fixed-size ring buffers for per-step records, so memory does not grow with the number of steps."""
from __future__ import annotations

import numpy as np


class RingBuffer:
    """The last ``capacity`` rows of shape ``row_shape``, stored in one preallocated NumPy array."""

    def __init__(self, capacity: int, row_shape: tuple[int, ...], dtype: np.dtype | type = np.float32):
        if capacity < 1:
            raise ValueError(f"ring buffer capacity must be at least 1, got {capacity}")
        self.capacity = capacity
        self.data = np.zeros((capacity, *row_shape), dtype=dtype)
        self.total = 0

    def append(self, row: np.ndarray) -> None:
        self.data[self.total % self.capacity] = row
        self.total += 1

    def __len__(self) -> int:
        return min(self.total, self.capacity)

    def latest(self) -> np.ndarray:
        """Return a copy of the newest row; raise IndexError when the buffer is empty."""
        if self.total == 0:
            raise IndexError("the ring buffer is empty")
        return self.data[(self.total - 1) % self.capacity].copy()

    def values(self) -> np.ndarray:
        """Return a copy of the stored rows, oldest first, shape ``(len(self), *row_shape)``."""
        if self.total <= self.capacity:
            return self.data[: self.total].copy()
        start = self.total % self.capacity
        return np.concatenate([self.data[start:], self.data[:start]])

    def clear(self) -> None:
        self.total = 0
