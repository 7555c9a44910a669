"""The idle worker processes Ray prestarts at ``ray.init``, as seen from the driver that started
the local cluster (tests and benchmarks check that trials land on them)."""

from __future__ import annotations

import time

__all__ = ["idle_worker_processes", "wait_for_idle_workers"]


def idle_worker_processes() -> list:
    """This process's idle Ray workers (``ray::IDLE``) as ``psutil.Process`` objects."""
    # isort: off
    import ray  # noqa: F401  (first: it puts the psutil Ray bundles on the path)
    import psutil
    # isort: on

    found = []
    for proc in psutil.Process().children(recursive=True):
        try:
            if proc.cmdline()[:1] == ["ray::IDLE"] or proc.name() == "ray::IDLE":
                found.append(proc)
        except psutil.Error:
            pass
    return found


def wait_for_idle_workers(count: int, timeout: float = 60.0) -> set[int]:
    """PIDs of the idle Ray workers once there are at least ``count`` (or when ``timeout`` s
    have passed)."""
    deadline = time.time() + timeout
    while len(idle_worker_processes()) < count and time.time() < deadline:
        time.sleep(0.1)
    return {proc.pid for proc in idle_worker_processes()}
