"""What machine a benchmark ran on, for its result file: timings and float results differ between machines
of one kind (the same commands printed other digits on another 2-core CPU)."""

from __future__ import annotations

import platform
from pathlib import Path


def cpu_model() -> str:
    """What /proc/cpuinfo calls the CPU."""
    try:
        lines = Path("/proc/cpuinfo").read_text().splitlines()
    except OSError:
        return platform.processor()
    return next((line.split(":", 1)[1].strip() for line in lines if line.startswith("model name")), "")
