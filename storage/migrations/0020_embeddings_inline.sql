-- Exact similarity search at a library of thousands of vectors: what each candidate costs.
--
-- 1. Vectors stored inline in the table's pages instead of TOASTed. A 1024-d vector is 4,104 bytes, over the
--    2 kB TOAST threshold, so with the default storage (EXTENDED) every exact search fetched each candidate's
--    vector from the TOAST table (three chunks and an index descent, once per use of the column in the query):
--    a 1,000-vector library read 8,700 buffers per search instead of 1,000, 20-45 ms against 2-10 ms.
--    MAIN keeps a value in the row while the row fits in a page (pgvector's own advice); a larger vector
--    (over ~2,000 dimensions) still moves out of line, so no dimension is refused.
ALTER TABLE identifier_embeddings ALTER COLUMN embedding SET STORAGE MAIN;

-- 2. Each vector's inverse norm, so the exact ranking is one inner product a candidate (`<#>` times this)
--    instead of pgvector's cosine, which also sums both norms: half the time (10,000 1024-d candidates:
--    ~22 ms against ~50 ms). A zero vector has no direction: 0, so its cosine with anything reads 0.
--    Adding a stored generated column rewrites the table, which also moves the existing vectors inline (1.).
ALTER TABLE identifier_embeddings ADD COLUMN inverse_norm double precision NOT NULL
    GENERATED ALWAYS AS (CASE WHEN vector_norm(embedding) > 0 THEN 1 / vector_norm(embedding) ELSE 0 END) STORED;

-- 3. Organization-wide exact search and its candidate count (similarIdentifiers without libraryId) filter on
--    (org_id, model_version_id), which no index served: each such search read the whole table, every
--    tenant's rows, and with the vectors inline (1.) that table is the vectors themselves.
CREATE INDEX identifier_embeddings_org_version ON identifier_embeddings (org_id, model_version_id);
