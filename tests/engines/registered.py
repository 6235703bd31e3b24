"""Registering models for the engine tests, through the registry's services on the test stack.

The registry's own tests drive ``registerModel`` over HTTP; these tests are about what engines do
with a registered model, so they register through the same service functions the mutation and
``engineshed models pull`` call, with the trial inference run as a worker runs it.
"""

from __future__ import annotations

import asyncio
import io
import uuid
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

from gateway.resources import open_resources
from gateway.services.access.principal import Principal
from gateway.services.models import registry as models
from gateway.settings import Settings
from gateway.worker import trials
from storage.rows import ModelVersion
from tests.conftest import Org, Stack

T = TypeVar("T")


class _Upload:
    def __init__(self, data: bytes, filename: str) -> None:
        self._body, self.filename = io.BytesIO(data), filename

    async def read(self, n: int) -> bytes:
        return self._body.read(n)


def with_resources(stack: Stack, fn: Callable[[Any], Awaitable[T]]) -> T:
    """Run ``fn(res)`` with the resources a worker opens (its own event loop, here in the test process)."""

    async def go() -> T:
        settings = Settings.from_env(stack.env)
        async with open_resources(settings, role="worker", run_migrations=False, load_engines=False) as res:
            return await fn(res)

    return asyncio.run(go())


def register_org_model(
    org: Org, name: str, application: str, onnx_bytes: bytes, manifest: dict[str, Any] | None, *, ready: bool = True
) -> ModelVersion:
    """``registerModel`` for ``org``; with ``ready`` the trial inference then runs, as a worker would."""

    async def go(res: Any) -> ModelVersion:
        principal = Principal(org_id=org.id, scope="admin")
        version = await models.register(
            res, principal, name=name, application=application, manifest=manifest, file=_Upload(onnx_bytes, f"{name}.onnx")
        )
        if ready:
            while (claimed := await trials.claim(res, "test-trials")) is not None:
                await trials.run_claimed(res, claimed, "test-trials")
            # A worker process of the same stack may have claimed this trial first: then wait for its verdict.
            deadline = asyncio.get_running_loop().time() + 120
            while (version := await models.get(res, principal, name, version.version)).status == "validating":
                if asyncio.get_running_loop().time() > deadline:
                    raise AssertionError(f"the trial of {version.ref} did not finish in 120 s")
                await asyncio.sleep(0.1)
        return version

    return with_resources(org.stack, go)


def register_pulled(stack: Stack, pulled: Any) -> ModelVersion:
    """A pulled catalogue model registered exactly as ``engineshed models pull`` registers it (its package as the
    source), made its ``default``: a later test of the pull itself then finds the same version with the same
    source, whichever module registered those bytes first."""
    from gateway.services.models import pull as model_pull

    version = with_resources(stack, lambda res: model_pull.register(res, pulled))
    return _make_default(stack, pulled.entry.name, version)


def register_system(stack: Stack, name: str, application: str, onnx_bytes: bytes, manifest: dict[str, Any]) -> ModelVersion:
    """A system model (every organization sees it), as ``engineshed models pull`` registers one, made that
    model's ``default``: a new version of a system model that exists already takes no alias by itself, and
    the same bytes return the version that holds them, whatever an earlier test module left pointing where."""
    version = with_resources(
        stack,
        lambda res: models.register_system_model(
            res, name=name, application=application, model_bytes=onnx_bytes, manifest=manifest,
            source={"package": "tests", "licence": "test"},
        ),
    )
    return _make_default(stack, name, version)


def _make_default(stack: Stack, name: str, version: ModelVersion) -> ModelVersion:
    stack.db.fetch(
        "INSERT INTO model_aliases (model_id, alias, version_id) SELECT model_id, 'default', id FROM model_versions"
        " WHERE id = $1 ON CONFLICT (model_id, alias) DO UPDATE SET version_id = EXCLUDED.version_id",
        version.id,
    )
    return with_resources(stack, lambda res: models.get(res, Principal(org_id=uuid.uuid4(), scope="read"), name, version.version))


def drop_system_default(stack: Stack, name: str) -> None:
    """Remove a system model's ``default`` alias, so later tests see no system default for it again.

    The stack is shared by the whole session; versions stay (trained models point at them).
    """
    stack.db.fetch(
        "DELETE FROM model_aliases WHERE alias = 'default' AND model_id IN (SELECT id FROM models WHERE org_id IS NULL AND name = $1)",
        name,
    )
