"""Recognition from the vector index: a gallery model trained with ``recognizeFrom: "index"`` answers by
searching its library's stored vectors (pgvector) instead of running its ONNX artifact.

The answer has the artifact's form and rules: the input is embedded by the model version the gallery was
trained on, each entity scores its best identifier (cosine), the best ``topK`` entities come first (at most
the model's trained topK), and those under the threshold (default: the one the training calibrated) are
dropped. The gallery is whatever the library holds *now*: an identifier added after training counts as soon as
its vector is stored, a deleted one no longer does. Up to ``ENGINESHED_SEARCH_EXACT_BELOW`` vectors the
ranking is exact; above, with the (model version, organization) HNSW index built, it is approximate.
"""

from __future__ import annotations

from uuid import UUID

import numpy as np

from engines.embedding import embedder
from engines.interface import EngineError, Match, Recognition
from gateway.errors import InvalidInput
from gateway.resources import Resources
from gateway.services.embeddings import search
from gateway.services.models import backbones as engine_backbones
from gateway.services.models import registry as models
from storage.queries import vectors as q
from storage.rows import EngineModel, ModelVersion

__all__ = ["INDEX", "recognize", "serves_from_index"]

INDEX = "index"  # the gallery engine's recognizeFrom value (engines.gallery)
# Identifiers read from the HNSW index per recognition, then grouped by entity: enough for topK entities unless
# a few entities hold most of the nearest identifiers (the index path is approximate anyway).
INDEX_CANDIDATES = 1000


def serves_from_index(model: EngineModel) -> bool:
    """Whether a trained model answers from the index (its training recorded ``recognizeFrom: "index"``)."""
    return isinstance(model.jsondata, dict) and model.jsondata.get("recognizeFrom") == INDEX


async def recognize(res: Resources, model: EngineModel, images: list[bytes], *, top_k: int,
                    threshold: float | None) -> list[Recognition]:
    """Each image's best entities of ``model``'s library, best first, from the stored vectors."""
    report = model.jsondata or {}
    version_id = model.model_version_id
    version = await models.pinned_version(res, model.org_id, version_id) if version_id is not None else None
    if version is None:
        raise InvalidInput("the embedding model this gallery was trained with is gone; retrain it to recognize")
    cut = float(report.get("threshold", -1.0)) if threshold is None else threshold
    k = min(top_k, int(report.get("topK") or top_k))
    try:
        emb = await embedder(await engine_backbones.engine_model(res, version), res.settings.onnx_provider)
        decoded = await emb.decode(images, None)
        for index, (_, skip) in enumerate(decoded):
            if skip is not None:
                raise InvalidInput(f"image {index} cannot be used ({skip['reason']}): {skip.get('detail', '')}")
        queries = await emb.embed([array for array, _ in decoded])
    except EngineError as exc:
        raise InvalidInput(str(exc)) from exc
    return [
        Recognition(n, await _best_entities(res, model, version, vector, k, cut))
        for n, vector in enumerate(queries)
    ]


async def _best_entities(res: Resources, model: EngineModel, version: ModelVersion, vector: np.ndarray, k: int,
                         cut: float) -> list[Match]:
    query = np.asarray(vector, np.float32).tolist()
    org, library, version_id = model.org_id, model.library_id, version.id
    async with res.pool.acquire() as conn:
        exact = not await q.more_candidates_than(conn, org, version_id, library, res.settings.search_exact_below) \
            or not await q.index_built(conn, org, version_id)
        if exact:
            rows = await q.best_per_entity(conn, org, library, version_id, query, k)
            return [Match(str(r["entity_id"]), r["entity_name"], str(r["identifier_id"]), float(r["score"]))
                    for r in rows if float(r["score"]) >= cut]
    hits = await search.search(res, org, version, library, query, None, INDEX_CANDIDATES, cut)
    async with res.pool.acquire() as conn:
        owners = {r["identifier_id"]: r for r in await q.entities_of_identifiers(conn, org, [i for i, _ in hits])}
    matches: list[Match] = []
    seen: set[UUID] = set()
    for identifier_id, score in hits:  # best first, so an entity's first hit is its best
        owner = owners.get(identifier_id)
        if owner is None or owner["entity_id"] in seen:
            continue
        seen.add(owner["entity_id"])
        matches.append(Match(str(owner["entity_id"]), owner["entity_name"], str(identifier_id), score))
        if len(matches) == k:
            break
    return matches
