-- Direct uploads: keys a client was handed a presigned PUT URL for (getSignedWritableUrl). An object under
-- such a key becomes an identifier without passing through the gateway; one that never does is deleted by
-- housekeeping once the record's registration window has passed.
CREATE TABLE direct_uploads (
    storage_key text PRIMARY KEY,
    org_id uuid NOT NULL REFERENCES organizations(id) ON DELETE CASCADE,
    expires_at timestamptz NOT NULL,      -- the PUT URL's expiry
    register_until timestamptz NOT NULL,  -- an object PUT in time may become an identifier until then
    max_bytes bigint NOT NULL,            -- the upload limit when the URL was issued
    file_name text,                       -- the name the client gave (getSignedWritableUrl key), if any
    created_at timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX direct_uploads_register_until ON direct_uploads (register_until);

-- One uploaded object is one identifier: a second createEntityIdentifier with the same key is refused by this
-- index, in the same statement that inserts the first (and housekeeping finds registered keys through it).
CREATE UNIQUE INDEX entity_identifiers_direct_upload_key ON entity_identifiers (storage_key)
    WHERE storage_key LIKE 'uploads/%';
