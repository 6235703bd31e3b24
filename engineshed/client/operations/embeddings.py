"""Embeddings (LayerNext 7.4 - 7.8): generate them with a registered model, insert your own, read them back and
search by them."""

from __future__ import annotations

import math
import numbers
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from engineshed.client.errors import ApiError, InvalidInputError
from engineshed.client.operations.arguments import check_platform, identifier_type_of, model_or_default, named_model
from engineshed.client.operations.base import OperationsBase, graphql, op
from engineshed.client.operations.fields import IDENTIFIER_FIELDS, JOB_FIELDS
from engineshed.client.operations.filters import identifier_filter
from engineshed.client.transport import Operation, Upload
from engineshed.client.types import Job

EMBEDDING_BATCH = 99  # insert_image_embeddings_batch: "length of embedding_list must be less than 100"
NAMES_PER_LOOKUP = 1000  # embeddingVectors' limit on names per call


def _embedding_records(embedding_list: Any, vector_dimension: Any) -> tuple[list[dict[str, Any]], list[int]]:
    """LayerNext's ``[{"uniqueName", "embeddings"}]`` records checked and made plain (InvalidInputError naming the
    record otherwise), and ``vector_dimension`` (``[2048]`` or ``2048``) as a list."""
    if isinstance(vector_dimension, bool):
        raise InvalidInputError("vector_dimension must be a number or a list of one number, such as [2048]")
    if isinstance(vector_dimension, numbers.Integral):  # numpy's integers too
        dims = [int(vector_dimension)]
    elif isinstance(vector_dimension, Sequence) and not isinstance(vector_dimension, str) and all(
            isinstance(d, numbers.Integral) and not isinstance(d, bool) for d in vector_dimension):
        dims = [int(d) for d in vector_dimension]
    else:
        raise InvalidInputError(f"vector_dimension must be a number or a list of one number, such as [2048], not {vector_dimension!r}")
    if isinstance(embedding_list, (str, bytes, Mapping)) or not isinstance(embedding_list, Sequence):
        raise InvalidInputError('embedding_list must be a list of {"uniqueName": ..., "embeddings": [...]} records')
    records: list[dict[str, Any]] = []
    seen: set[str] = set()
    for position, record in enumerate(embedding_list):
        where = f"embedding_list[{position}]"
        if not isinstance(record, Mapping):
            raise InvalidInputError(f'{where} must be a {{"uniqueName": ..., "embeddings": [...]}} record')
        name, values = record.get("uniqueName"), record.get("embeddings")
        if not isinstance(name, str) or not name.strip():
            raise InvalidInputError(f"{where} needs a uniqueName (a non-empty string)")
        if name in seen:
            raise InvalidInputError(f"{where}: uniqueName {name!r} is given more than once")
        seen.add(name)
        if isinstance(values, (str, bytes)) or not isinstance(values, Sequence) and not hasattr(values, "tolist"):
            raise InvalidInputError(f"{where} ({name}): embeddings must be a list of numbers")
        vector = values.tolist() if hasattr(values, "tolist") else list(values)
        if not all(isinstance(x, numbers.Real) and not isinstance(x, bool) and math.isfinite(x) for x in vector):
            raise InvalidInputError(f"{where} ({name}): embeddings must be finite numbers (no NaN, infinity or text)")
        records.append({"uniqueName": name, "embeddings": [float(x) for x in vector]})
    return records, dims


def _insert_embeddings(records: list[dict[str, Any]], model_name: str, dims: list[int], library_id: str | None) -> Operation[int]:
    data = yield graphql("mutation($m: String!, $d: [Int!]!, $e: [EmbeddingRecord!]!, $l: ID) { insertEmbeddings(modelId: $m, "
                         "vectorDimension: $d, embeddings: $e, libraryId: $l) { inserted } }",
                         idempotent=True, m=model_name, d=dims, e=records, l=library_id)
    return data["insertEmbeddings"]["inserted"]


