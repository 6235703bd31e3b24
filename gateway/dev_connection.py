"""The connection file a running ``engineshed dev`` leaves in its data dir.

The embedded stack listens on a Unix socket in the data dir and on S3 ports picked at start, with keys
generated once: nothing a user could guess. ``dev`` writes them to ``<data dir>/connection.env``, readable
by the owner only, so the admin commands (``engineshed token create``, ``engineshed migrate``) find the
stack by themselves and an engine developer can ``set -a; . .engineshed/connection.env; set +a``. It is
removed when ``dev`` stops; one left behind by a killed ``dev`` names a process that is gone, and is
refused as such.

The client (engineshed/client/connection.py) reads GRAPHQL_URL and ENGINESHED_DEV_PID from the file with its
own parser, since it imports nothing of the server: those two names and the line format are a contract.
"""

from __future__ import annotations

import os
import shlex
from dataclasses import dataclass
from pathlib import Path

import psutil

FILE_NAME = "connection.env"


class NoDevStack(RuntimeError):
    """No running ``engineshed dev`` could be found through the data dir."""


@dataclass(frozen=True, slots=True)
class DevConnection:
    database_url: str
    s3_endpoint_url: str
    s3_bucket: str
    s3_region: str
    aws_access_key_id: str
    aws_secret_access_key: str
    graphql_url: str
    pid: int

    # Variable names as the settings (gateway/settings.py) read them, so the file can be sourced.
    _NAMES = (
        ("database_url", "DATABASE_URL"),
        ("s3_endpoint_url", "S3_ENDPOINT_URL"),
        ("s3_bucket", "S3_BUCKET"),
        ("s3_region", "AWS_REGION"),
        ("aws_access_key_id", "AWS_ACCESS_KEY_ID"),
        ("aws_secret_access_key", "AWS_SECRET_ACCESS_KEY"),
        ("graphql_url", "GRAPHQL_URL"),
        ("pid", "ENGINESHED_DEV_PID"),
    )

    def render(self) -> str:
        lines = ["# written by `engineshed dev` while it runs; removed when it stops. Owner-only: it holds keys."]
        lines += [f"{env}={shlex.quote(str(getattr(self, attr)))}" for attr, env in self._NAMES]
        return "\n".join(lines) + "\n"

    @classmethod
    def parse(cls, text: str) -> DevConnection:
        values: dict[str, str] = {}
        for line in text.splitlines():
            line = line.strip()
            if not line or line.startswith("#") or "=" not in line:
                continue
            name, _, raw = line.partition("=")
            parts = shlex.split(raw)
            values[name.strip()] = parts[0] if parts else ""
        missing = [env for _, env in cls._NAMES if env not in values]
        if missing:
            raise ValueError(f"missing {', '.join(missing)}")
        kwargs: dict[str, object] = {attr: values[env] for attr, env in cls._NAMES}
        kwargs["pid"] = int(values["ENGINESHED_DEV_PID"])
        return cls(**kwargs)  # type: ignore[arg-type]


def path_in(data_dir: Path) -> Path:
    return Path(data_dir) / FILE_NAME


def write_private(path: Path, text: str) -> None:
    """Replace ``path`` atomically with a file created 0600 (never readable by others, not even for a moment)."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.unlink(missing_ok=True)
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as fh:
        fh.write(text)
    os.replace(tmp, path)


def write(data_dir: Path, connection: DevConnection) -> Path:
    path = path_in(data_dir)
    write_private(path, connection.render())
    return path


def remove(data_dir: Path, pid: int) -> None:
    """Remove the file if it is still this process's (a newer ``dev`` on the same dir keeps its own)."""
    path = path_in(data_dir)
    try:
        current = DevConnection.parse(path.read_text())
    except (OSError, ValueError):
        return
    if current.pid == pid:
        path.unlink(missing_ok=True)


def _is_dev_process(pid: int) -> bool:
    try:
        process = psutil.Process(pid)
        return process.status() != psutil.STATUS_ZOMBIE and "dev" in process.cmdline()
    except psutil.Error:
        return False


def read(data_dir: Path) -> DevConnection:
    """The connection of the ``engineshed dev`` running on ``data_dir``, or :class:`NoDevStack` saying why not."""
    path = path_in(data_dir).resolve()
    try:
        text = path.read_text()
    except FileNotFoundError:
        raise NoDevStack(
            f"no running `engineshed dev` found: {path} does not exist. Start one (`make run`), point at its "
            "data dir with --data-dir, or set DATABASE_URL and S3_ENDPOINT_URL"
        ) from None
    except OSError as exc:
        raise NoDevStack(f"cannot read {path}: {exc.strerror}") from None
    try:
        connection = DevConnection.parse(text)
    except ValueError as exc:
        raise NoDevStack(f"{path} is not a connection file written by `engineshed dev` ({exc})") from None
    if not _is_dev_process(connection.pid):
        raise NoDevStack(
            f"the `engineshed dev` that wrote {path} (pid {connection.pid}) is no longer running; start it again"
        )
    return connection
