"""PostgreSQL 16 from the ``pgserver`` wheel, listening on a Unix socket only (never on TCP)."""

from __future__ import annotations

import atexit
import contextlib
import logging
import os
import signal
import subprocess
import threading
import time
from pathlib import Path
from typing import Any
from urllib.parse import quote

import psutil

from gateway.devstack.processes import DevStackError, EmbeddedServer, is_gone, log_tail, wait_gone


def _import_pgserver() -> Any:
    """Import pgserver, silencing platformdirs' warning about a missing XDG_RUNTIME_DIR.

    pgserver resolves its lock directory at import time; in containers without
    XDG_RUNTIME_DIR platformdirs warns and falls back to /tmp/runtime-<uid>, which is
    fine for us and should not surface as a warning (or an error under -W error).
    """
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        import pgserver
    # pgserver logs every initdb and pg_ctl run's whole output at INFO; a failure it logs at ERROR and raises,
    # and our own error carries the server log's tail. Start-up should show what engineshed says, not initdb.
    logging.getLogger("pgserver").setLevel(logging.WARNING)
    return pgserver


class EmbeddedPostgres(EmbeddedServer):
    """PostgreSQL 16 from the ``pgserver`` wheel, on a Unix socket in/near ``data_dir``.

    The data directory persists across :meth:`stop`/:meth:`start`. When running as root,
    pgserver runs the server as a ``pgserver`` system user (PostgreSQL refuses to run as
    root), creating that user and chowning ``data_dir`` to it.
    """

    #: The superuser role pgserver's ``initdb`` creates (trust auth on the socket).
    user = "postgres"

    def __init__(self, data_dir: Path | str, *, start_timeout: float = 60.0) -> None:
        super().__init__()
        self.data_dir = Path(data_dir).expanduser().resolve()
        self.start_timeout = start_timeout
        self._server: Any = None  # pgserver.PostgresServer once started
        self._lock = threading.Lock()
        #: Seconds the last :meth:`start` took (None before the first start).
        self.last_start_seconds: float | None = None

    # ---- paths and binaries

    @property
    def _system_user(self) -> str | None:
        # Mirrors pgserver: as root, the cluster is owned and run by "pgserver".
        return "pgserver" if os.name == "posix" and os.geteuid() == 0 else None

    @staticmethod
    def _bin(name: str) -> Path:
        _import_pgserver()
        from pgserver._commands import POSTGRES_BIN_PATH

        return Path(POSTGRES_BIN_PATH) / name

    @property
    def _pidfile(self) -> Path:
        return self.data_dir / "postmaster.pid"

    @property
    def log_path(self) -> Path:
        """Server log written by ``pg_ctl -l`` (pgserver puts it at ``data_dir/log``)."""
        return self.data_dir / "log"

    def _read_pidfile(self) -> list[str] | None:
        try:
            return self._pidfile.read_text().splitlines()
        except (FileNotFoundError, PermissionError):
            return None

    def _postmaster_process(self) -> psutil.Process | None:
        """The live postmaster for this data dir, or None (also for stale pid files)."""
        lines = self._read_pidfile()
        if not lines:
            return None
        try:
            pid = int(lines[0].strip())
            proc = psutil.Process(pid)
            if proc.status() == psutil.STATUS_ZOMBIE:
                return None
            name = proc.name()
        except (ValueError, psutil.NoSuchProcess):
            return None
        except psutil.AccessDenied:
            # Cannot inspect it; a foreign live pid is better treated as running than
            # deleting the lock file of a server that may be alive.
            return psutil.Process(pid) if psutil.pid_exists(pid) else None
        if name not in ("postgres", "postmaster"):
            # The pid was recycled by an unrelated process after a crash/reboot.
            return None
        try:
            cmdline = " ".join(proc.cmdline())
        except (psutil.AccessDenied, psutil.NoSuchProcess):
            return proc
        return proc if str(self.data_dir) in cmdline else None

    def _clear_stale_pidfile(self) -> None:
        """Remove ``postmaster.pid`` if no postmaster of ours is behind it.

        pgserver only asks "does a process with this pid exist?"; after a crash the pid
        can belong to anything, and pgserver would then report a server that is not
        there. PostgreSQL itself copes with a pid file whose pid is dead, but removing
        it here makes both layers agree.
        """
        if self._postmaster_process() is not None:
            return
        self._reap_orphans()
        self._pidfile.unlink(missing_ok=True)

    def _orphans(self) -> list[psutil.Process]:
        """Postgres processes still working in this data dir (all of them chdir there)."""
        found = []
        for proc in psutil.process_iter(["name"]):
            if proc.info.get("name") != "postgres":
                continue
            with contextlib.suppress(psutil.Error, OSError):
                if Path(proc.cwd()) == self.data_dir:
                    found.append(proc)
        return found

    def _reap_orphans(self, grace: float = 5.0) -> None:
        """Get rid of backends that outlived a crashed postmaster.

        They normally exit by themselves within milliseconds of noticing the postmaster
        is gone; while any is still attached to the old shared memory segment a new
        postmaster refuses to start ("pre-existing shared memory block is still in use").
        """
        deadline = time.monotonic() + grace
        while (orphans := self._orphans()) and time.monotonic() < deadline:
            time.sleep(0.1)
        for proc in orphans:
            with contextlib.suppress(psutil.Error):
                proc.kill()
        psutil.wait_procs(orphans, timeout=5)

    @property
    def is_running(self) -> bool:
        """Whether a postmaster serves this data dir right now."""
        return self._postmaster_process() is not None

    @property
    def pid(self) -> int | None:
        """Postmaster pid, or None if not running."""
        proc = self._postmaster_process()
        return proc.pid if proc else None

    # ---- lifecycle

    def start(self) -> None:
        """Start (or adopt) the server. Idempotent; initialises the cluster on first use.

        If a server is already running on this data dir (a previous ``engineshed dev``
        that was not shut down, or another handle in this process) it is reused.
        """
        with self._lock:
            t0 = time.monotonic()
            self.data_dir.parent.mkdir(parents=True, exist_ok=True)
            self._clear_stale_pidfile()
            self._server = self._get_server()
            self._register_atexit()
            self.last_start_seconds = time.monotonic() - t0

    def _get_server(self) -> Any:
        pgserver = _import_pgserver()
        from pgserver.postgres_server import PostgresServer

        # pgserver caches one handle per data dir and never re-checks it, so a cached
        # handle would describe a server we have since stopped: always build afresh.
        PostgresServer._instances.pop(self.data_dir, None)
        try:
            server = pgserver.get_server(self.data_dir, cleanup_mode=None)
        except (subprocess.TimeoutExpired, AssertionError):
            # pgserver gives pg_ctl a hard 10 s, and asserts status "ready" when it finds
            # a server still starting; crash recovery or a loaded 2-core box can hit
            # either while the server is in fact coming up. Wait for it, then let
            # pgserver adopt the now-running server.
            self._wait_ready(self.start_timeout)
            PostgresServer._instances.pop(self.data_dir, None)
            server = pgserver.get_server(self.data_dir, cleanup_mode=None)
        except subprocess.CalledProcessError as exc:
            raise DevStackError(
                f"PostgreSQL failed to start in {self.data_dir}: {exc}\n"
                f"--- tail of {self.log_path} ---\n{log_tail(self.log_path)}"
            ) from exc
        # We own the lifecycle (explicit stop()/atexit below); pgserver's own atexit hook
        # would fail on the handle we pop from its cache on the next start.
        atexit.unregister(server._cleanup)
        return server

    def _wait_ready(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            lines = self._read_pidfile()
            if lines and len(lines) >= 8 and lines[7].strip() == "ready" and self.is_running:
                return
            time.sleep(0.2)
        raise DevStackError(
            f"PostgreSQL in {self.data_dir} not ready after {timeout:.0f}s\n"
            f"--- tail of {self.log_path} ---\n{log_tail(self.log_path)}"
        )

    def stop(self, timeout: float = 20.0) -> None:
        """Fast shutdown (``pg_ctl -m fast stop``); escalates to signals if needed.

        Works whether or not this handle started the server, and independently of
        pgserver's reference counting, which can be confused by crashed processes.
        """
        with self._lock:
            proc = self._postmaster_process()
            if proc is not None:
                with contextlib.suppress(subprocess.SubprocessError, OSError):
                    subprocess.run(
                        [str(self._bin("pg_ctl")), "-D", str(self.data_dir),
                         "-m", "fast", "-w", "-t", str(int(timeout)), "stop"],
                        user=self._system_user,
                        stdout=subprocess.DEVNULL,
                        stderr=subprocess.DEVNULL,
                        timeout=timeout + 5,
                        check=False,
                    )
                # Whatever pg_ctl said, make sure the postmaster is gone:
                # SIGINT = fast shutdown, SIGQUIT = immediate, SIGKILL = last resort.
                for sig, wait in ((signal.SIGINT, 10.0), (signal.SIGQUIT, 5.0), (signal.SIGKILL, 5.0)):
                    if is_gone(proc):
                        break
                    with contextlib.suppress(psutil.Error):
                        proc.send_signal(sig)
                    wait_gone(proc, wait)
            self._clear_stale_pidfile()
            if self._server is not None:
                # Keep pgserver's on-disk handle list tidy for other pgserver users.
                with contextlib.suppress(Exception):
                    self._server.global_process_id_list.get_and_remove(os.getpid())
                from pgserver.postgres_server import PostgresServer

                PostgresServer._instances.pop(self.data_dir, None)
                self._server = None
            self._unregister_atexit()

    # ---- connection details

    def _socket_dir_and_port(self) -> tuple[str, int]:
        lines = self._read_pidfile()
        if not lines or len(lines) < 5 or not self.is_running:
            raise DevStackError("PostgreSQL is not running; call start() first")
        port = int(lines[3].strip() or 5432)
        socket_dir = lines[4].strip()
        if not socket_dir:
            raise DevStackError("PostgreSQL is not listening on a Unix socket")
        return socket_dir, port

    def dsn(self, database: str = "postgres") -> str:
        """libpq/asyncpg DSN for ``database`` over the Unix socket.

        Example: ``postgresql://postgres@/postgres?host=/path/to/pg&port=5432``.
        """
        socket_dir, port = self._socket_dir_and_port()
        return (
            f"postgresql://{self.user}@/{quote(database, safe='')}"
            f"?host={quote(socket_dir, safe='/')}&port={port}"
        )

    @property
    def url(self) -> str:
        """asyncpg-compatible DSN for the ``postgres`` database."""
        return self.dsn("postgres")

    @property
    def socket_dir(self) -> Path:
        """Directory holding the ``.s.PGSQL.<port>`` socket."""
        return Path(self._socket_dir_and_port()[0])

    def psql(self, sql: str, *, database: str = "postgres", variables: dict[str, str] | None = None) -> str:
        """Run an SQL script through the bundled ``psql`` (stdin), return its stdout."""
        cmd = [str(self._bin("psql")), "-X", "-q", "-A", "-t", "-v", "ON_ERROR_STOP=1", "-d", self.dsn(database)]
        for key, value in (variables or {}).items():
            cmd += ["-v", f"{key}={value}"]
        result = subprocess.run(cmd, input=sql, capture_output=True, text=True, timeout=60, check=False)
        if result.returncode != 0:
            raise DevStackError(f"psql failed ({result.returncode}): {result.stderr.strip()}")
        return result.stdout

    def create_database(self, name: str) -> str:
        """Create database ``name`` if it does not exist; return its DSN.

        Uses psql variable interpolation (``:'name'``) so the name is quoted by the
        server (``format('%I')``), never spliced into SQL by us.
        """
        self.psql(
            "SELECT format('CREATE DATABASE %I', :'dbname') "
            "WHERE NOT EXISTS (SELECT FROM pg_database WHERE datname = :'dbname')\\gexec\n",
            variables={"dbname": name},
        )
        return self.dsn(name)
