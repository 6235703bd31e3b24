"""Where the server is and which token to send: arguments, then ENGINESHED_URL / ENGINESHED_TOKEN (read through
the project's typed settings), then the local ``make run`` stack (``engineshed dev``) and its admin token file (sent only to a gateway on loopback)."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from engineshed.client.errors import EngineshedError

LOOPBACK_HOSTS = ("localhost", "127.0.0.1", "::1")


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


def resolve(url: str | None = None, token: str | None = None, *, data_dir: Path | None = None) -> Connection:
    """The URL and token to use; ``data_dir``: the dev stack's (default: ENGINESHED_DATA_DIR or ``.engineshed``)."""
    from gateway import dev_connection
    from gateway.settings import Settings, SettingsError

    try:
        settings = Settings.from_env(os.environ)
    except SettingsError as exc:
        raise EngineshedError(str(exc)) from None
    source = "arguments" if url else "ENGINESHED_URL" if settings.client_url else ""
    url = url or settings.client_url
    token = token or settings.client_token
    directory = Path(data_dir) if data_dir is not None else settings.data_dir
    if url is None:
        try:
            url = dev_connection.read(directory).graphql_url
            source = f"the `engineshed dev` running on {directory}"
        except dev_connection.NoDevStack:
            url = f"http://{settings.host}:{settings.port}/v3/graphql"
            source = f"the default local gateway (no `engineshed dev` found in {directory})"
    # The dev admin token is sent only to a gateway on this machine: never to a remote --url / ENGINESHED_URL.
    if token is None and _is_loopback(url):
        token_file = directory / "admin-token"
        try:
            token = token_file.read_text().strip() or None
        except OSError:
            token = None
    return Connection(url=url, token=token, source=source)