class EmbeddingOperations(OperationsBase):
    """Embedding vectors of identifiers."""

    @op
    def generate_embeddings_for_collection(self, collection_id: str, model_id: str | None = None, query: str | None = None,
                                           filter: Mapping[str, Any] | None = None,
                                           inference_platform: str = "use_env", *, model_name: str | None = None) -> Operation[Job]:
        """``generateEmbeddings(libraryId)``: embed a library's (LayerNext's collection's) identifiers.

        ``model_id``: a registered embedding model (``name``, ``name@3``, ``name@alias``); None: the system default.
        ``filter``: LayerNext's ``{"annotation_types", "from_date", "to_date"}``. ``inference_platform`` is accepted
        for LayerNext's signature and ignored (engineshed's workers run it). Returns the job.
        """
        check_platform(inference_platform)
        data = yield graphql("mutation($l: ID, $m: String, $f: IdentifierFilter, $q: String) { generateEmbeddings(libraryId: $l, modelId: $m, "
                             f"filter: $f, query: $q) {{ {JOB_FIELDS} }} }}", idempotent=False, l=collection_id,
                             m=model_or_default(named_model(model_id, model_name)),
                             f=identifier_filter(filter), q=query or None)
        return data["generateEmbeddings"]

    @op
    def generate_embeddings_to_metalake(self, content_type: str, model_id: str | None = None, query: str | None = None,
                                        filter: Mapping[str, Any] | None = None,
                                        inference_platform: str = "use_env", *, model_name: str | None = None) -> Operation[Job]:
        """``generateEmbeddings(identifierTypeId)``: every library of the organization holding ``content_type``
        (``'image'`` or ``'video'``, the identifier type of that id)."""
        check_platform(inference_platform)
        data = yield graphql("mutation($t: ID, $m: String, $f: IdentifierFilter, $q: String) { generateEmbeddings(identifierTypeId: $t, "
                             f"modelId: $m, filter: $f, query: $q) {{ {JOB_FIELDS} }} }}", idempotent=False, t=identifier_type_of(content_type),
                             m=model_or_default(named_model(model_id, model_name)), f=identifier_filter(filter), q=query or None)
        return data["generateEmbeddings"]

    @op
    def insert_image_embeddings_batch(self, embedding_list: Sequence[Mapping[str, Any]], model_name: str,
                                      vector_dimension: Sequence[int] | int, session_id: str = "",
                                      library_id: str | None = None) -> Operation[int]:
        """``insertEmbeddings``: fewer than 100 ``{"uniqueName", "embeddings"}`` records in one request, all or
        none; how many went in.

        ``session_id`` is accepted for LayerNext's signature; there are no MetaLake sessions here, so it must be a
        string and is otherwise unused.
        """
        if not isinstance(session_id, str):
            raise InvalidInputError("session_id must be a string (it is accepted for compatibility and unused)")
        if len(embedding_list) >= 100:
            raise InvalidInputError(f"embedding_list must hold fewer than 100 records, not {len(embedding_list)}; use insert_image_embeddings")
        records, dims = _embedding_records(embedding_list, vector_dimension)
        return (yield from _insert_embeddings(records, model_name, dims, library_id))

    @op
    def insert_image_embeddings(self, embedding_list: Sequence[Mapping[str, Any]], model_name: str,
                                vector_dimension: Sequence[int] | int, library_id: str | None = None) -> Operation[int]:
        """Any number of records, sent in batches under 100 (``insertEmbeddings`` each); how many went in.

        Every record is checked here before the first batch is sent, so a malformed one sends nothing. Each batch
        is all or nothing on the server; when the server refuses a later batch (an unknown uniqueName, say), the
        batches before it are stored: the error's ``data["inserted"]`` says how many, and sending the whole list
        again once it is fixed is safe (an insert replaces the name's vector for that model).
        """
        records, dims = _embedding_records(embedding_list, vector_dimension)
        total = 0
        for start in range(0, len(records), EMBEDDING_BATCH):
            try:
                total += yield from _insert_embeddings(records[start:start + EMBEDDING_BATCH], model_name, dims, library_id)
            except ApiError as exc:
                if total:
                    exc.data = {**exc.data, "inserted": total}
                    exc.message = (f"{exc.message} (in records {start}-{min(start + EMBEDDING_BATCH, len(records)) - 1}; "
                                   f"the {total} records before them were stored)")
                    exc.args = (exc.message,)
                raise
        return total

    @op
    def get_embedding_vector(self, unique_names: Sequence[str], model_name: str | None = None,
                             library_id: str | None = None) -> Operation[list[dict[str, Any]]]:
        """``embeddingVectors``: ``[{"uniqueName", "embeddings", "model", "dimension", …}]`` for the names given
        (a name with no vector for the model is left out); any number of names, asked 1,000 at a time."""
        if isinstance(unique_names, (str, bytes)):
            raise InvalidInputError("unique_names must be a list of strings, such as ['photo.jpg']")
        names = list(unique_names)  # once: a generator would be spent by the check below
        if not all(isinstance(n, str) for n in names):
            raise InvalidInputError("unique_names must be a list of strings, such as ['photo.jpg']")
        found: list[dict[str, Any]] = []
        for start in range(0, len(names), NAMES_PER_LOOKUP):
            data = yield graphql("query($n: [String!]!, $m: String, $l: ID) { embeddingVectors(uniqueNames: $n, modelId: $m, libraryId: $l) "
                                 "{ uniqueName identifierId libraryId model dimension embeddings } }",
                                 idempotent=True, n=names[start:start + NAMES_PER_LOOKUP], m=model_name, l=library_id)
            found += data["embeddingVectors"]
        return found

    @op
    def similar_identifiers(self, *, library_id: str | None = None, identifier_id: str | None = None,
                            file: str | Path | bytes | None = None, vector: Sequence[float] | None = None,
                            model_id: str | None = None, limit: int = 10, threshold: float | None = None) -> Operation[list[dict[str, Any]]]:
        """``similarIdentifiers``: the nearest identifiers to one identifier, a file or a vector."""
        uploads = {"f": Upload.of(file)} if file is not None else {}
        data = yield graphql("query($l: ID, $i: ID, $v: [Float!], $m: String, $n: Int, $t: Float, $f: Upload) { similarIdentifiers(libraryId: $l, "
                             "identifierId: $i, vector: $v, modelId: $m, limit: $n, threshold: $t, file: $f) "
                             f"{{ score identifier {{ {IDENTIFIER_FIELDS} }} }} }}", idempotent=True, uploads=uploads,
                             l=library_id, i=identifier_id, v=list(vector) if vector is not None else None, m=model_id, n=limit, t=threshold, f=None)
        return data["similarIdentifiers"]
