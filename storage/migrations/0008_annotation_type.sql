-- How an identifier came by its entity, in the annotation types of the seed's filters: `raw` (no entity yet),
-- `machine` (placed by a model's suggestion), `human` (placed or confirmed by a person). Every identifier so
-- far was placed under its entity by a person, hence the default.
ALTER TABLE entity_identifiers ADD COLUMN annotation_type text NOT NULL DEFAULT 'human'
    CHECK (annotation_type IN ('raw', 'machine', 'human'));
-- Selections by library and upload time (the filters' date range) read this instead of every row.
CREATE INDEX entity_identifiers_library_created ON entity_identifiers (library_id, created_at);
