"""Two ingest ratios, each side measured in the same run: ``multipart_over_bare`` and ``ingest_over_model_bound``.

The photos are real faces composited onto cluttered 960×720 backgrounds (sampledata/face_scenes.py), one
distinct JPEG each (about 190 KB): what a person's camera sends.

``multipart_over_bare``: createEntityIdentifier as curl sends it (``query`` + ``file`` parts) through the
gateway, against a bare Starlette app (:func:`bare_app`, this module, not part of the product) doing the same
work in its own uvicorn process: parse the form, stream the part to S3 with the product's blob store
(storage/blobs.py put_stream) and insert one row with asyncpg into a scratch copy of ``entity_identifiers``
(same columns and indexes). Same bytes, same concurrency, same bare client; passes alternate and the medians
are compared. The gateway also checks the content (the image decoded whole) and schedules the object's
cleanup, which the bare app does not: that is the product's price.

``ingest_over_model_bound``: the same kind of photos uploaded as ``image`` identifiers while the pulled
``image-embedding`` model is the type's default, so the worker embeds each on ingest; the clock runs from the
first upload to the last vector stored. The model-bound limit is the machine's cores ÷ the CPU seconds this
process spends per photo on decode + embed (the worker's own decode and Embedder, batches of the worker's
size), measured just before and just after, the mean taken. The CPU every process spent meanwhile is printed
by process tree (gateway, worker, its decode processes, PostgreSQL, S3, this bench, and every other process on
the machine), so the rest of the CPU can be traced; ``ingest_over_model_bound_cpu`` is the same ratio by CPU alone
(model-bound CPU per photo ÷ the stack's), which other work on the same cores does not move.
The face pipeline (detect → align → embed) is not on the ingest path yet: identifiers of type ``face`` are
embedded whole, like images, so the image backbone is what is measured.
"""

from __future__ import annotations

import asyncio
import hashlib
import os
import statistics
import sys
import time
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

from bench.ceilings import BOUNDARY, plain_form
from bench.scenarios import CREATE_ENTITY, CREATE_LIBRARY, bounded, register_pulled
from bench.stack import BenchError, Proc, Stack, log, start_gateway

BARE_TABLE = "bench_bare_identifiers"
CHUNK = 256 * 1024
INGEST_MODEL = "image-embedding"


# --------------------------------------------------------------------------- photos


def make_photos(cache: Path, count: int, seed: int) -> list[bytes]:
    """``count`` distinct face photos (JPEG, 960×720), heads of the shipped people in turn."""
    import numpy as np

    from gateway.services.models.pull import catalogue as pull_catalogue
    from gateway.services.models.pull import conversion as pull_conversion
    from sampledata import face_scenes, faces

    detector = asyncio.run(pull_conversion.prepare(pull_catalogue.CATALOGUE["face-detector"], cache)).model_bytes
    heads = list(face_scenes.cut_heads(faces.fetch_photos(cache), faces.Detector(detector)).values())
    rng = np.random.default_rng(seed)
    return [face_scenes.compose([heads[i % len(heads)]], rng).data for i in range(count)]


# --------------------------------------------------------------------------- the bare app


