-- People change: a person's "not this person" kept as a negative, and the entities merged into another kept
-- as a record of the target.

-- "Identifier X is not entity E" (cannot-link). Training never uses X as E's example, auto-tagging never
-- suggests E for X, and auto-grouping never puts X in one group with E's identifiers. An identifier is never
-- assigned to an entity it has a negative for: marking one unassigns it, and placing it there removes the negative.
CREATE TABLE identifier_negatives (
    org_id uuid NOT NULL REFERENCES organizations(id) ON DELETE CASCADE,
    identifier_id uuid NOT NULL REFERENCES entity_identifiers(id) ON DELETE CASCADE,
    entity_id uuid NOT NULL REFERENCES entities(id) ON DELETE CASCADE,
    library_id uuid NOT NULL REFERENCES libraries(id) ON DELETE CASCADE,
    created_by text,
    created_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (identifier_id, entity_id)
);
CREATE INDEX identifier_negatives_entity ON identifier_negatives (entity_id, identifier_id);
CREATE INDEX identifier_negatives_library ON identifier_negatives (library_id);

-- mergeEntities: each merged entity's name, description and jsondata, kept under the entity it went into (its
-- identifiers, their vectors and its suggestions and negatives moved there). A target merged later takes its
-- records along, so Entity.aliases lists every name the entity has had.
CREATE TABLE entity_merges (
    id uuid PRIMARY KEY,
    org_id uuid NOT NULL REFERENCES organizations(id) ON DELETE CASCADE,
    entity_id uuid NOT NULL REFERENCES entities(id) ON DELETE CASCADE,
    merged_entity_id uuid NOT NULL,
    name text NOT NULL,
    description text,
    jsondata jsonb NOT NULL DEFAULT '{}',
    identifiers_moved integer NOT NULL,
    position integer NOT NULL,  -- its place in the call's sourceIds
    merged_by text,
    merged_at timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX entity_merges_entity ON entity_merges (entity_id, merged_at, position);
