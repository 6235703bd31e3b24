"""Where the server is and which token to send: arguments, then ENGINESHED_URL / ENGINESHED_TOKEN, then the local
``make run`` stack (``engineshed dev``) and its admin token file (sent only to a gateway on loopback).

The client reads these variables and the dev stack's connection file itself: it shares no code with the server,
only the file's format (written by ``gateway/dev_connection.py``).
"""

from __future__ import annotations

import os
import shlex
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import psutil

from engineshed.client.errors import EngineshedError

DEFAULT_DATA_DIR = Path(".engineshed")
DEV_CONNECTION_FILE = "connection.env"
LOOPBACK_HOSTS = ("localhost", "127.0.0.1", "::1")

# What a caller without a token is told, by the client and the command line alike.
NO_TOKEN = ("no token was sent: pass one (token= in Python, --token on the command line), set ENGINESHED_TOKEN, "
            "or start `make run` (it writes .engineshed/admin-token)")


def _is_loopback(url: str) -> bool:
    from ipaddress import ip_address
    from urllib.parse import urlsplit

    host = (urlsplit(url).hostname or "").lower()
    if host in LOOPBACK_HOSTS:
        return True
    try:
        return ip_address(host).is_loopback
    except ValueError:
        return False


@dataclass(frozen=True, slots=True)
class Connection:
    url: str
    token: str | None
    source: str  # where they came from, for error messages: "arguments", "environment", "engineshed dev (…)"


def _setting(env: Mapping[str, str], name: str) -> str | None:
    """A variable's value; empty counts as unset, as for the server's settings."""
    return env.get(name) or None


def _default_url(env: Mapping[str, str]) -> str:
    """The gateway ``engineshed serve`` starts with the same environment: ENGINESHED_HOST and PORT."""
    host = _setting(env, "ENGINESHED_HOST") or "127.0.0.1"
    port = _setting(env, "PORT") or "8000"
    try:
        number = int(port)
    except ValueError:
        raise EngineshedError(f"PORT={port!r} is not a valid int") from None
    return f"http://{host}:{number}/v3/graphql"


def _is_dev_process(pid: int) -> bool:
    try:
        process = psutil.Process(pid)
        return process.status() != psutil.STATUS_ZOMBIE and "dev" in process.cmdline()
    except psutil.Error:
        return False


def dev_graphql_url(data_dir: Path) -> str | None:
    """The API of the ``engineshed dev`` running on ``data_dir``, from the connection file it keeps there while it
    runs; None when there is no such file, it is unreadable or malformed, or the ``dev`` that wrote it is gone."""
    try:
        text = (Path(data_dir) / DEV_CONNECTION_FILE).resolve().read_text()
    except OSError:
        return None
    values: dict[str, str] = {}
    try:
        for line in text.splitlines():
            line = line.strip()
            if not line or line.startswith("#") or "=" not in line:
                continue
            name, _, raw = line.partition("=")
            parts = shlex.split(raw)
            values[name.strip()] = parts[0] if parts else ""
        pid = int(values["ENGINESHED_DEV_PID"])
        url = values["GRAPHQL_URL"]
    except (KeyError, ValueError):
        return None
    return url if _is_dev_process(pid) else None


def resolve(url: str | None = None, token: str | None = None, *, data_dir: Path | None = None) -> Connection:
    """The URL and token to use; ``data_dir``: the dev stack's (default: ENGINESHED_DATA_DIR or ``.engineshed``)."""
    env = os.environ
    given_url = _setting(env, "ENGINESHED_URL")
    source = "arguments" if url else "ENGINESHED_URL" if given_url else ""
    url = url or given_url
    token = token or _setting(env, "ENGINESHED_TOKEN")
    data_dir_setting = _setting(env, "ENGINESHED_DATA_DIR")
    directory = Path(data_dir) if data_dir is not None else Path(data_dir_setting) if data_dir_setting else DEFAULT_DATA_DIR
    if url is None:
        url = dev_graphql_url(directory)
        if url is not None:
            source = f"the `engineshed dev` running on {directory}"
        else:
            url = _default_url(env)
            source = f"the default local gateway (no `engineshed dev` found in {directory})"
    # The dev admin token is sent only to a gateway on this machine: never to a remote --url / ENGINESHED_URL.
    if token is None and _is_loopback(url):
        token_file = directory / "admin-token"
        try:
            token = token_file.read_text().strip() or None
        except OSError:
            token = None
    return Connection(url=url, token=token, source=source)
