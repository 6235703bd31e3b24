-- The reference schema's library-type and identifier-type fields, and organization-scoped types beside
-- the built-in ones (org_id NULL: seeded here, read-only, visible to every organization). Type IDs stay
-- one namespace (entity_identifiers and libraries reference them), as engine IDs are.
ALTER TABLE entity_identifier_types
    ADD COLUMN org_id uuid REFERENCES organizations(id) ON DELETE CASCADE,
    ADD COLUMN icon_class text;

ALTER TABLE library_types
    ADD COLUMN org_id uuid REFERENCES organizations(id) ON DELETE CASCADE,
    ADD COLUMN icon_class text,
    -- EntityType.schema: a JSON Schema the jsondata of the library's entities must satisfy ({} = anything)
    ADD COLUMN entity_type_schema jsonb NOT NULL DEFAULT '{}'::jsonb;

CREATE INDEX entity_identifier_types_org ON entity_identifier_types (org_id) WHERE org_id IS NOT NULL;
CREATE INDEX library_types_org ON library_types (org_id) WHERE org_id IS NOT NULL;

-- CreateTask.testTask, returned as Task.testTask.
ALTER TABLE tasks ADD COLUMN test_task boolean NOT NULL DEFAULT false;

-- Engine.description: an installed engine's docstring summary, or what createEngine was given.
ALTER TABLE engines ADD COLUMN description text;

-- createdBy / modifiedBy: the ID of the API token that made the change (what `me { id }` answers for it).
-- NULL for rows from before this migration and for changes made by the system (installation, workers).
ALTER TABLE libraries ADD COLUMN created_by text, ADD COLUMN modified_by text;
ALTER TABLE entities ADD COLUMN created_by text, ADD COLUMN modified_by text;
ALTER TABLE jobs ADD COLUMN created_by text, ADD COLUMN modified_by text;
ALTER TABLE engines ADD COLUMN created_by text;

-- CreateEntityIdentifier.profileUpdateMode: an entity's profile image may be one of its identifiers, whose
-- (presigned, short-lived) URL Entity.profileImageUrl gives afresh on each read. profile_image_url then is NULL.
ALTER TABLE entities ADD COLUMN profile_identifier_id uuid REFERENCES entity_identifiers(id) ON DELETE SET NULL;
