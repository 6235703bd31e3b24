"""Embedding operations (generate, insert, get by unique name) and similarity search."""

from __future__ import annotations

from typing import Optional

import strawberry
from strawberry.file_uploads import Upload

from gateway.schema.context import Info
from gateway.schema.identifier_filter import IdentifierFilter, to_selection
from gateway.schema.jobs import Job
from gateway.schema.identifiers import EntityIdentifier
from gateway.services.embeddings import generate as embedding_generate
from gateway.services.embeddings import search as embedding_search
from gateway.services.embeddings import vectors as embedding_service


@strawberry.input(description="One vector for insertEmbeddings: the identifier's uniqueName and its values.")
class EmbeddingRecord:
    unique_name: str
    embeddings: list[float]


@strawberry.type
class InsertEmbeddingsResult:
    inserted: int


@strawberry.type(description="A stored vector, by the identifier's uniqueName.")
class EmbeddingVector:
    unique_name: str
    identifier_id: strawberry.ID
    library_id: strawberry.ID
    model: str = strawberry.field(description="The model version, as name@version.")
    dimension: int
    embeddings: list[float]


@strawberry.type
class SimilarIdentifier:
    identifier: EntityIdentifier
    score: float = strawberry.field(description="Cosine similarity to the query, in -1..1.")


@strawberry.type
class EmbeddingQuery:
    @strawberry.field(description="Stored vectors of identifiers by uniqueName (names without one are left out).")
    async def embedding_vectors(
        self, info: Info, unique_names: list[str], model_id: Optional[str] = None, library_id: Optional[strawberry.ID] = None,
    ) -> list[EmbeddingVector]:
        found = await embedding_service.vectors(info.context.resources, info.context.principal, unique_names, model_id, library_id)
        return [
            EmbeddingVector(unique_name=v.unique_name, identifier_id=strawberry.ID(str(v.identifier_id)),
                            library_id=strawberry.ID(str(v.library_id)), model=v.model, dimension=int(v.vector.size),
                            embeddings=v.vector.tolist())
            for v in found
        ]

    @strawberry.field(description=(
        "Identifiers nearest by cosine to one given by identifierId, file or vector, in a library or the whole "
        "organization; exact over small sets, the HNSW index over large ones. Without modelId: the default model of "
        "the identifier's type, else the one the library's type picks (a people library: face-embedding), else the "
        "image default."))
    async def similar_identifiers(
        self,
        info: Info,
        library_id: Optional[strawberry.ID] = None,
        identifier_id: Optional[strawberry.ID] = None,
        file: Optional[Upload] = None,
        vector: Optional[list[float]] = None,
        model_id: Optional[str] = None,
        limit: Optional[int] = 10,
        threshold: Optional[float] = None,
    ) -> list[SimilarIdentifier]:
        upload = file or (info.context.form_file if identifier_id is None and vector is None else None)
        hits = await embedding_search.similar(
            info.context.resources, info.context.principal, library_id=library_id, identifier_id=identifier_id,
            file=upload, vector=vector, model_ref=model_id, limit=10 if limit is None else limit, threshold=threshold,
        )
        return [SimilarIdentifier(identifier=EntityIdentifier.from_row(h.identifier), score=h.score) for h in hits]


@strawberry.type
class EmbeddingMutation:
    @strawberry.mutation(description=(
        "Embed identifiers that have no vector of the model yet: one library, or (identifierTypeId) every library "
        "of the organization holding that type. Without modelId, each type's default model. query narrows the "
        "selection as autoTag's does (entity.name=…, annotation.label=…, identifier.title=…, "
        "identifier.contentType=…, joined by AND)."))
    async def generate_embeddings(
        self,
        info: Info,
        library_id: Optional[strawberry.ID] = None,
        identifier_type_id: Optional[strawberry.ID] = None,
        model_id: Optional[str] = None,
        filter: Optional[IdentifierFilter] = None,
        query: Optional[str] = None,
    ) -> Job:
        job = await embedding_generate.generate(
            info.context.resources, info.context.principal, library_id=library_id,
            identifier_type_id=str(identifier_type_id) if identifier_type_id is not None else None,
            model_ref=model_id, selection=to_selection(filter), query=query,
        )
        return Job.from_row(job)

    @strawberry.mutation(description=(
        "Store vectors computed elsewhere, by uniqueName: fewer than 100 per call, each of the model's dimension; "
        "all or nothing."))
    async def insert_embeddings(
        self,
        info: Info,
        model_id: str,
        vector_dimension: list[int],
        embeddings: list[EmbeddingRecord],
        library_id: Optional[strawberry.ID] = None,
    ) -> InsertEmbeddingsResult:
        inserted = await embedding_service.insert(
            info.context.resources, info.context.principal, model_id, vector_dimension,
            [(r.unique_name, r.embeddings) for r in embeddings], library_id,
        )
        return InsertEmbeddingsResult(inserted=inserted)