def bare_app() -> Any:
    """Form parsing, put_stream to S3 and one asyncpg INSERT per request: the raw limit of an upload."""
    import contextlib

    from starlette.applications import Starlette
    from starlette.requests import Request
    from starlette.responses import JSONResponse, PlainTextResponse
    from starlette.routing import Route

    from storage.blobs import connect_blobs
    from storage.db import connect_pool
    from storage.queries.identifiers import INSERT

    env = os.environ
    insert = INSERT.replace("INSERT INTO entity_identifiers", f"INSERT INTO {BARE_TABLE}", 1)
    org, library, entity = (uuid.UUID(env[k]) for k in ("BENCH_ORG", "BENCH_LIBRARY", "BENCH_ENTITY"))
    state: dict[str, Any] = {}

    @contextlib.asynccontextmanager
    async def lifespan(app: Any) -> AsyncIterator[None]:
        async with connect_pool(env["DATABASE_URL"], min_size=2, max_size=20, application_name="bench-bare") as pool, \
                connect_blobs(endpoint_url=env["S3_ENDPOINT_URL"], bucket=env["S3_BUCKET"],
                              region=env.get("AWS_REGION", "us-east-1"), access_key=env["AWS_ACCESS_KEY_ID"],
                              secret_key=env["AWS_SECRET_ACCESS_KEY"]) as blobs:
            state.update(pool=pool, blobs=blobs)
            yield

    async def upload(request: Request) -> JSONResponse:
        form = await request.form()
        part = form["file"]

        async def chunks() -> AsyncIterator[bytes]:
            while chunk := await part.read(CHUNK):  # type: ignore[union-attr]
                yield chunk

        key = f"{org}/bench-bare/{uuid.uuid4().hex}"
        content_type = part.content_type or "application/octet-stream"  # type: ignore[union-attr]
        stored = await state["blobs"].put_stream(key, chunks(), content_type, max_bytes=100 * 2**20)
        new_id = uuid.uuid4()
        async with state["pool"].acquire() as conn:
            await conn.execute(insert, new_id, org, library, entity, "image", None, False, stored.key, None,
                               content_type, stored.size, stored.sha256, {}, None)
        return JSONResponse({"data": {"createEntityIdentifier": {"id": str(new_id)}}})

    async def ready(request: Request) -> PlainTextResponse:
        return PlainTextResponse("ok")

    return Starlette(routes=[Route("/v3/graphql", upload, methods=["POST"]), Route("/readyz", ready)], lifespan=lifespan)


async def _start_bare(stack: Stack, org: str, library: str, entity: str) -> tuple[str, Proc]:
    import asyncpg
    import httpx

    from gateway.devstack import find_free_port

    conn = await asyncpg.connect(stack.database_url)
    try:
        await conn.execute(f"CREATE TABLE IF NOT EXISTS {BARE_TABLE} (LIKE entity_identifiers INCLUDING ALL)")
    finally:
        await conn.close()
    port = find_free_port()
    env = {**stack.env, "BENCH_ORG": org, "BENCH_LIBRARY": library, "BENCH_ENTITY": entity}
    proc = Proc("bare", [sys.executable, "-m", "bench.ingest_ratios", "--port", str(port)], env, stack.log_dir)
    stack.procs.append(proc)
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 60
    async with httpx.AsyncClient() as http:
        while time.monotonic() < deadline:
            if not proc.alive():
                raise BenchError(f"the bare app exited at start:\n{proc.output_tail()}")
            try:
                if (await http.get(url + "/readyz", timeout=2)).status_code == 200:
                    return url, proc
            except httpx.HTTPError:
                pass
            await asyncio.sleep(0.2)
    raise BenchError(f"the bare app did not start:\n{proc.output_tail()}")


# --------------------------------------------------------------------------- helpers


def _cpu(pid: int) -> float:
    import psutil

    times = psutil.Process(pid).cpu_times()
    return times.user + times.system


def _stack_trees(stack: Stack) -> dict[str, list[int]]:
    """The root pids of this stack's processes by kind: its gateway, worker, PostgreSQL and S3 (found by the
    stack's data directory), and this bench process."""
    import psutil

    data = str(stack.log_dir.parent / "data")
    roots: dict[str, list[int]] = {"gateway": [stack.gateway.pid], "worker": [stack.worker.pid], "PostgreSQL": [],
                                   "S3 (weed)": [], "bench client": [os.getpid()]}
    for p in psutil.process_iter(["cmdline"]):
        cmd = " ".join(p.info["cmdline"] or [])
        if data in cmd and "postgres" in cmd.split(" ")[0]:
            roots["PostgreSQL"].append(p.pid)
        elif data in cmd and "weed" in cmd.split(" ")[0]:
            roots["S3 (weed)"].append(p.pid)
    return roots


