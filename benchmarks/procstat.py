"""Process memory as the kernel reports it: shared by the benchmarks, including those whose
measuring part runs in another Python (a separate venv without lookalike), so it imports
nothing but the standard library."""

from __future__ import annotations

from pathlib import Path


def rss_mb(field: str = "VmRSS") -> float:
    """Resident memory now (``VmRSS``) or at its peak (``VmHWM``) of this process, in MB."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1]) / 1024
    return float("nan")
