"""An engine defined in the tests, loaded into worker processes with ENGINESHED_EXTRA_ENGINES.

It reads the library like a real engine (pages and bytes through the TrainingContext), reports progress,
and its payload config makes it slow, fail or raise, so dispatch can be tested deterministically.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
from collections.abc import Sequence

from engines.interface import Artifact, ConfigOption, EngineError, EngineInfo, Recognition


class SleeperEngine:
    info = EngineInfo(
        id="test-sleeper",
        name="Sleeper (test engine)",
        category_id="test",
        identifier_type_ids=("image", "face"),
        library_type_ids=("people", "objects"),
        modes=("library-train",),
        concurrency_limit=2,
        config=(
            ConfigOption("seconds", float, 0.0, "how long training takes", minimum=0, maximum=600),
            ConfigOption("fail", str, "", "'engine': raise EngineError; 'crash': raise RuntimeError"),
            ConfigOption("steps", int, 10, "progress steps", minimum=1, maximum=1000),
        ),
    )

    async def train(self, ctx) -> Artifact:  # noqa: ANN001 - engines.interface.TrainingContext
        digest = hashlib.sha256()
        count = 0
        async for page in ctx.pages(30):
            for ref in page:
                data = await ctx.fetch(ref)
                digest.update(ref.identifier_id.encode() + data)
                count += 1
        steps = ctx.config["steps"]
        for step in range(steps):
            await asyncio.sleep(ctx.config["seconds"] / steps)
            await ctx.progress((step + 1) / steps, f"step {step + 1} of {steps}")
        if ctx.config["fail"] == "engine":
            raise EngineError("the sleeper was asked to fail")
        if ctx.config["fail"] == "crash":
            raise RuntimeError("the sleeper crashed")
        body = json.dumps({"identifiers": count, "digest": digest.hexdigest(), "model": ctx.model_id}).encode()
        return Artifact(data=body, content_type="application/json", jsondata={"identifiers": count}, accuracy=None)

    async def recognize(self, artifact: bytes, images: Sequence[bytes], *, top_k: int, threshold, execution_provider: str) -> list[Recognition]:
        return [Recognition(index=i, matches=[]) for i in range(len(images))]
