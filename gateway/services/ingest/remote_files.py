"""Outbound URL fetches that refuse loopback, private, link-local and metadata addresses.

Every hop of a redirect is checked again, sizes and times are bounded, and only http(s) is spoken.
"""

from __future__ import annotations

import asyncio
import ipaddress
import socket
import time
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
    timeout_seconds: float = 30.0  # connect and each read
    max_bytes: int = 100 * 1024 * 1024
    total_seconds: float = 300.0  # the whole fetch: a server dripping bytes cannot hold it open

    def host_allowed(self, host: str, address: ipaddress.IPv4Address | ipaddress.IPv6Address) -> bool:
        if self.allow_private:
            return True
        embedded = embedded_ipv4(address)
        if embedded is not None:
            address = embedded
        if address.is_global and not (address.version == 6 and address in _SITE_LOCAL):
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


_SITE_LOCAL = ipaddress.ip_network("fec0::/10")
_NAT64 = (ipaddress.ip_network("64:ff9b::/96"), ipaddress.ip_network("64:ff9b:1::/48"))
_IPV4_COMPATIBLE = ipaddress.ip_network("::/96")


def embedded_ipv4(address: ipaddress.IPv4Address | ipaddress.IPv6Address) -> ipaddress.IPv4Address | None:
    """The IPv4 address an IPv6 form carries (mapped, 6to4, Teredo, NAT64, IPv4-compatible), if any.

    Python's ``is_global`` judges these forms by their IPv6 range, so ``64:ff9b::a00:1`` (10.0.0.1 through
    NAT64) would pass as public; the check must look at the IPv4 address they reach.
    """
    if address.version == 4:
        return None
    if address.ipv4_mapped is not None:
        return address.ipv4_mapped
    if address.sixtofour is not None:
        return address.sixtofour
    if address.teredo is not None:
        return address.teredo[1]
    if any(address in net for net in _NAT64) or (address in _IPV4_COMPATIBLE and int(address) > 1):
        return ipaddress.IPv4Address(int(address) & 0xFFFFFFFF)
    return None


async def check_destination(url: str, policy: FetchPolicy) -> list[str]:
    """Resolve the host and refuse unless every address it resolves to is allowed; returns them."""
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
        if not policy.host_allowed(host, address):
            raise FetchRefused(f"the URL's host {host!r} resolves to a non-public address, which is not allowed")
    return [str(a) for a in addresses]


def pinned_request(client: httpx.AsyncClient, url: str, address: str) -> httpx.Request:
    """A request that connects to the address we checked, not to whatever a second DNS lookup returns
    (DNS rebinding); the Host header and TLS server name stay the URL's host."""
    parts = urlsplit(url)
    host = parts.hostname or ""
    literal = f"[{address}]" if ":" in address else address
    netloc = literal + (f":{parts.port}" if parts.port else "")
    target = parts._replace(netloc=netloc).geturl()
    host_header = parts.netloc.rpartition("@")[2]
    extensions = {"sni_hostname": host} if parts.scheme == "https" else {}
    return client.build_request("GET", target, headers={"Host": host_header}, extensions=extensions)


class RemoteResponse:
    """An open, checked response: its content type and a size-bounded body stream."""

    def __init__(self, response: httpx.Response, policy: FetchPolicy, deadline: float) -> None:
        self._response = response
        self._policy = policy
        self._deadline = deadline
        self.content_type = response.headers.get("content-type", "application/octet-stream").split(";")[0].strip()
        declared = response.headers.get("content-length")
        if declared and declared.isdigit() and int(declared) > policy.max_bytes:
            raise FetchRefused(f"the remote file is larger than {policy.max_bytes} bytes", "invalid_data")

    async def chunks(self) -> AsyncIterator[bytes]:
        seen = 0
        async for chunk in self._guarded(self._response.aiter_bytes(64 * 1024)):
            seen += len(chunk)
            if time.monotonic() > self._deadline:
                raise FetchRefused(f"the remote file took longer than {self._policy.total_seconds:g} s", "url_timeout")
            if seen > self._policy.max_bytes:
                raise FetchRefused(f"the remote file is larger than {self._policy.max_bytes} bytes", "invalid_data")
            yield chunk

    async def aclose(self) -> None:
        await self._response.aclose()

    async def _guarded(self, stream: AsyncIterator[bytes]) -> AsyncIterator[bytes]:
        """The body's own failures (a stall past the read timeout, a reset) as FetchRefused, like the headers'."""
        try:
            async for chunk in stream:
                yield chunk
        except httpx.TimeoutException as exc:
            raise FetchRefused("the remote file stopped arriving (read timeout)", "url_timeout") from exc
        except httpx.HTTPError as exc:
            raise FetchRefused(f"reading the remote file failed: {exc.__class__.__name__}", "url_error") from exc


async def open_url(client: httpx.AsyncClient, url: str, policy: FetchPolicy) -> RemoteResponse:
    """GET a URL, following redirects by hand so each hop's address is checked."""
    current = url
    deadline = time.monotonic() + policy.total_seconds
    for _ in range(MAX_REDIRECTS + 1):
        addresses = await check_destination(current, policy)
        try:
            request = pinned_request(client, current, addresses[0])
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
            return RemoteResponse(response, policy, deadline)
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
