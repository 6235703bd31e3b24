-- requires-extension: vector
-- Embeddings as first-class data (pgvector): one row per (identifier, model version), made at ingest by a
-- batched background queue, inserted by clients (insertEmbeddings), read by training and by search.
-- storage/migrate.py checks pg_available_extensions for the line above before running this file, so a server
-- without pgvector fails start-up with a message that names it, instead of this CREATE's bare error.
CREATE EXTENSION IF NOT EXISTS vector;

-- The seed's uniqueName: set at upload (default: the file name), unique within its library. Rows from
-- before this migration keep their id as the name, which is unique already.
ALTER TABLE entity_identifiers ADD COLUMN unique_name text;
UPDATE entity_identifiers SET unique_name = id::text WHERE unique_name IS NULL;
CREATE UNIQUE INDEX entity_identifiers_unique_name ON entity_identifiers (library_id, unique_name)
    WHERE unique_name IS NOT NULL;
-- insertEmbeddings / embeddingVectors without a libraryId look a name up across the organization.
CREATE INDEX entity_identifiers_org_unique_name ON entity_identifiers (org_id, unique_name)
    WHERE unique_name IS NOT NULL;

-- The vectors. `embedding` is an untyped `vector` because model versions differ in dimension; pgvector
-- cannot index a column of mixed dimensions, so each model version gets its own partial HNSW index on
-- `embedding::vector(dim)` (storage/queries/vectors.py creates it when the version's first vector lands).
-- org_id and library_id are repeated from the identifier for tenancy filters and per-library scans.
CREATE TABLE identifier_embeddings (
    identifier_id uuid NOT NULL REFERENCES entity_identifiers(id) ON DELETE CASCADE,
    model_version_id uuid NOT NULL REFERENCES model_versions(id) ON DELETE CASCADE,
    org_id uuid NOT NULL REFERENCES organizations(id) ON DELETE CASCADE,
    library_id uuid NOT NULL REFERENCES libraries(id) ON DELETE CASCADE,
    dimension integer NOT NULL CHECK (dimension > 0),
    embedding vector NOT NULL,
    source text NOT NULL CHECK (source IN ('computed', 'inserted')),
    created_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (identifier_id, model_version_id),
    CHECK (vector_dims(embedding) = dimension)
);
CREATE INDEX identifier_embeddings_library ON identifier_embeddings (library_id, model_version_id);

-- The partial HNSW indexes, one per (model version, organization) holding vectors: a row is added (built false)
-- when the pair's first vectors land; a worker builds the index CONCURRENTLY and sets built. A per-tenant
-- graph keeps one organization's results from being crowded out of the index scan by another's rows.
CREATE TABLE embedding_indexes (
    model_version_id uuid NOT NULL REFERENCES model_versions(id) ON DELETE CASCADE,
    org_id uuid NOT NULL REFERENCES organizations(id) ON DELETE CASCADE,
    dimension integer NOT NULL,
    index_name text NOT NULL UNIQUE,
    built boolean NOT NULL DEFAULT false,
    created_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (model_version_id, org_id)
);
CREATE INDEX embedding_indexes_unbuilt ON embedding_indexes (created_at) WHERE NOT built;

-- The ingest queue: (identifier, model version) pairs still to embed. Workers claim a batch at a time
-- (FOR UPDATE SKIP LOCKED) under a lease; a killed worker's batch is claimed again when its lease runs out.
-- The primary key makes each pair queued once; the vector row's primary key makes it stored once.
CREATE TABLE embedding_queue (
    identifier_id uuid NOT NULL REFERENCES entity_identifiers(id) ON DELETE CASCADE,
    model_version_id uuid NOT NULL REFERENCES model_versions(id) ON DELETE CASCADE,
    org_id uuid NOT NULL REFERENCES organizations(id) ON DELETE CASCADE,
    library_id uuid NOT NULL REFERENCES libraries(id) ON DELETE CASCADE,
    status text NOT NULL DEFAULT 'pending' CHECK (status IN ('pending', 'failed')),
    attempts integer NOT NULL DEFAULT 0,
    lease_owner text,
    lease_expires_at timestamptz,
    failure text,
    created_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (identifier_id, model_version_id)
);
CREATE INDEX embedding_queue_claimable ON embedding_queue (model_version_id, created_at) WHERE status = 'pending';
CREATE INDEX embedding_queue_library ON embedding_queue (library_id, model_version_id);

-- generateEmbeddings jobs run as tasks of this internal engine (tasks need an engine row); state `internal`
-- keeps it out of engine listings and library publishing, which read active engines only.
INSERT INTO engines (id, org_id, name, category_id, identifier_type_ids, modes, library_required, concurrency_limit,
                     builtin, description, state)
VALUES ('engineshed-embeddings', NULL, 'Embeddings', 'embedding', ARRAY['face', 'image'], ARRAY['batch'], false, 4,
        true, 'Embeds a selection of identifiers with a registered embedding model (generateEmbeddings).', 'internal')
ON CONFLICT (id) DO NOTHING;