def _tree_cpu(roots: dict[str, list[int]]) -> dict[int, tuple[str, float]]:
    """CPU seconds so far of every process of the trees by pid (the worker's children apart: its decode
    processes), and of every other process on the machine (other users of the same cores)."""
    import psutil

    out: dict[int, tuple[str, float]] = {}
    for kind, pids in roots.items():
        for pid in pids:
            try:
                root = psutil.Process(pid)
                members = [(kind, root)] + [
                    ("worker decode processes" if kind == "worker" else kind, c) for c in root.children(recursive=True)]
            except psutil.NoSuchProcess:
                continue
            for member_kind, proc in members:
                if member_kind == "bench client" and proc.pid != pid:
                    continue  # the bench's own children are the stack's processes, counted above
                try:
                    t = proc.cpu_times()
                except psutil.NoSuchProcess:
                    continue
                out.setdefault(proc.pid, (member_kind, t.user + t.system))
    for p in psutil.process_iter(["cpu_times"]):
        if p.pid not in out and p.info["cpu_times"] is not None:
            out[p.pid] = ("other processes on the machine", p.info["cpu_times"].user + p.info["cpu_times"].system)
    out[-1] = ("wall", time.perf_counter())
    return out


def _tree_spent(roots: dict[str, list[int]], before: dict[int, tuple[str, float]]) -> dict[str, float]:
    """CPU seconds by kind since ``before`` (processes that ended meanwhile are not counted)."""
    now = _tree_cpu(roots)
    spent: dict[str, float] = {}
    for pid, (kind, seconds) in now.items():
        if pid != -1:
            spent[kind] = spent.get(kind, 0.0) + seconds - (before[pid][1] if pid in before else 0.0)
    result = {k: round(v, 3) for k, v in sorted(spent.items(), key=lambda kv: -kv[1])}
    result["wall_s"] = round(now[-1][1] - before[-1][1], 3)
    return result


async def _org_of(database_url: str, library_id: str) -> str:
    import asyncpg

    conn = await asyncpg.connect(database_url)
    try:
        return str(await conn.fetchval("SELECT org_id FROM libraries WHERE id = $1", uuid.UUID(library_id)))
    finally:
        await conn.close()


async def _post_all(url: str, token: str | None, forms: list[bytes], concurrency: int) -> float:
    """All ``forms`` POSTed, ``concurrency`` at a time, on a session of their own: a connection kept from an
    earlier pass may have been closed by the server's keep-alive timeout meanwhile."""
    import aiohttp

    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=2 * concurrency)) as http:
        return await _post_with(http, url, token, forms, concurrency)


async def _post_with(http: Any, url: str, token: str | None, forms: list[bytes], concurrency: int) -> float:
    headers = {"Content-Type": f"multipart/form-data; boundary={BOUNDARY}"}
    if token:
        headers["Authorization"] = f"Bearer {token}"

    async def one(i: int) -> None:
        async with http.post(url, data=forms[i], headers=headers) as reply:
            body = await reply.json()
            if reply.status != 200 or body.get("errors"):
                raise BenchError(f"upload to {url} failed (HTTP {reply.status}): {str(body)[:500]}")

    started = time.perf_counter()
    await bounded(list(range(len(forms))), concurrency, one)
    return time.perf_counter() - started


def _query(entity: str, type_id: str) -> str:
    return f'mutation {{ createEntityIdentifier(input: {{entityId: "{entity}", identifierTypeId: "{type_id}"}}) {{ id }} }}'


# --------------------------------------------------------------------------- multipart_over_bare


