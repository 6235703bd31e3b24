"""Scenario 16 (numbered for its issue): ``engineshed import`` throughput against the API's upload ceiling, same run.

A folder of N images (64×64, PNG and JPEG alternating, 5 per entity folder) is imported by the real command line,
as a user runs it (``python -m engineshed.cli.main import DIR --library … --entity-per-folder --concurrency C --json``, a
fresh process each time). The ceiling is the API's own upload rate for the same bytes at the same concurrency:
ready-made plain-form ``createEntityIdentifier`` bodies POSTed by bare aiohttp into entities created beforehand
(no hashing, no image check, no entity creation, no process start: what the server alone can take). The ceiling is
measured just before and just after the import and the ratio uses their mean (the machine's speed moves).

The import figures: the whole command (process start to exit, what a user waits), and the upload phase the
command reports itself. A second run of the same command over the finished folder measures the resume check
(every file hashed and found in the library, nothing sent).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from bench.client import Client
from bench.images import make_image
from bench.ceilings import BOUNDARY, plain_form
from bench.scenarios import bounded, create_library
from bench.stack import ROOT, BenchError

PER_ENTITY = 5


def write_folder(root: Path, entities: int, seed_base: int) -> tuple[int, int]:
    """``root/e00000/k.png|jpg`` …; (files, bytes)."""
    files = size = 0
    for e in range(entities):
        folder = root / f"e{e:05d}"
        folder.mkdir(parents=True)
        for k in range(PER_ENTITY):
            data, content_type = make_image(seed_base + e, k)
            path = folder / f"{k}.{'jpg' if content_type == 'image/jpeg' else 'png'}"
            path.write_bytes(data)
            files += 1
            size += len(data)
    return files, size


async def api_ceiling(client: Client, name: str, entities: int, seed_base: int, concurrency: int) -> dict[str, Any]:
    """The same kind of bytes straight at the API, ready-made, into ready entities: uploads per second."""
    import aiohttp

    library = await create_library(client, name, entities, seed_base=seed_base, concurrency=concurrency)
    work = [(e, k) for e in range(entities) for k in range(PER_ENTITY)]
    blobs = [make_image(library.entity_seeds[e], k) for e, k in work]
    forms = [plain_form(f'mutation {{ createEntityIdentifier(input: {{entityId: "{library.entity_ids[e]}", identifierTypeId: "face"}}) {{ id }} }}',
                         *blobs[i]) for i, (e, _) in enumerate(work)]
    headers = {"Authorization": client.http.headers["Authorization"], "Content-Type": f"multipart/form-data; boundary={BOUNDARY}"}
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=2 * concurrency)) as http:
        async def one(i: int) -> None:
            async with http.post(client.url, data=forms[i], headers=headers) as reply:
                body = await reply.json()
                if reply.status != 200 or body.get("errors"):
                    raise BenchError(f"upload failed (HTTP {reply.status}): {str(body)[:500]}")

        started = time.perf_counter()
        await bounded(list(range(len(work))), concurrency, one)
        seconds = time.perf_counter() - started
    return {"uploads": len(work), "seconds": round(seconds, 3), "uploads_per_s": round(len(work) / seconds, 1)}


def run_import(url: str, token: str, folder: Path, library: str, concurrency: int) -> dict[str, Any]:
    """The command as a user runs it; its own JSON summary plus the wall time of the whole process."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("ENGINESHED_", "DATABASE_URL", "S3_", "AWS_"))}
    env.update(ENGINESHED_URL=url, ENGINESHED_TOKEN=token, PYTHONPATH=str(ROOT))
    args = [sys.executable, "-m", "engineshed.cli.main", "import", str(folder), "--library", library, "--entity-per-folder",
            "--concurrency", str(concurrency), "--json"]
    started = time.perf_counter()
    done = subprocess.run(args, env=env, cwd=ROOT, capture_output=True, text=True, timeout=3600)
    wall = time.perf_counter() - started
    if done.returncode != 0:
        raise BenchError(f"engineshed import exited {done.returncode}: {done.stderr[-2000:]}")
    summary = json.loads(done.stdout)
    return {"wall_s": round(wall, 3), "summary": summary}


