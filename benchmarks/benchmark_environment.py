"""The environment line that every benchmark prints above its table: date, hardware, device and threads."""
from __future__ import annotations

import datetime
import os
import platform

from thermalizer_core.models.checkpoint import describe_hardware


def environment_line(device: str) -> str:
    """Return the UTC date, hardware, device, CPU count and OMP_NUM_THREADS as one Markdown line."""
    return (f"{datetime.datetime.now(datetime.timezone.utc):%Y-%m-%d %H:%M} UTC; {describe_hardware()} on "
            f"{device}; {os.cpu_count()} CPU cores ({platform.processor() or platform.machine()}); "
            f"OMP_NUM_THREADS={os.environ.get('OMP_NUM_THREADS', 'unset')}")
