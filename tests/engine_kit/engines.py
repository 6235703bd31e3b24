"""Engines written with the kit, as a developer would: a digit recognizer (plain and async), and the ones that
misbehave on purpose (slow, failing, returning nothing)."""

from __future__ import annotations

import io
import json
import time

import numpy as np
from PIL import Image

from engineshed.engine import Artifact, Engine, TrainingFailed


def pixels(data: bytes) -> np.ndarray:
    return np.asarray(Image.open(io.BytesIO(data)).convert("L").resize((8, 8)), dtype=np.float64).ravel() / 255.0


def nearest(model_json: dict, data: bytes) -> list[dict]:
    probe = pixels(data)
    distances = {entity: float(np.linalg.norm(probe - np.asarray(centre))) for entity, centre in model_json["centroids"].items()}
    ranked = sorted(distances, key=distances.get)
    return [{"entityId": e, "score": round(1.0 / (1.0 + distances[e]), 4)} for e in ranked[:3]]


class Centroids(Engine):
    """Nearest mean image per entity: the model file maps each centroid to its entity and identifier IDs."""

    identifier_types = ("image",)

    def train(self, library, model):
        sums: dict[str, np.ndarray] = {}
        members: dict[str, list[str]] = {}
        for identifier, data in library.files():
            sums[identifier.entity_id] = sums.get(identifier.entity_id, 0) + pixels(data)
            members.setdefault(identifier.entity_id, []).append(identifier.id)
        centroids = {e: (total / len(members[e])).tolist() for e, total in sums.items()}
        body = json.dumps({"centroids": centroids, "identifiers": members}).encode()
        return Artifact(body, content_type="application/json", filename="centroids.json",
                        jsondata={"entities": len(centroids), "identifiers": sum(len(v) for v in members.values())})

    def recognize(self, model, media):
        return nearest(json.loads(model.data), media)


class AsyncCentroids(Centroids):
    """The same engine written with asyncio."""

    async def train(self, library, model):
        sums: dict[str, np.ndarray] = {}
        members: dict[str, list[str]] = {}
        async for identifier, data in library.files():
            sums[identifier.entity_id] = sums.get(identifier.entity_id, 0) + pixels(data)
            members.setdefault(identifier.entity_id, []).append(identifier.id)
        centroids = {e: (total / len(members[e])).tolist() for e, total in sums.items()}
        return Artifact(json.dumps({"centroids": centroids, "identifiers": members}).encode(), content_type="application/json",
                        jsondata={"entities": len(centroids)})


class Slow(Engine):
    """Works for a long time, reporting progress: it stops only through the kit (cancellation, Ctrl-C)."""

    identifier_types = ("image",)

    def train(self, library, model):
        for step in range(100_000):
            model.progress(min(0.9, step / 1000), "thinking")
            time.sleep(0.05)


class Failing(Engine):
    identifier_types = ("image",)

    def train(self, library, model):
        raise TrainingFailed(f"no usable images among {len(library.identifiers())} identifiers")


class Crashing(Engine):
    identifier_types = ("image",)

    async def train(self, library, model):
        raise ValueError("the engine's own bug")


class Empty(Engine):
    """Forgets to return its model."""

    identifier_types = ("image",)

    def train(self, library, model):
        for _ in library.files():
            pass


not_an_engine = 42
