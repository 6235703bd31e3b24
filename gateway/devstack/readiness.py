"""Waiting for PostgreSQL and S3 to answer: ``engineshed migrate --wait SECONDS``.

Containers start in any order and a database or S3 service takes seconds to come up, while the gateway and the
worker fail at start when either is missing; compose.yaml's one-shot ``migrate`` service waits for both, applies
the migrations, and only then are the gateways and workers started.
"""

from __future__ import annotations

import asyncio
import sys
import time

from gateway.settings import Settings

RETRY_SECONDS = 0.5


async def _postgres_answers(url: str) -> str | None:
    """None when a connection runs a query; else why not."""
    import asyncpg

    try:
        conn = await asyncio.wait_for(asyncpg.connect(url), 5)
    except (TimeoutError, OSError, asyncpg.PostgresError, asyncpg.InterfaceError) as exc:
        return f"PostgreSQL: {exc or type(exc).__name__}"
    try:
        await conn.fetchval("SELECT 1")
    finally:
        await conn.close()
    return None


async def _s3_answers(settings: Settings) -> str | None:
    """None when the bucket exists or could be created with the configured keys; else why not."""
    from botocore.exceptions import BotoCoreError, ClientError

    from storage.blobs import BlobError, connect_blobs

    assert settings.s3_endpoint_url is not None
    try:
        async with connect_blobs(
            endpoint_url=settings.s3_endpoint_url, bucket=settings.s3_bucket, region=settings.s3_region,
            access_key=settings.aws_access_key_id, secret_key=settings.aws_secret_access_key, create_bucket=True,
        ) as blobs:
            await blobs.ping()
    except (BlobError, ClientError, BotoCoreError, OSError) as exc:
        return f"S3: {exc}"
    return None


async def wait_for_services(settings: Settings, seconds: float) -> None:
    """Return once PostgreSQL (DATABASE_URL) and S3 (S3_ENDPOINT_URL, when set) answer; TimeoutError after
    ``seconds`` with the last reason."""
    assert settings.database_url is not None
    deadline = time.monotonic() + seconds
    while True:
        why = await _postgres_answers(settings.database_url)
        if why is None and settings.s3_endpoint_url is not None:
            why = await _s3_answers(settings)
        if why is None:
            return
        if time.monotonic() >= deadline:
            raise TimeoutError(f"not ready after {seconds:.0f}s: {why}")
        await asyncio.sleep(RETRY_SECONDS)


def wait_at_start(settings: Settings) -> None:
    """Wait up to ENGINESHED_STARTUP_WAIT_SECONDS (0: not at all) for PostgreSQL and S3; exit saying why not."""
    if settings.startup_wait_seconds <= 0:
        return
    try:
        asyncio.run(wait_for_services(settings, settings.startup_wait_seconds))
    except TimeoutError as exc:
        sys.exit(f"engineshed: {exc}")
