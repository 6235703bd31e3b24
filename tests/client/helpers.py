"""Helpers for driving the client and the CLI against the real stack: folders of images, the CLI as a process."""

from __future__ import annotations

import io
import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from tests.conftest import ROOT, Org


def png(seed: int, side: int = 48) -> bytes:
    """A grey PNG of noise; distinct seeds give distinct content (and SHA-256)."""
    pixels = np.random.default_rng(seed).integers(0, 256, (side, side), dtype=np.uint8)
    out = io.BytesIO()
    Image.fromarray(pixels, "L").save(out, "PNG")
    return out.getvalue()


def jpeg(seed: int, side: int = 64) -> bytes:
    pixels = np.random.default_rng(seed).integers(0, 256, (side, side, 3), dtype=np.uint8)
    out = io.BytesIO()
    Image.fromarray(pixels, "RGB").save(out, "JPEG", quality=90)
    return out.getvalue()


def image_folder(root: Path, entities: dict[str, int], seed: int = 0) -> dict[str, list[Path]]:
    """``root/<entity>/<n>.png`` for each entity and count; the paths by entity."""
    made: dict[str, list[Path]] = {}
    for e, (name, count) in enumerate(entities.items()):
        folder = root / name
        folder.mkdir(parents=True, exist_ok=True)
        made[name] = []
        for n in range(count):
            path = folder / f"{n:03d}.png"
            path.write_bytes(png(seed * 100_000 + e * 1000 + n))
            made[name].append(path)
    return made


def cli_env(org: Org, token: str | None = None, url: str | None = None) -> dict[str, str]:
    env = {k: v for k, v in org.stack.env.items() if k not in ("DATABASE_URL", "S3_ENDPOINT_URL")}
    env["ENGINESHED_URL"] = url or org.gateway.url
    env["ENGINESHED_TOKEN"] = token if token is not None else org.token
    return env


def cli(org: Org, *args: str, token: str | None = None, url: str | None = None, cwd: Path = ROOT,
        timeout: float = 240) -> subprocess.CompletedProcess[str]:
    """``engineshed ARGS`` as a user runs it, with ENGINESHED_URL / ENGINESHED_TOKEN set for the org."""
    return subprocess.run([sys.executable, "-m", "engineshed.cli.main", *args], env=cli_env(org, token, url), cwd=cwd,
                          capture_output=True, text=True, timeout=timeout)


def cli_json(org: Org, *args: str, expect: int = 0, **kwargs: Any) -> Any:
    done = cli(org, *args, "--json", **kwargs)
    assert done.returncode == expect, (done.returncode, done.stdout[-3000:], done.stderr[-3000:])
    return json.loads(done.stdout)


def library_identifiers(org: Org, library_id: str) -> list[dict[str, Any]]:
    """Every identifier of the library with its entity's name and content digest, read through the API."""
    out: list[dict[str, Any]] = []
    offset = 0
    while True:
        page = org.client.query(
            "query($l: [ID!], $o: Int) { entities(libraryIds: $l, offset: $o, limit: 50) { count records { name "
            "identifiers(limit: 500) { records { id contentSha256 contentLength contentType } } } } }",
            l=[library_id], o=offset,
        ).ok()["entities"]
        for entity in page["records"]:
            out += [dict(r, entity=entity["name"]) for r in entity["identifiers"]["records"]]
        if page["count"] < 50:
            return out
        offset += page["count"]


def library_id_by_name(org: Org, name: str) -> str | None:
    records = org.client.query("query($n: String) { libraries(name: $n, limit: 100) { records { id name } } }", n=name).ok()
    return next((r["id"] for r in records["libraries"]["records"] if r["name"] == name), None)
