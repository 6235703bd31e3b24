"""Bulk import through the direct path against raw S3 PUTs of the same bytes, same concurrency, same run.

The direct side is what ``engineshed import`` and the Python client do by default, with the client's own code
(engineshed.client.AsyncClient): writable URLs in bulk (``getSignedWritableUrls``), every file PUT straight to
storage, then the identifiers made from the URLs in aliased batches of 30 (``createEntityIdentifier(input:
{url})``), which the gateway checks (the object's size, its bytes decoded whole) and takes in place. The clock
runs from the first URL asked for to the last identifier made: ``concurrency`` PUTs in flight, and each batch of
30 uploaded files registered as soon as it is complete (at most ``concurrency`` such requests in flight), as
``engineshed import`` does.

The raw side PUTs the same bytes, with their content types, to presigned URLs (signed beforehand, not timed) with
bare aiohttp: the object store's own speed for these objects. The passes alternate (direct, raw, direct, ...)
so that neither gets a quieter stretch of the machine, and the medians are compared:
``bulk_over_s3_put = direct files/s ÷ raw PUTs/s``.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

from bench.images import make_image
from bench.scenarios import bounded
from bench.stack import BenchError

BATCH = 30  # aliases per registration request (the server's default alias limit)


async def bulk_vs_s3_put(url: str, token: str, library_entities: list[str], env: dict[str, str], files: int,
                         concurrency: int, repeats: int = 3, gateway_pid: int | None = None,
                         image_size: int = 64) -> dict[str, Any]:
    import aiohttp
    import psutil

    from engineshed.client import AsyncClient
    from storage.sigv4 import GetUrlSigner

    gateway = psutil.Process(gateway_pid) if gateway_pid else None

    def cpu() -> float:
        if gateway is None:
            return 0.0
        times = gateway.cpu_times()
        return times.user + times.system

    blobs = [[make_image(7_000_000 + p, i, size=image_size, jpeg=i % 2 == 1) for i in range(files)] for p in range(repeats)]
    signer = GetUrlSigner(env["S3_ENDPOINT_URL"], env["S3_BUCKET"], env.get("AWS_REGION", "us-east-1"),
                          env["AWS_ACCESS_KEY_ID"], env["AWS_SECRET_ACCESS_KEY"])
    signed = [[signer.put_url(f"bench-direct-put/{p}/{i}", 3600) for i in range(files)] for p in range(repeats)]

    async def direct_pass(client: AsyncClient, p: int) -> tuple[float, dict[str, float]]:
        phases: dict[str, float] = {}
        started = time.perf_counter()
        urls: list[dict[str, Any]] = []
        while len(urls) < files:
            urls += await client.writable_urls(min(1000, files - len(urls)))
        phases["urls_s"] = time.perf_counter() - started

        registering: list[asyncio.Task[None]] = []
        ready: list[int] = []
        lanes = asyncio.Semaphore(concurrency)  # registration requests in flight, as for the PUTs

        async def register(batch: list[int]) -> None:
            inputs = [{"entityId": library_entities[i % len(library_entities)], "identifierTypeId": "face",
                       "url": urls[i]["url"], "contentType": blobs[p][i][1]} for i in batch]
            async with lanes:
                for made in await client.create_identifiers_from_urls(inputs):
                    if not isinstance(made, dict):
                        raise BenchError(f"a direct upload was refused: {made}")

        def send(batch: list[int]) -> None:
            registering.append(asyncio.create_task(register(batch)))

        async def put(i: int) -> None:
            data, content_type = blobs[p][i]
            await client.put_file(urls[i]["url"], data, content_type=content_type)
            ready.append(i)
            if len(ready) >= BATCH:  # a batch's files are all in storage: its identifiers go while others upload
                send(ready[:BATCH])
                del ready[:BATCH]

        await bounded(list(range(files)), concurrency, put)
        phases["puts_s"] = time.perf_counter() - started - phases["urls_s"]
        if ready:
            send(list(ready))
        await asyncio.gather(*registering)
        total = time.perf_counter() - started
        phases["register_tail_s"] = total - phases["urls_s"] - phases["puts_s"]
        return total, phases

    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=2 * concurrency)) as http:

        async def s3_pass(p: int) -> float:
            async def put(i: int) -> None:
                data, content_type = blobs[p][i]
                async with http.put(signed[p][i], data=data, headers={"Content-Type": content_type}) as reply:
                    reply.raise_for_status()
                    await reply.read()

            started = time.perf_counter()
            await bounded(list(range(files)), concurrency, put)
            return time.perf_counter() - started

        direct_times, s3_times, direct_cpu, phase_list = [], [], [], []
        async with AsyncClient(url, token) as client:
            for p in range(repeats):
                before = cpu()
                seconds, phases = await direct_pass(client, p)
                direct_cpu.append(cpu() - before)
                direct_times.append(seconds)
                phase_list.append(phases)
                s3_times.append(await s3_pass(p))
    middle = repeats // 2
    direct_s, s3_s = sorted(direct_times)[middle], sorted(s3_times)[middle]
    median_phases = phase_list[direct_times.index(direct_s)]
    direct_rate, s3_rate = files / direct_s, files / s3_s
    return {
        "files": files,
        "passes": repeats,
        "concurrency": concurrency,
        "image_size": image_size,
        "bytes_per_pass": sum(len(b) for b, _ in blobs[0]),
        "direct_seconds": [round(t, 3) for t in direct_times],
        "s3_put_seconds": [round(t, 3) for t in s3_times],
        "direct_phases_s": {k: round(v, 3) for k, v in median_phases.items()},
        "direct_files_per_s": round(direct_rate, 1),
        "s3_puts_per_s": round(s3_rate, 1),
        "bulk_over_s3_put": round(direct_rate / s3_rate, 4),
        "gateway_cpu_ms_per_file": round(sorted(direct_cpu)[middle] / files * 1000, 3) if gateway else None,
    }


def rows(r: dict[str, Any]) -> list[str]:
    phases = r["direct_phases_s"]
    return [
        f"direct uploads: {r['files']} files of {r['image_size']} px, concurrency {r['concurrency']}, median of {r['passes']} passes",
        (f"  bulk import, direct path: {r['direct_files_per_s']} files/s (URLs {phases['urls_s']} s, PUTs with identifiers "
         f"made meanwhile {phases['puts_s']} s, last identifiers {phases['register_tail_s']} s); gateway CPU "
         f"{r['gateway_cpu_ms_per_file']} ms per file"),
        f"  raw S3 PUT of the same bytes: {r['s3_puts_per_s']} PUTs/s",
        f"  bulk_over_s3_put = {r['bulk_over_s3_put']} (target >= 0.7)",
    ]
