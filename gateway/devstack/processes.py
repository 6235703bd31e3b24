"""Process helpers shared by the embedded servers: free ports, waiting for a process to
exit, log tails for error messages, the pre-exec hook that ties a child to its parent, and
the lifecycle both servers share (restart, stop at interpreter exit)."""

from __future__ import annotations

import abc
import atexit
import contextlib
import ctypes
import os
import signal
import socket
import sys
import time
from pathlib import Path
from typing import Any

import psutil


class DevStackError(RuntimeError):
    """An embedded service failed to start or stop."""


class EmbeddedServer(abc.ABC):
    """A server process this interpreter starts and must stop, even when it exits without
    calling :meth:`stop`: pg_ctl daemonises the postmaster and weed runs in its own
    session, so nothing else would stop them at exit."""

    def __init__(self) -> None:
        self._atexit_registered = False

    @abc.abstractmethod
    def start(self) -> None: ...

    @abc.abstractmethod
    def stop(self) -> None: ...

    def restart(self) -> None:
        """Stop and start again on the same data dir, socket and ports (same endpoint URL)."""
        self.stop()
        self.start()

    def _register_atexit(self) -> None:
        if not self._atexit_registered:
            atexit.register(self._atexit_stop)
            self._atexit_registered = True

    def _unregister_atexit(self) -> None:
        if self._atexit_registered:
            atexit.unregister(self._atexit_stop)
            self._atexit_registered = False

    def _atexit_stop(self) -> None:
        with contextlib.suppress(Exception):
            self.stop()


def find_free_port(host: str = "127.0.0.1") -> int:
    """Return a TCP port on ``host`` that nobody listens on right now.

    The kernel picks it (bind to port 0). There is an unavoidable race between closing
    the probe socket and the real server binding the port, which is acceptable for
    dev and test use.
    """
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])


def port_is_free(port: int, host: str = "127.0.0.1") -> bool:
    """Whether ``port`` can be bound for listening on ``host``.

    SO_REUSEADDR mirrors what Go listeners do, so connections lingering in TIME_WAIT
    from a previous run do not count as "busy".
    """
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host, port))
        except OSError:
            return False
        return True


# SeaweedFS derives a gRPC port as "HTTP port + 10000" in places where an explicit
# ``-*.port.grpc`` flag is not consulted (in weed 4.48 the mini-mode maintenance worker
# dials the admin server at admin.port + 10000 even when -admin.port.grpc says
# otherwise). Picking every HTTP port so that port + 10000 is free too, and passing
# exactly that as the gRPC port, keeps both code paths pointing at the same listener.
_GRPC_OFFSET = 10000
_MAX_PORT = 65535


def find_port_pair(reserved: set[int], host: str = "127.0.0.1") -> tuple[int, int]:
    """Pick ``(http, http + 10000)`` with both ports free and not in ``reserved``."""
    for _ in range(500):
        port = find_free_port(host)
        grpc = port + _GRPC_OFFSET
        if grpc > _MAX_PORT or port in reserved or grpc in reserved:
            continue
        if port_is_free(grpc, host):
            return port, grpc
    raise DevStackError("could not find a free pair of ports (port, port+10000)")


def is_gone(proc: psutil.Process) -> bool:
    """Exited, counting zombies as exited (a daemonised postmaster is not our child,
    so its zombie lingers until init gets round to reaping it)."""
    try:
        return not proc.is_running() or proc.status() == psutil.STATUS_ZOMBIE
    except psutil.Error:
        return True


def wait_gone(proc: psutil.Process, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while not is_gone(proc):
        if time.monotonic() >= deadline:
            return False
        time.sleep(0.05)
    return True


def log_tail(path: Path, max_bytes: int = 6000) -> str:
    """Last ``max_bytes`` of a log file, for error messages."""
    try:
        with path.open("rb") as fh:
            fh.seek(0, os.SEEK_END)
            size = fh.tell()
            fh.seek(max(0, size - max_bytes))
            return fh.read().decode("utf-8", "replace")
    except OSError as exc:
        return f"<could not read {path}: {exc}>"


_PR_SET_PDEATHSIG = 1
_prctl: Any = None


def load_prctl() -> Any:
    """Resolve libc's prctl in the parent: dlopen after fork can deadlock."""
    global _prctl
    if _prctl is None and sys.platform.startswith("linux"):
        with contextlib.suppress(Exception):
            _prctl = ctypes.CDLL(None, use_errno=True).prctl
    return _prctl


def child_preexec(parent_death_signal: bool) -> None:
    """Runs in the forked child before exec.

    ``start_new_session`` already puts the child in its own session/process group, so a
    Ctrl-C in the terminal reaches only the Python parent, which then shuts the child
    down in order. PDEATHSIG additionally makes the kernel SIGTERM the child if the
    parent dies without running its cleanup (SIGKILL, crash). PDEATHSIG fires when the
    *thread* that forked exits, so it is only requested from the main thread.
    """
    if parent_death_signal and _prctl is not None:
        with contextlib.suppress(Exception):
            _prctl(_PR_SET_PDEATHSIG, int(signal.SIGTERM), 0, 0, 0)
