"""Download links served through the gateway: ``{public_url}/v3/files/{key}?expires=<epoch>&signature=<mac>``.

Where clients cannot reach S3 at all, the links the API hands out (identifier ``url``, model ``dataUrl``) name
the gateway instead, which checks them and streams the object from S3 (gateway/web/files.py). The signature is
the capability, as in S3's own presigned URLs: HMAC-SHA256 over the expiry and the key, so neither can be changed,
and a link can name only an object the API chose to hand out. No bearer token is needed to follow one.

The secret lives in PostgreSQL (``link_signing_keys``), so every gateway process on every machine signs and
checks with the same one and nothing needs configuring. Links are signed with the newest key and accepted under
any key still stored: an operator rotates by inserting a row and revokes by deleting one.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import logging
import re
import secrets
import time
from urllib.parse import quote

import asyncpg

from gateway.errors import NotAllowed
from gateway.settings import Settings
from storage.queries import link_keys as q

log = logging.getLogger(__name__)

KEY_REFRESH_SECONDS = 60.0  # a key inserted (rotation) or deleted (revocation) reaches every process within this
MISS_REFRESH_SECONDS = 1.0  # a link no known key matches reloads the keys (another process may know a newer one),
# at most this often: a stream of forged links costs one small query a second, not one each
MAX_KEY_BYTES = 1024  # S3's longest key
_EXPIRES = re.compile(r"[0-9]{1,12}")
_SIGNATURE = re.compile(r"[A-Za-z0-9_-]{43}")  # 32 bytes, URL-safe base64 without padding
BAD_LINK = "this link is not valid: ask the API for a new one"
EXPIRED_LINK = "this link has expired: ask the API for a new one"
FILES_PATH = "/v3/files/"


def through_gateway(settings: Settings) -> bool:
    """Whether the links the API hands out are served by the gateway (ENGINESHED_LINKS, its ``auto`` rule)."""
    if settings.public_url is None:
        return False  # nothing to name (ENGINESHED_LINKS=gateway without it is refused at start)
    if settings.links == "auto":
        return settings.s3_public_endpoint_url is None
    return settings.links == "gateway"


def link_maker(settings: Settings, keys: LinkKeys) -> GatewayLinks | None:
    """The one choice of who serves the file links the API hands out, for the blob store: this gateway (a
    GatewayLinks), or S3 (None: presigned S3 URLs, for S3_PUBLIC_ENDPOINT_URL when set)."""
    if not through_gateway(settings) or settings.public_url is None:
        return None
    log.info("file links are served through %s%s (ENGINESHED_PUBLIC_URL)", settings.public_url.rstrip("/"), FILES_PATH)
    return GatewayLinks(keys, settings.public_url)


def signature(secret: bytes, key: str, expires: int) -> str:
    mac = hmac.new(secret, f"{expires}\n{key}".encode("utf-8", "surrogatepass"), hashlib.sha256).digest()
    return base64.urlsafe_b64encode(mac).rstrip(b"=").decode()


class LinkKeys:
    """This process's copy of the stored keys, newest first, reloaded when older than it may be."""

    def __init__(self, pool: asyncpg.Pool) -> None:
        self._pool = pool
        self._keys: list[tuple[int, bytes]] = []
        self._loaded_at = float("-inf")
        self._lock = asyncio.Lock()

    async def current(self, max_age: float = KEY_REFRESH_SECONDS) -> list[tuple[int, bytes]]:
        if time.monotonic() - self._loaded_at > max_age:
            async with self._lock:  # one reload at a time; those who waited use its result
                if time.monotonic() - self._loaded_at > max_age:
                    self._keys = await self._load()
                    self._loaded_at = time.monotonic()
        return self._keys

    async def _load(self) -> list[tuple[int, bytes]]:
        async with self._pool.acquire() as conn:
            keys = await q.all_keys(conn)
            if not keys:
                async with conn.transaction():
                    await q.ensure_first(conn, secrets.token_bytes(32))
                keys = await q.all_keys(conn)
        return keys


class GatewayLinks:
    """The blob store's link maker when links go through the gateway (see ``through_gateway``)."""

    def __init__(self, keys: LinkKeys, public_url: str) -> None:
        self._keys = keys
        self._base = public_url.rstrip("/") + FILES_PATH

    async def __call__(self, key: str, expires_in: int) -> str:
        _, secret = (await self._keys.current())[0]
        expires = int(time.time()) + expires_in
        return f"{self._base}{quote(key, safe='/')}?expires={expires}&signature={signature(secret, key, expires)}"


def _matches(keys: list[tuple[int, bytes]], key: str, expires: int, given: bytes) -> bool:
    # Every key is compared, each in constant time: how long a refusal takes says nothing of the right signature.
    found = False
    for _, secret in keys:
        found |= hmac.compare_digest(signature(secret, key, expires).encode(), given)
    return found


async def check(keys: LinkKeys, key: str, expires: str | None, given: str | None) -> int:
    """The link's expiry (epoch seconds) when ``given`` signs ``key`` and ``expires`` under a stored key and the
    link has not expired; NotAllowed otherwise."""
    if expires is None or given is None or not _EXPIRES.fullmatch(expires) or not _SIGNATURE.fullmatch(given):
        raise NotAllowed(BAD_LINK)
    if len(key.encode("utf-8", "surrogatepass")) > MAX_KEY_BYTES:
        raise NotAllowed(BAD_LINK)
    when = int(expires)
    mac = given.encode()
    if not _matches(await keys.current(), key, when, mac) and not _matches(
        await keys.current(MISS_REFRESH_SECONDS), key, when, mac
    ):
        raise NotAllowed(BAD_LINK)
    if when <= time.time():
        raise NotAllowed(EXPIRED_LINK)
    return when
