"""In-process calls of the registry's service functions against the test stack (what other branches call)."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any

from gateway.resources import open_resources
from gateway.settings import Settings
from sampledata import onnx_models as m


def with_resources(stack: Any, work: Callable[[Any], Awaitable[Any]]) -> Any:
    settings = Settings.from_env(dict(stack.env, ENGINESHED_ONNX_PROVIDER="cpu"))

    async def run() -> Any:
        async with open_resources(settings, role="test", run_migrations=False, load_engines=False) as res:
            return await work(res)

    return asyncio.run(run())


def register_system(stack: Any, name: str) -> str:
    from gateway.services.models import registry as models

    async def work(res: Any) -> str:
        version = await models.register_system_model(
            res, name=name, application="embedding", model_bytes=m.conv_net(seed=99), manifest=m.normalised_manifest(),
            source={"package": "registry-tests", "version": "1.0.0", "file": "net.onnx", "sha256": "0" * 64, "licence": "MIT"},
            description="registered by the tests",
        )
        return version.name

    return with_resources(stack, work)
