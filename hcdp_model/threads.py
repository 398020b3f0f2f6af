"""CPU threads for inference: a default that does not oversubscribe a shared machine.

torch's default (one thread per core) made `hcdp bag` ten times slower on a busy 2-core machine
(2.2-2.9 s per frame against 0.21 s with one thread): every OpenMP thread spins while it waits for
the others, and a core shared with other jobs keeps one of them waiting. Half the CPUs this process
may run on (at most 4, at least 1) leaves room for the rest of the machine; `OMP_NUM_THREADS`, when
set, is taken as the user's choice.
"""
from __future__ import annotations

import os

MAX_DEFAULT_THREADS = 4  # beyond this the tiny and small presets gain little on CPU


def available_cpus() -> int:
    """Count the CPUs this process may run on (its affinity mask where the OS has one)."""
    if hasattr(os, "sched_getaffinity"):
        return max(1, len(os.sched_getaffinity(0)))
    return max(1, os.cpu_count() or 1)


def default_threads() -> int:
    """`OMP_NUM_THREADS` when set to a positive integer, else half the available CPUs (1..4)."""
    value = os.environ.get("OMP_NUM_THREADS", "")
    if value.isdigit() and int(value) > 0:
        return int(value)
    return max(1, min(MAX_DEFAULT_THREADS, available_cpus() // 2))


def set_threads(threads: int) -> None:
    """Use `threads` intra-op threads in torch (ONNX Runtime sessions follow torch's count)."""
    import torch

    if threads < 1:
        raise ValueError(f"expected threads >= 1, got {threads}")
    torch.set_num_threads(threads)