async def multipart_vs_bare(stack: Stack, client: Any, token: str, photos: list[bytes], concurrency: int,
                            repeats: int = 3) -> dict[str, Any]:
    library = (await client.data(CREATE_LIBRARY, n="multipart-bench"))["createLibrary"]["id"]
    entity = (await client.data(CREATE_ENTITY, l=library, n="multipart"))["createEntity"]["id"]
    org = await _org_of(stack.database_url, library)
    # A gateway of its own that queues no embeddings: in a whole run the face models are registered by now, and
    # the worker embedding the multipart side's photos would take the cores from that side alone.
    gateway_url, gateway = start_gateway(stack, 1, "gateway-multipart", env={"ENGINESHED_EMBED_ON_INGEST": "0"})
    bare_url, bare = await _start_bare(stack, org, library, entity)
    forms = [plain_form(_query(entity, "face"), p, "image/jpeg") for p in photos]
    try:
        api_s, bare_s, api_cpu, bare_cpu = [], [], [], []
        await _post_all(bare_url + "/v3/graphql", None, forms[:concurrency], concurrency)  # warm-up, both
        await _post_all(gateway_url + "/v3/graphql", token, forms[:concurrency], concurrency)
        roots = {**_stack_trees(stack), "gateway": [gateway.pid], "bare app": [bare.pid]}
        by_side: dict[str, dict[str, float]] = {"multipart": {}, "bare": {}}
        for _ in range(repeats):  # alternating, so neither side gets a quieter stretch of the machine
            before, trees = _cpu(gateway.pid), _tree_cpu(roots)
            api_s.append(await _post_all(gateway_url + "/v3/graphql", token, forms, concurrency))
            api_cpu.append(_cpu(gateway.pid) - before)
            _add(by_side["multipart"], _tree_spent(roots, trees))
            before, trees = _cpu(bare.pid), _tree_cpu(roots)
            bare_s.append(await _post_all(bare_url + "/v3/graphql", None, forms, concurrency))
            bare_cpu.append(_cpu(bare.pid) - before)
            _add(by_side["bare"], _tree_spent(roots, trees))
    finally:
        bare.stop()
        gateway.stop()
    n = len(forms)
    api_rate, bare_rate = n / statistics.median(api_s), n / statistics.median(bare_s)
    return {
        "uploads": n,
        "passes": repeats,
        "concurrency": concurrency,
        "photo": "960×720 JPEG, one face on clutter",
        "mean_bytes": round(sum(map(len, photos)) / n),
        "multipart_seconds": [round(t, 3) for t in api_s],
        "bare_seconds": [round(t, 3) for t in bare_s],
        "multipart_uploads_per_s": round(api_rate, 1),
        "bare_uploads_per_s": round(bare_rate, 1),
        "multipart_over_bare": round(api_rate / bare_rate, 4),
        "gateway_cpu_ms_per_upload": round(statistics.median(api_cpu) / n * 1000, 3),
        "bare_cpu_ms_per_upload": round(statistics.median(bare_cpu) / n * 1000, 3),
        # CPU per upload of every process of the stack while each side ran (all passes): where the difference is.
        "cpu_ms_per_upload_by_process": {side: {k: round(v / (n * repeats) * 1000, 2) for k, v in spent.items() if v >= 0.005}
                                         for side, spent in by_side.items()},
    }


def _add(total: dict[str, float], spent: dict[str, float]) -> None:
    for kind, seconds in spent.items():
        if kind != "wall_s":
            total[kind] = total.get(kind, 0.0) + seconds


# --------------------------------------------------------------------------- ingest_over_model_bound


def model_bound(photos: list[bytes], model: Any, provider: str, batch: int) -> dict[str, Any]:
    """CPU seconds of decode + embed per photo in this process, as the worker does them (its decode, its
    Embedder, its batch size); the limit is the cores ÷ that."""
    import numpy as np

    from engines.decode import DEFAULT_MAX_PIXELS, decode_batch
    from engines.embedding import embedder

    emb = asyncio.run(embedder(model, provider))
    emb.runner.run(decode_batch(photos[:2], emb.spec.input_size, emb.spec.channels, 0, 0.0, DEFAULT_MAX_PIXELS, True)[0][0][None])
    cpu0, wall0 = time.process_time(), time.perf_counter()
    decoded = decode_batch(list(photos), emb.spec.input_size, emb.spec.channels, 0, 0.0, DEFAULT_MAX_PIXELS, True)
    cpu1 = time.process_time()
    arrays = [a for a, skip, _ in decoded if skip is None]
    for i in range(0, len(arrays), batch):
        emb.runner.run(np.stack(arrays[i : i + batch]))
    cpu2, wall2 = time.process_time(), time.perf_counter()
    n = len(photos)
    cores = len(os.sched_getaffinity(0))
    per_photo = (cpu2 - cpu0) / n
    return {
        "photos": n, "batch": batch, "provider": emb.runner.provider, "cores": cores,
        "decode_cpu_ms": round((cpu1 - cpu0) / n * 1000, 2), "embed_cpu_ms": round((cpu2 - cpu1) / n * 1000, 2),
        "wall_s": round(wall2 - wall0, 3),
        "photos_per_s": round(cores / per_photo, 2),
    }


