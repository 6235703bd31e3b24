"""Outbound URL fetches that refuse loopback, private, link-local and metadata addresses.

Every hop of a redirect is checked again, sizes and times are bounded, and only http(s) is spoken.
"""

from __future__ import annotations

import asyncio
import ipaddress
import socket
from collections.abc import AsyncIterator
from dataclasses import dataclass
from urllib.parse import urljoin, urlsplit

import httpx

MAX_REDIRECTS = 5


class FetchRefused(Exception):
    """The URL may not be fetched (scheme, address) or its answer was unusable."""

    def __init__(self, message: str, reason: str = "url_not_allowed") -> None:
        super().__init__(message)
        self.reason = reason


@dataclass(frozen=True, slots=True)
class FetchPolicy:
    allow_private: bool = False
    allowed_hosts: tuple[str, ...] = ()  # names, or CIDR ranges, that may resolve to private addresses
    timeout_seconds: float = 30.0
    max_bytes: int = 100 * 1024 * 1024

    def host_allowed(self, host: str, address: ipaddress.IPv4Address | ipaddress.IPv6Address) -> bool:
        if self.allow_private or address.is_global:
            return True
        for entry in self.allowed_hosts:
            if "/" in entry:
                if address in ipaddress.ip_network(entry, strict=False):
                    return True
            elif entry.lower() == host.lower():
                return True
        return False


def check_url_syntax(url: str) -> None:
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https"):
        raise FetchRefused(f"only http and https URLs can be fetched, not {parts.scheme or 'a bare path'!r}")
    if not parts.hostname:
        raise FetchRefused("the URL has no host")
    if parts.username or parts.password:
        raise FetchRefused("URLs with credentials are not fetched")


async def check_destination(url: str, policy: FetchPolicy) -> None:
    """Resolve the host and refuse unless every address it resolves to is allowed."""
    check_url_syntax(url)
    parts = urlsplit(url)
    host = parts.hostname or ""
    port = parts.port or (443 if parts.scheme == "https" else 80)
    try:
        literal = ipaddress.ip_address(host.strip("[]"))
        addresses = [literal]
    except ValueError:
        loop = asyncio.get_running_loop()
        try:
            infos = await asyncio.wait_for(loop.getaddrinfo(host, port, type=socket.SOCK_STREAM), timeout=10)
        except (OSError, asyncio.TimeoutError) as exc:
            raise FetchRefused(f"the host {host!r} could not be resolved", "url_not_found") from exc
        addresses = [ipaddress.ip_address(info[4][0].split("%")[0]) for info in infos]
    for address in addresses:
        mapped = getattr(address, "ipv4_mapped", None)
        effective = mapped or address
        if not policy.host_allowed(host, effective):
            raise FetchRefused(f"the URL's host {host!r} resolves to a non-public address, which is not allowed")


class RemoteResponse:
    """An open, checked response: its content type and a size-bounded body stream."""

    def __init__(self, response: httpx.Response, policy: FetchPolicy) -> None:
        self._response = response
        self._policy = policy
        self.content_type = response.headers.get("content-type", "application/octet-stream").split(";")[0].strip()
        declared = response.headers.get("content-length")
        if declared and declared.isdigit() and int(declared) > policy.max_bytes:
            raise FetchRefused(f"the remote file is larger than {policy.max_bytes} bytes", "invalid_data")

    async def chunks(self) -> AsyncIterator[bytes]:
        seen = 0
        async for chunk in self._response.aiter_bytes(64 * 1024):
            seen += len(chunk)
            if seen > self._policy.max_bytes:
                raise FetchRefused(f"the remote file is larger than {self._policy.max_bytes} bytes", "invalid_data")
            yield chunk

    async def aclose(self) -> None:
        await self._response.aclose()


async def open_url(client: httpx.AsyncClient, url: str, policy: FetchPolicy) -> RemoteResponse:
    """GET a URL, following redirects by hand so each hop's address is checked."""
    current = url
    for _ in range(MAX_REDIRECTS + 1):
        await check_destination(current, policy)
        try:
            request = client.build_request("GET", current)
            response = await client.send(request, stream=True, follow_redirects=False)
        except httpx.TimeoutException as exc:
            raise FetchRefused(f"fetching {current} timed out", "url_timeout") from exc
        except httpx.HTTPError as exc:
            raise FetchRefused(f"fetching {current} failed: {exc.__class__.__name__}", "url_error") from exc
        if response.is_redirect:
            location = response.headers.get("location")
            await response.aclose()
            if not location:
                raise FetchRefused("a redirect without a location", "url_error")
            current = urljoin(current, location)
            continue
        if response.status_code == 404:
            await response.aclose()
            raise FetchRefused(f"{url} was not found (HTTP 404)", "url_not_found")
        if response.status_code >= 400:
            await response.aclose()
            raise FetchRefused(f"{url} answered HTTP {response.status_code}", "url_error")
        try:
            return RemoteResponse(response, policy)
        except FetchRefused:
            await response.aclose()
            raise
    raise FetchRefused("too many redirects", "url_error")


async def fetch_bytes(client: httpx.AsyncClient, url: str, policy: FetchPolicy) -> tuple[bytes, str]:
    remote = await open_url(client, url, policy)
    try:
        body = bytearray()
        async for chunk in remote.chunks():
            body += chunk
        return bytes(body), remote.content_type
    finally:
        await remote.aclose()


def make_client(policy: FetchPolicy) -> httpx.AsyncClient:
    # No proxies from the environment: the address check must see where we really connect.
    return httpx.AsyncClient(
        timeout=httpx.Timeout(policy.timeout_seconds, connect=min(10.0, policy.timeout_seconds)),
        follow_redirects=False,
        trust_env=False,
        headers={"user-agent": "engineshed/0.1"},
        limits=httpx.Limits(max_connections=64, max_keepalive_connections=16),
    )
