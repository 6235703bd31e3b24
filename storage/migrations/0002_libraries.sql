-- Library domain: the type catalogue (global), and libraries, entities and identifiers (per tenant).
CREATE TABLE entity_identifier_types (
    id text PRIMARY KEY,
    label text NOT NULL,
    label_plural text NOT NULL,
    description text,
    data_type text NOT NULL CHECK (data_type IN ('image', 'audio', 'video', 'text', 'pdf'))
);

CREATE TABLE library_types (
    id text PRIMARY KEY,
    label text NOT NULL,
    entity_type_name text NOT NULL,
    entity_type_name_plural text NOT NULL,
    identifier_type_ids text[] NOT NULL
);

INSERT INTO entity_identifier_types (id, label, label_plural, description, data_type) VALUES
    ('face', 'Face', 'Faces', 'An image of a face', 'image'),
    ('image', 'Image', 'Images', 'An image of an object or scene', 'image'),
    ('audio-recording', 'Audio Recording', 'Audio Recordings', 'A recording of a voice or sound', 'audio'),
    ('text', 'Text', 'Texts', 'A text sample', 'text'),
    ('video', 'Video', 'Videos', 'A video clip', 'video');

INSERT INTO library_types (id, label, entity_type_name, entity_type_name_plural, identifier_type_ids) VALUES
    ('people', 'People', 'person', 'people', ARRAY['face', 'image']),
    ('speakers', 'Speakers', 'speaker', 'speakers', ARRAY['audio-recording']),
    ('objects', 'Objects', 'object', 'objects', ARRAY['image']),
    ('documents', 'Documents', 'document', 'documents', ARRAY['text']);

CREATE TABLE libraries (
    id uuid PRIMARY KEY,
    org_id uuid NOT NULL REFERENCES organizations(id) ON DELETE CASCADE,
    name text NOT NULL,
    description text,
    library_type_id text NOT NULL REFERENCES library_types(id),
    cover_image_url text,
    version integer NOT NULL DEFAULT 0,
    created_at timestamptz NOT NULL DEFAULT now(),
    modified_at timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX libraries_org ON libraries (org_id, created_at DESC);

CREATE TABLE entities (
    id uuid PRIMARY KEY,
    org_id uuid NOT NULL REFERENCES organizations(id) ON DELETE CASCADE,
    library_id uuid NOT NULL REFERENCES libraries(id) ON DELETE CASCADE,
    name text NOT NULL,
    description text,
    jsondata jsonb NOT NULL DEFAULT '{}'::jsonb,
    profile_image_url text,
    is_published boolean NOT NULL DEFAULT false,
    created_at timestamptz NOT NULL DEFAULT now(),
    modified_at timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT entities_name_unique UNIQUE (library_id, name)
);
CREATE INDEX entities_library ON entities (library_id, created_at, id);

CREATE TABLE entity_identifiers (
    id uuid PRIMARY KEY,
    org_id uuid NOT NULL REFERENCES organizations(id) ON DELETE CASCADE,
    library_id uuid NOT NULL REFERENCES libraries(id) ON DELETE CASCADE,
    entity_id uuid NOT NULL REFERENCES entities(id) ON DELETE CASCADE,
    identifier_type_id text NOT NULL REFERENCES entity_identifier_types(id),
    title text,
    is_priority boolean NOT NULL DEFAULT false,
    -- Exactly one of: an object we store (storage_key) or a URL kept by reference.
    storage_key text,
    reference_url text,
    content_type text NOT NULL,
    content_length bigint,
    content_sha256 text,
    jsondata jsonb NOT NULL DEFAULT '{}'::jsonb,
    created_at timestamptz NOT NULL DEFAULT now(),
    modified_at timestamptz NOT NULL DEFAULT now(),
    CHECK ((storage_key IS NULL) <> (reference_url IS NULL))
);
CREATE INDEX entity_identifiers_entity ON entity_identifiers (entity_id, created_at, id);
CREATE INDEX entity_identifiers_library ON entity_identifiers (library_id, identifier_type_id);

-- S3 objects whose rows are gone (or never committed) are deleted by this outbox, so a crash between
-- the row change and the S3 delete never leaves an orphan for good.
CREATE TABLE blob_deletions (
    storage_key text PRIMARY KEY,
    not_before timestamptz NOT NULL DEFAULT now(),
    created_at timestamptz NOT NULL DEFAULT now()
);
