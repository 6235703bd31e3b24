"""open_resources(): everything a process shares, opened once and closed once."""

from __future__ import annotations

import ctypes
import logging
import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import asyncpg
import httpx
from aiolimiter import AsyncLimiter
from cachetools import LRUCache

from gateway.events import EventHub
from gateway.observability import metrics
from gateway.services.ingest.remote_files import FetchPolicy, make_client
from gateway.services.links import LinkKeys, link_maker
from gateway.settings import Settings
from storage.blobs import BlobStore, connect_blobs
from storage.db import connection_name, connect_pool
from storage.migrate import migrate

if TYPE_CHECKING:
    from engines.interface import Engine

log = logging.getLogger(__name__)

def _size(value: bytes) -> int:
    return len(value)


def _bytes_cache(max_bytes: int) -> LRUCache[str, bytes]:
    # A value larger than the whole budget raises ValueError on insertion: callers then use it once, uncached.
    return LRUCache(max_bytes, getsizeof=_size)


_defaults = Settings()


@dataclass(frozen=True, slots=True)
class Caches:
    """The process's caches. Each is bounded by the bytes it holds; nothing in them is the only copy of anything."""

    # Registered model files by sha256: S3 reads of 7-30 MB each time would add seconds to every job
    # (ENGINESHED_MODEL_FILE_CACHE_BYTES; a package may be up to ENGINESHED_MODEL_MAX_BYTES, so not by count).
    model_files: LRUCache[str, bytes] = field(default_factory=lambda: _bytes_cache(_defaults.model_file_cache_bytes))
    # Trained artifacts by storage key (each key names one immutable artifact), ENGINESHED_ARTIFACT_CACHE_BYTES.
    artifacts: LRUCache[str, bytes] = field(default_factory=lambda: _bytes_cache(_defaults.artifact_cache_bytes))
    # The built-in identifier and library types: migrations write them, nothing changes them while a process runs.
    builtin_types: dict[str, list[Any]] = field(default_factory=dict)

    @classmethod
    def of(cls, settings: Settings) -> Caches:
        return cls(model_files=_bytes_cache(settings.model_file_cache_bytes),
                   artifacts=_bytes_cache(settings.artifact_cache_bytes))


@dataclass(frozen=True, slots=True)
class Resources:
    """Everything a process shares, opened once: every service takes it first."""

    settings: Settings
    pool: asyncpg.Pool
    blobs: BlobStore
    http: httpx.AsyncClient
    fetch_policy: FetchPolicy
    fetch_limiter: AsyncLimiter
    engines: Mapping[str, Engine] = field(default_factory=dict)  # engine id -> installed engine
    events: EventHub = field(default_factory=EventHub)  # job-change notifications for this process's subscribers
    caches: Caches = field(default_factory=Caches)
    link_keys: LinkKeys | None = None  # the secrets of the gateway's own file links (gateway/services/links.py)


M_ARENA_MAX = -8  # mallopt's parameter number in glibc's malloc.h


def limit_malloc_arenas(arenas: int) -> bool:
    """Cap glibc's malloc arenas for this process (ENGINESHED_MALLOC_ARENAS; 0 leaves glibc's default).

    Applies to arenas made from now on, so it is called first thing when a process opens its resources.
    False where the C library is not glibc (nothing to cap)."""
    if arenas <= 0 or not sys.platform.startswith("linux"):
        return False
    try:
        libc = ctypes.CDLL("libc.so.6")
        return bool(libc.mallopt(M_ARENA_MAX, arenas))
    except (OSError, AttributeError):
        return False


def fetch_policy(settings: Settings) -> FetchPolicy:
    return FetchPolicy(
        allow_private=settings.fetch_allow_private,
        allowed_hosts=settings.fetch_allowed_hosts,
        timeout_seconds=settings.fetch_timeout_seconds,
        total_seconds=settings.fetch_total_seconds,
        max_bytes=settings.fetch_max_bytes,
    )


@asynccontextmanager
async def open_resources(
    settings: Settings, *, role: str, run_migrations: bool = True, load_engines: bool = True
) -> AsyncIterator[Resources]:
    """``role`` (gateway, worker) names the process's database connections."""
    limit_malloc_arenas(settings.malloc_arenas)
    if settings.database_url is None or settings.s3_endpoint_url is None:
        raise RuntimeError("DATABASE_URL and S3_ENDPOINT_URL must be set (engineshed dev sets them for the embedded services)")
    async with connect_pool(
        settings.database_url, min_size=settings.db_pool_min, max_size=settings.db_pool_max,
        application_name=connection_name(role),
    ) as pool:
        from engines.runtime import configure_sessions

        configure_sessions(settings.session_cache_bytes)
        if run_migrations:
            async with pool.acquire() as conn:
                await migrate(conn)
        keys = LinkKeys(pool)
        async with connect_blobs(
            endpoint_url=settings.s3_endpoint_url,
            bucket=settings.s3_bucket,
            region=settings.s3_region,
            access_key=settings.aws_access_key_id,
            secret_key=settings.aws_secret_access_key,
            create_bucket=True,
            public_endpoint_url=settings.s3_public_endpoint_url,
            link_maker=link_maker(settings, keys),  # None: S3 serves the links
            on_error=metrics.s3_error,
        ) as blobs:
            policy = fetch_policy(settings)
            async with make_client(policy) as http:
                engines: dict[str, Engine] = {}
                if load_engines:
                    from engines.registry import discover_engines

                    engines = discover_engines(settings.extra_engines)
                resources = Resources(
                    settings=settings,
                    pool=pool,
                    blobs=blobs,
                    http=http,
                    fetch_policy=policy,
                    fetch_limiter=AsyncLimiter(settings.fetch_rate_per_second, 1),
                    engines=engines,
                    caches=Caches.of(settings),
                    link_keys=keys,
                )
                if load_engines:
                    from gateway.services.queue.engines import register_installed

                    await register_installed(resources)
                yield resources