async def import_throughput(client: Client, token: str, url: str, n: int, concurrency: int, log: Any) -> dict[str, Any]:
    entities = max(1, n // PER_ENTITY)
    with tempfile.TemporaryDirectory(prefix="bench-import-") as tmp:
        folder = Path(tmp) / "faces"
        files, size = write_folder(folder, entities, seed_base=6_000_000)
        log(f"import: API upload ceiling (before), {files} uploads, {concurrency} in flight")
        before = await api_ceiling(client, "ceiling-before", entities, 6_500_000, concurrency)
        log(f"import: engineshed import of {files} files ({size / 2**20:.1f} MiB)")
        first = run_import(url, token, folder, "imported", concurrency)
        log("import: API upload ceiling (after)")
        after = await api_ceiling(client, "ceiling-after", entities, 6_700_000, concurrency)
        log("import: the same command again (resume check, nothing to send)")
        again = run_import(url, token, folder, "imported", concurrency)
    s = first["summary"]
    if s["uploaded"] != files or s["failed"]:
        raise BenchError(f"the import did not upload every file: {s}")
    if again["summary"]["skipped"] != files or again["summary"]["uploaded"]:
        raise BenchError(f"the second import was not a no-op: {again['summary']}")
    ceiling = (before["uploads_per_s"] + after["uploads_per_s"]) / 2
    whole = files / first["wall_s"]
    phase = files / s["seconds"]
    return {
        "files": files,
        "bytes": size,
        "entities": entities,
        "concurrency": concurrency,
        "import_wall_s": first["wall_s"],
        "import_upload_phase_s": s["seconds"],
        "import_files_per_s": round(whole, 1),
        "import_upload_phase_files_per_s": round(phase, 1),
        "api_ceiling_uploads_per_s": round(ceiling, 1),
        "api_ceiling_before_per_s": before["uploads_per_s"],
        "api_ceiling_after_per_s": after["uploads_per_s"],
        "import_over_ceiling": round(whole / ceiling, 3),
        "upload_phase_over_ceiling": round(phase / ceiling, 3),
        "resume_check_wall_s": again["wall_s"],
        "resume_check_files_per_s": round(files / again["wall_s"], 1),
    }


def rows(r: dict[str, Any], fmt: Any) -> list[str]:
    return [
        f"| 16 | `engineshed import` of {r['files']:,} files ({r['entities']:,} entity folders, {r['bytes'] / 2**20:.1f} MiB), "
        f"concurrency {r['concurrency']}, whole command | {fmt(r['import_wall_s'], 2)} s = {fmt(r['import_files_per_s'])} files/s |",
        f"| 16 | same, upload phase as the command reports it (entities created, files hashed and checked, uploaded) | "
        f"{fmt(r['import_upload_phase_s'], 2)} s = {fmt(r['import_upload_phase_files_per_s'])} files/s |",
        f"| 16 | API upload ceiling: ready-made plain-form bodies into ready entities, bare aiohttp, same concurrency, "
        f"mean of before / after | {fmt(r['api_ceiling_uploads_per_s'])} uploads/s ({fmt(r['api_ceiling_before_per_s'])} / "
        f"{fmt(r['api_ceiling_after_per_s'])}) |",
        f"| 16 | **import / API ceiling** (upload phase / ceiling) | **{fmt(r['import_over_ceiling'], 3)}** "
        f"({fmt(r['upload_phase_over_ceiling'], 3)}) |",
        f"| 16 | the same command again: resume check, every file hashed and found, nothing sent | "
        f"{fmt(r['resume_check_wall_s'], 2)} s = {fmt(r['resume_check_files_per_s'])} files/s |",
    ]
