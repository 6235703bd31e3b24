"""Many files as identifiers, concurrently: the direct path (writable URLs, PUTs straight to storage, aliased
``createEntityIdentifier(input: {url})`` batches) with threads for :class:`~engineshed.client.Client` and tasks for
:class:`~engineshed.client.AsyncClient`.

Per batch of :data:`~engineshed.client.operations.uploads.BATCH` files: one request for their writable URLs (each
named after its file, which the identifier takes as its default ``uniqueName``), the PUTs ``concurrency`` at a time
across batches, then one request that makes the batch's identifiers. A file storage refused is reported as that
file's error and not registered; the server deletes its object once the URL's window has passed.
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from engineshed.client.errors import ApiError, EngineshedError, InvalidInputError
from engineshed.client.operations.uploads import BATCH, direct_input
from engineshed.client.transport import Upload

Result = dict[str, Any] | ApiError


def _uploads(batch: Sequence[Mapping[str, Any]]) -> list[Upload]:
    return [Upload.of(g["file"], filename=g.get("filename"), content_type=g.get("contentType")) for g in batch]


def _merge(batch: Sequence[Mapping[str, Any]], urls: list[dict[str, Any]], put: list[BaseException | None],
           made: list[Result]) -> list[Result]:
    """The batch's results in order: a failed PUT's error, else what its identifier's creation answered."""
    out: list[Result] = []
    registered = iter(made)
    for failure in put:
        if failure is None:
            out.append(next(registered))
        else:
            out.append(failure if isinstance(failure, ApiError) else InvalidInputError(f"upload failed: {failure}"))
    return out


def upload_sync(client: Any, files: Sequence[Mapping[str, Any]], concurrency: int) -> list[Result]:
    batches = [files[s:s + BATCH] for s in range(0, len(files), BATCH)]
    if not batches:
        return []
    with ThreadPoolExecutor(max(1, concurrency), thread_name_prefix="put") as puts, \
            ThreadPoolExecutor(max(1, min(len(batches), concurrency // 4 or 1)), thread_name_prefix="batch") as lanes:

        def put(pair: tuple[dict[str, Any], Upload]) -> BaseException | None:
            try:
                client.put_file(pair[0]["url"], pair[1])
            except (EngineshedError, OSError) as exc:
                return exc
            return None

        def one(batch: Sequence[Mapping[str, Any]]) -> list[Result]:
            uploads = _uploads(batch)
            urls = client.named_writable_urls([u.filename for u in uploads])
            failures = list(puts.map(put, zip(urls, uploads)))
            inputs = [direct_input(g, u["url"]) for g, u, f in zip(batch, urls, failures) if f is None]
            made = client.create_identifiers_from_urls(inputs) if inputs else []
            return _merge(batch, urls, failures, made)

        return [r for results in lanes.map(one, batches) for r in results]


async def upload_async(client: Any, files: Sequence[Mapping[str, Any]], concurrency: int) -> list[Result]:
    lanes = asyncio.Semaphore(max(1, concurrency))

    async def put(url: dict[str, Any], upload: Upload) -> BaseException | None:
        async with lanes:
            try:
                await client.put_file(url["url"], upload)
            except (EngineshedError, OSError) as exc:
                return exc
        return None

    async def one(batch: Sequence[Mapping[str, Any]]) -> list[Result]:
        uploads = _uploads(batch)
        urls = await client.named_writable_urls([u.filename for u in uploads])
        failures = await asyncio.gather(*(put(u, f) for u, f in zip(urls, uploads)))
        inputs = [direct_input(g, u["url"]) for g, u, f in zip(batch, urls, failures) if f is None]
        made = await client.create_identifiers_from_urls(inputs) if inputs else []
        return _merge(batch, urls, list(failures), made)

    batches = [files[s:s + BATCH] for s in range(0, len(files), BATCH)]
    return [r for results in await asyncio.gather(*(one(b) for b in batches)) for r in results]
