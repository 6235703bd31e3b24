"""/healthz (the process answers) and /readyz (PostgreSQL and S3 answer too)."""

from __future__ import annotations

import asyncio
import os

from starlette.requests import Request
from starlette.responses import JSONResponse


async def healthz(_request: Request) -> JSONResponse:
    # pid: which of the `serve --workers N` processes answered (the port is shared).
    return JSONResponse({"status": "ok", "pid": os.getpid()})


async def readyz(request: Request) -> JSONResponse:
    resources = request.app.state.resources
    checks: dict[str, str] = {}

    async def database() -> None:
        async with resources.pool.acquire(timeout=2) as conn:
            await conn.fetchval("SELECT 1")

    for name, check in (("postgresql", database), ("s3", resources.blobs.ping)):
        try:
            await asyncio.wait_for(check(), timeout=3)
            checks[name] = "ok"
        except Exception as exc:  # any failure means "not ready"; the reason helps operators
            checks[name] = f"unavailable: {exc.__class__.__name__}"
    ready = all(v == "ok" for v in checks.values())
    return JSONResponse({"status": "ready" if ready else "not ready", "checks": checks}, status_code=200 if ready else 503)