async def ingest_vs_model_bound(stack: Stack, client: Any, token: str, cache: Path, photos: list[bytes],
                                concurrency: int, timeout: float) -> dict[str, Any]:
    import asyncpg

    from bench.scenarios import model_bytes_and_manifest
    from engines.interface import EmbeddingModel
    from gateway.settings import Settings

    await register_pulled(stack.env, cache, [INGEST_MODEL])
    ref, data, manifest = await model_bytes_and_manifest(stack.env, INGEST_MODEL)
    model = EmbeddingModel(ref, ref, data, manifest, hashlib.sha256(data).hexdigest())
    settings = Settings.from_env(stack.env)
    provider, batch = settings.onnx_provider, settings.embed_batch_size
    before = await asyncio.to_thread(model_bound, photos, model, provider, batch)

    library = (await client.data(CREATE_LIBRARY, n="ingest-bench"))["createLibrary"]["id"]
    entity = (await client.data(CREATE_ENTITY, l=library, n="ingest"))["createEntity"]["id"]
    forms = [plain_form(_query(entity, "image"), p, "image/jpeg") for p in photos]
    n = len(forms)
    conn = await asyncpg.connect(stack.database_url)
    try:
        roots = _stack_trees(stack)
        cpu_before = _tree_cpu(roots)
        started = time.perf_counter()
        upload_s = await _post_all(stack.url + "/v3/graphql", token, forms, concurrency)
        deadline = time.monotonic() + timeout
        while True:
            done = await conn.fetchval("SELECT count(*) FROM identifier_embeddings WHERE library_id = $1", uuid.UUID(library))
            failed = await conn.fetchval(
                "SELECT count(*) FROM embedding_queue WHERE library_id = $1 AND status = 'failed'", uuid.UUID(library))
            if done + failed >= n:
                break
            if time.monotonic() > deadline:
                raise BenchError(f"ingest: {done} of {n} vectors after {timeout:.0f} s")
            await asyncio.sleep(0.05)
        elapsed = time.perf_counter() - started
        spent = _tree_spent(roots, cpu_before)
    finally:
        await conn.close()
    after = await asyncio.to_thread(model_bound, photos, model, provider, batch)
    bound = (before["photos_per_s"] + after["photos_per_s"]) / 2
    rate = done / elapsed
    ours = sum(v for k, v in spent.items() if k not in ("wall_s", "other processes on the machine"))
    product = sum(v for k, v in spent.items() if k not in ("wall_s", "other processes on the machine", "bench client"))
    bound_ms = ((before["decode_cpu_ms"] + before["embed_cpu_ms"]) + (after["decode_cpu_ms"] + after["embed_cpu_ms"])) / 2
    return {
        "photos": n,
        "embedded": done,
        "failed": failed,
        "model": ref,
        "concurrency": concurrency,
        "upload_s": round(upload_s, 3),
        "upload_to_last_vector_s": round(elapsed, 3),
        "ingest_photos_per_s": round(rate, 2),
        "model_bound": {"before": before, "after": after, "photos_per_s": round(bound, 2)},
        "ingest_over_model_bound": round(rate / bound, 4),
        # Load-independent: the model-bound CPU per photo over what the stack spent per photo (gateway, worker and
        # its decode processes, PostgreSQL, S3; the uploading client left out), i.e. the ratio the stack would
        # reach with the cores to itself, if CPU were all that limited it.
        "stack_cpu_ms_per_photo": round(product / n * 1000, 2),
        "model_bound_cpu_ms_per_photo": round(bound_ms, 2),
        "ingest_over_model_bound_cpu": round(bound_ms / (product / n * 1000), 4),
        "cpu_s_by_process": spent,
        "cpu_ms_per_photo_by_process": {k: round(v / n * 1000, 2) for k, v in spent.items() if k != "wall_s"},
        # The share of the cores this stack and bench used meanwhile, and the share other processes took.
        "stack_cpu_share": round(ours / (spent["wall_s"] * before["cores"]), 3),
        "other_cpu_share": round(spent.get("other processes on the machine", 0.0) / (spent["wall_s"] * before["cores"]), 3),
    }


