"""Peak resident memory of a process and of its descendants, sampled in a background thread."""

from __future__ import annotations

import contextlib
import threading

import psutil

MiB = 1024 * 1024


class RssSampler:
    """Samples every ``interval`` seconds; :meth:`window` starts a new peak measurement."""

    def __init__(self, pid: int, interval: float = 0.1) -> None:
        self.process = psutil.Process(pid)
        self.interval = interval
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="rss-sampler", daemon=True)
        self._reset()

    def _reset(self) -> None:
        self.samples = 0
        self.peak_self = 0
        self.peak_total = 0
        self.peak_children = 0
        self.max_children = 0

    def __enter__(self) -> RssSampler:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(5)

    def sample(self) -> tuple[int, int, int]:
        """(own RSS, sum of descendants' RSS, number of descendants) right now."""
        own = self.process.memory_info().rss
        children_rss = 0
        children = 0
        for child in self.process.children(recursive=True):
            with contextlib.suppress(psutil.Error):
                children_rss += child.memory_info().rss
                children += 1
        return own, children_rss, children

    def _loop(self) -> None:
        while not self._stop.is_set():
            with contextlib.suppress(psutil.Error):
                own, children_rss, children = self.sample()
                with self._lock:
                    self.samples += 1
                    self.peak_self = max(self.peak_self, own)
                    self.peak_children = max(self.peak_children, children_rss)
                    self.peak_total = max(self.peak_total, own + children_rss)
                    self.max_children = max(self.max_children, children)
            self._stop.wait(self.interval)

    def window(self) -> None:
        """Forget the peaks so far."""
        with self._lock:
            self._reset()

    def result(self) -> dict[str, float]:
        with self._lock:
            return {
                "peak_worker_rss_mib": round(self.peak_self / MiB, 1),
                "peak_children_rss_mib": round(self.peak_children / MiB, 1),
                "peak_worker_plus_children_rss_mib": round(self.peak_total / MiB, 1),
                "children_seen": self.max_children,
                "samples": self.samples,
            }
