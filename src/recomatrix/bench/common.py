"""Small helpers every benchmark shares: percentiles, memory, machine and library versions."""

from __future__ import annotations

import gc
import os
import platform
from collections.abc import Iterable
from pathlib import Path

import numpy as np


def percentiles(samples_ms: Iterable[float], *, digits: int = 4) -> dict[str, float]:
    """p50/p99/p99.9 and mean of latencies in milliseconds."""
    values = np.fromiter(samples_ms, dtype=np.float64)
    if len(values) == 0:
        return {"p50": float("nan"), "p99": float("nan"), "p999": float("nan")}
    return {
        "p50": round(float(np.percentile(values, 50)), digits),
        "p99": round(float(np.percentile(values, 99)), digits),
        "p999": round(float(np.percentile(values, 99.9)), digits),
        "mean": round(float(values.mean()), digits),
    }


def rss_mb(pid: int | str = "self") -> float:
    """Resident memory of a process now, in MiB (Linux /proc)."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def release_free_memory() -> None:
    """Hand memory that was freed but kept by the C allocator back to the OS (glibc).

    Start-up builds large temporary arrays; glibc keeps much of the freed heap for reuse,
    which RSS then counts. A server would do the same once after start-up.
    """
    import ctypes

    gc.collect()
    try:
        ctypes.CDLL("libc.so.6").malloc_trim(0)
    except (OSError, AttributeError):  # not glibc: nothing to do
        pass


def machine() -> dict[str, object]:
    """CPU model, cores and memory of this machine, and the Python version."""
    cpu = platform.processor() or platform.machine()
    cpuinfo = Path("/proc/cpuinfo")
    if cpuinfo.exists():
        for line in cpuinfo.read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    memory_gb = float("nan")
    meminfo = Path("/proc/meminfo")
    if meminfo.exists():
        memory_gb = round(int(meminfo.read_text().split()[1]) / 1024**2, 1)
    return {
        "cpu": cpu,
        "cores": os.cpu_count(),
        "memory_gb": memory_gb,
        "python": platform.python_version(),
        "os": platform.platform(),
    }


# Import name -> distribution name, where they differ.
_DISTRIBUTIONS = {"faiss": "faiss-cpu"}


def versions(*modules: str) -> dict[str, str]:
    """Installed version of each package (by its distribution), "n/a" when not installed."""
    from importlib.metadata import PackageNotFoundError, version

    out = {}
    for name in modules:
        try:
            out[name] = version(_DISTRIBUTIONS.get(name, name))
        except PackageNotFoundError:
            out[name] = "n/a"
    return out
