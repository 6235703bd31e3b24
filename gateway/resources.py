"""open_resources(): everything a process shares, opened once and closed once."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any

import asyncpg
import httpx
from aiolimiter import AsyncLimiter

from gateway.services.remote_files import FetchPolicy, make_client
from gateway.settings import Settings
from storage.blobs import BlobStore, connect_blobs
from storage.db import connection_name, connect_pool
from storage.migrate import migrate

log = logging.getLogger(__name__)


@dataclass
class Resources:
    settings: Settings
    pool: asyncpg.Pool
    blobs: BlobStore
    http: httpx.AsyncClient
    fetch_policy: FetchPolicy
    fetch_limiter: AsyncLimiter
    engines: dict[str, Any] = field(default_factory=dict)  # engine id -> installed Engine (engines.interface)
    events: Any = None  # gateway.events.EventHub in gateway processes


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
    if settings.database_url is None or settings.s3_endpoint_url is None:
        raise RuntimeError("DATABASE_URL and S3_ENDPOINT_URL must be set (engineshed dev sets them for the embedded services)")
    async with connect_pool(
        settings.database_url, min_size=settings.db_pool_min, max_size=settings.db_pool_max,
        application_name=connection_name(role),
    ) as pool:
        if run_migrations:
            async with pool.acquire() as conn:
                await migrate(conn)
        async with connect_blobs(
            endpoint_url=settings.s3_endpoint_url,
            bucket=settings.s3_bucket,
            region=settings.s3_region,
            access_key=settings.aws_access_key_id,
            secret_key=settings.aws_secret_access_key,
            create_bucket=True,
        ) as blobs:
            policy = fetch_policy(settings)
            async with make_client(policy) as http:
                engines: dict[str, Any] = {}
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
                )
                if load_engines:
                    from gateway.services.engines import register_installed

                    await register_installed(resources)
                yield resources
