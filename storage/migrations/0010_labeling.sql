-- The labeling loop (#14): identifiers with no entity yet, the suggestions models make for them, the hard
-- examples active learning flags, and the groups auto-grouping makes of them.

-- An identifier with a library and no entity is "unassigned". The annotation type says how far along it is:
-- raw (nothing yet), machine (a model suggested an entity), human (a person placed or confirmed it). A human
-- annotation always has its entity, and a raw one never does.
ALTER TABLE entity_identifiers ALTER COLUMN entity_id DROP NOT NULL;
ALTER TABLE entity_identifiers
    ADD CONSTRAINT entity_identifiers_annotation_entity
        CHECK ((annotation_type <> 'human' OR entity_id IS NOT NULL) AND (annotation_type <> 'raw' OR entity_id IS NULL)),
    ADD COLUMN hard boolean NOT NULL DEFAULT false,
    -- 1 - (top-1 confidence - top-2 confidence) of the active-learning run that flagged it: higher is harder.
    ADD COLUMN hard_coefficient double precision;
CREATE INDEX entity_identifiers_unassigned ON entity_identifiers (library_id, created_at, id) WHERE entity_id IS NULL;

-- The queue's host for labeling jobs (auto-tag, hard examples, grouping): built-in workers claim it, and its
-- concurrency limit bounds how many run at once across every worker. createJob refuses it.
INSERT INTO engines (id, org_id, name, category_id, identifier_type_ids, library_type_ids, modes, library_required,
                     concurrency_limit, builtin, version, description)
VALUES ('engineshed-labeling', NULL, 'Labeling jobs (auto-tag, hard examples, auto-grouping)', 'labeling',
        ARRAY['image', 'face'], '{}', ARRAY['labeling'], false, 2, true, '1',
        'Runs autoTag, findHardExamples and autoGroup jobs; not for createJob.')
ON CONFLICT (id) DO NOTHING;

CREATE TABLE identifier_suggestions (
    id uuid PRIMARY KEY,
    org_id uuid NOT NULL REFERENCES organizations(id) ON DELETE CASCADE,
    job_id uuid NOT NULL REFERENCES jobs(id) ON DELETE CASCADE,
    identifier_id uuid NOT NULL REFERENCES entity_identifiers(id) ON DELETE CASCADE,
    library_id uuid NOT NULL REFERENCES libraries(id) ON DELETE CASCADE,
    -- The entity of the identifier's library the model named; NULL: a label with no entity there (yet).
    entity_id uuid REFERENCES entities(id) ON DELETE SET NULL,
    label text NOT NULL,
    confidence double precision NOT NULL CHECK (confidence >= 0 AND confidence <= 1),
    model_version text,
    status text NOT NULL DEFAULT 'pending' CHECK (status IN ('pending', 'accepted', 'rejected')),
    decided_by text,
    created_at timestamptz NOT NULL DEFAULT now(),
    modified_at timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX identifier_suggestions_job ON identifier_suggestions (job_id, confidence DESC, id);
CREATE INDEX identifier_suggestions_identifier ON identifier_suggestions (identifier_id, confidence DESC);
CREATE INDEX identifier_suggestions_library ON identifier_suggestions (library_id, status, created_at);

CREATE TABLE identifier_groups (
    id uuid PRIMARY KEY,
    org_id uuid NOT NULL REFERENCES organizations(id) ON DELETE CASCADE,
    job_id uuid NOT NULL REFERENCES jobs(id) ON DELETE CASCADE,
    library_id uuid NOT NULL REFERENCES libraries(id) ON DELETE CASCADE,
    position integer NOT NULL,
    -- The member nearest the group's centre.
    representative_id uuid REFERENCES entity_identifiers(id) ON DELETE SET NULL,
    created_at timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX identifier_groups_job ON identifier_groups (job_id, position);

CREATE TABLE identifier_group_members (
    group_id uuid NOT NULL REFERENCES identifier_groups(id) ON DELETE CASCADE,
    identifier_id uuid NOT NULL REFERENCES entity_identifiers(id) ON DELETE CASCADE,
    distance double precision NOT NULL,
    PRIMARY KEY (group_id, identifier_id)
);
CREATE INDEX identifier_group_members_identifier ON identifier_group_members (identifier_id);

-- A job's suggestions go with the job (deleteJob): an unassigned identifier they had made `machine` and that has
-- no pending suggestion left is `raw` again, however the rows went (a cascade included).
CREATE FUNCTION identifier_suggestions_gone() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    UPDATE entity_identifiers i SET annotation_type = 'raw', modified_at = now()
    WHERE i.id IN (SELECT DISTINCT g.identifier_id FROM gone g)
      AND i.entity_id IS NULL AND i.annotation_type = 'machine'
      AND NOT EXISTS (SELECT 1 FROM identifier_suggestions s WHERE s.identifier_id = i.id AND s.status = 'pending');
    RETURN NULL;
END $$;
CREATE TRIGGER identifier_suggestions_gone AFTER DELETE ON identifier_suggestions
    REFERENCING OLD TABLE AS gone FOR EACH STATEMENT EXECUTE FUNCTION identifier_suggestions_gone();