# --------------------------------------------------------------------------- the scenario


async def ingest_ratios(stack: Stack, cache: Path, count: int, concurrency: int, timeout: float) -> dict[str, Any]:
    from bench.client import Client
    from bench.stack import create_token

    load_before = os.getloadavg()[0]  # other work on the same cores shows in every rate here
    photos = await asyncio.to_thread(make_photos, cache, count, 29)
    token = await create_token(stack.database_url, f"bench-{uuid.uuid4().hex[:8]}")
    client = Client(stack.url, token, connections=max(64, concurrency))
    try:
        # The multipart pair first, while no embedding model is registered: the worker stays idle meanwhile.
        log(f"ingest ratios: {count} photos, multipart through the gateway against a bare Starlette handler")
        multipart = await multipart_vs_bare(stack, client, token, photos, concurrency)
        log(f"  multipart_over_bare = {multipart['multipart_over_bare']}; ingest with embedding next")
        ingest = await ingest_vs_model_bound(stack, client, token, cache, photos, concurrency, timeout)
    finally:
        await client.aclose()
    return {
        "multipart_over_bare": multipart["multipart_over_bare"],
        "ingest_over_model_bound": ingest["ingest_over_model_bound"],
        "multipart": multipart,
        "ingest": ingest,
        "load_average_1m": {"start": round(load_before, 2), "end": round(os.getloadavg()[0], 2)},
    }


def rows(r: dict[str, Any]) -> list[str]:
    m, i = r["multipart"], r["ingest"]
    b = i["model_bound"]
    out = [
        (f"ingest ratios: {m['uploads']} face photos ({m['photo']}, {m['mean_bytes']} B mean), concurrency "
         f"{m['concurrency']}; load average {r['load_average_1m']['start']} at the start, {r['load_average_1m']['end']} at the end"),
        (f"  multipart through the gateway: {m['multipart_uploads_per_s']}/s (gateway CPU {m['gateway_cpu_ms_per_upload']} "
         f"ms per upload); bare Starlette + put_stream + INSERT: {m['bare_uploads_per_s']}/s ({m['bare_cpu_ms_per_upload']} ms)"),
        f"  multipart_over_bare = {m['multipart_over_bare']} (target >= 0.6)",
        f"  CPU per upload by process (ms): {m['cpu_ms_per_upload_by_process']}",
        (f"  ingest with embedding ({i['model']}): {i['ingest_photos_per_s']} photos/s, upload to last vector "
         f"{i['upload_to_last_vector_s']} s ({i['embedded']} embedded, {i['failed']} failed)"),
        (f"  model-bound limit: {b['photos_per_s']} photos/s = {b['before']['cores']} cores / (decode "
         f"{b['before']['decode_cpu_ms']} + embed {b['before']['embed_cpu_ms']} ms CPU per photo, before; after: "
         f"{b['after']['decode_cpu_ms']} + {b['after']['embed_cpu_ms']})"),
        (f"  ingest_over_model_bound = {i['ingest_over_model_bound']} (target >= 0.8); by CPU alone: model-bound "
         f"{i['model_bound_cpu_ms_per_photo']} ms / stack {i['stack_cpu_ms_per_photo']} ms per photo = "
         f"{i['ingest_over_model_bound_cpu']}"),
        (f"  CPU per photo by process (ms): {i['cpu_ms_per_photo_by_process']}; share of the cores: this stack "
         f"{i['stack_cpu_share']}, other processes on the machine {i['other_cpu_share']}"),
    ]
    return out


def main(argv: list[str] | None = None) -> None:
    """The bare app's process: ``python -m bench.ingest_ratios --port N``."""
    import argparse

    import uvicorn

    p = argparse.ArgumentParser()
    p.add_argument("--port", type=int, required=True)
    args = p.parse_args(argv)
    uvicorn.run(bare_app(), host="127.0.0.1", port=args.port, log_level="warning")


if __name__ == "__main__":
    main()
