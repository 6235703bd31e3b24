"""The directory in which the processes of one deployment on one machine share their metric values.

prometheus-client's multi-process mode: every process writes its counters and histograms to files named by its
pid in PROMETHEUS_MULTIPROC_DIR, and whichever process serves /metrics sums them. The library reads the variable
when it is first imported, so the command line sets it before anything imports ``prometheus_client``.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

from gateway.settings import Settings

VARIABLE = "PROMETHEUS_MULTIPROC_DIR"
_prepared: list[Path] = []  # the directory this process writes to, once prepare() ran


def directory(settings: Settings) -> Path:
    return (settings.metrics_dir or settings.data_dir / "metrics").resolve()


def prepare(settings: Settings, *, clean: bool) -> Path:
    """Create the directory and point this process (and the processes it starts) at it. ``clean``: a new
    deployment starts (`serve`, `dev`), so values of processes of an earlier one are removed."""
    path = directory(settings)
    if "prometheus_client" in sys.modules and os.environ.get(VARIABLE) != str(path):
        raise RuntimeError("prometheus_client was imported before its multi-process directory was set")
    path.mkdir(parents=True, exist_ok=True)
    if clean:
        for stale in path.glob("*.db"):
            stale.unlink(missing_ok=True)
    os.environ[VARIABLE] = str(path)
    _prepared[:] = [path]
    return path


def shared() -> bool:
    """Whether this process writes its values to the shared directory."""
    return bool(_prepared)


def mark_dead(pid: int) -> None:
    """Drop the live gauges of a process that ended (its counters and histograms keep counting in the sum)."""
    if shared():
        from prometheus_client import multiprocess

        multiprocess.mark_process_dead(pid)
