-- The model registry: models (a name per organization; organization NULL = a system model every
-- organization sees), their numbered versions, aliases pointing at versions, and the content-addressed
-- ONNX blobs the versions share (models/sha256/<hex>.onnx: the same bytes are stored once).
CREATE TABLE models (
    id uuid PRIMARY KEY,
    org_id uuid REFERENCES organizations(id) ON DELETE CASCADE,
    name text NOT NULL,
    application text NOT NULL CHECK (application IN ('embedding', 'auto_tagging', 'auto_annotation')),
    description text NOT NULL DEFAULT '',
    tags jsonb NOT NULL DEFAULT '{}'::jsonb,  -- the user's key/value labels (GraphQL `labels`)
    created_at timestamptz NOT NULL DEFAULT now(),
    modified_at timestamptz NOT NULL DEFAULT now()
);
-- Two partial indexes rather than one: a NULL organization would otherwise never collide.
CREATE UNIQUE INDEX models_org_name ON models (org_id, name) WHERE org_id IS NOT NULL;
CREATE UNIQUE INDEX models_system_name ON models (name) WHERE org_id IS NULL;

CREATE TABLE model_blobs (
    sha256 text PRIMARY KEY,
    blob_key text NOT NULL,
    size_bytes bigint NOT NULL,
    created_at timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE model_versions (
    id uuid PRIMARY KEY,
    model_id uuid NOT NULL REFERENCES models(id) ON DELETE CASCADE,
    org_id uuid REFERENCES organizations(id) ON DELETE CASCADE,  -- the model's, repeated for tenancy filters
    version integer NOT NULL CHECK (version > 0),
    status text NOT NULL DEFAULT 'validating' CHECK (status IN ('validating', 'ready', 'failed')),
    error text,
    sha256 text NOT NULL REFERENCES model_blobs(sha256),
    size_bytes bigint NOT NULL,
    manifest jsonb NOT NULL,
    dimension integer,
    labels jsonb,  -- the ordered class labels of auto_tagging (and single-class detector) models
    source jsonb NOT NULL DEFAULT '{}'::jsonb,
    validation jsonb NOT NULL DEFAULT '{}'::jsonb,  -- what the static checks measured (seconds, opset, ...)
    throughput double precision,  -- images per second at throughput_batch, measured by the trial
    throughput_batch integer,
    provider text,  -- the execution provider the trial ran on
    -- The trial inference queue: a worker leases a validating version like a task.
    trial_owner text,
    trial_expires_at timestamptz,
    trial_attempts integer NOT NULL DEFAULT 0,
    created_at timestamptz NOT NULL DEFAULT now(),
    modified_at timestamptz NOT NULL DEFAULT now(),
    UNIQUE (model_id, version)
);
CREATE INDEX model_versions_trial ON model_versions (created_at) WHERE status = 'validating';
CREATE INDEX model_versions_sha256 ON model_versions (sha256);

CREATE TABLE model_aliases (
    model_id uuid NOT NULL REFERENCES models(id) ON DELETE CASCADE,
    alias text NOT NULL,
    version_id uuid NOT NULL REFERENCES model_versions(id),
    PRIMARY KEY (model_id, alias)
);
CREATE INDEX model_aliases_version ON model_aliases (version_id);

-- What a trained model or a job used: a version is not deletable while either points at it.
ALTER TABLE library_engine_models ADD COLUMN model_version_id uuid REFERENCES model_versions(id);
ALTER TABLE jobs ADD COLUMN model_version_id uuid REFERENCES model_versions(id);
CREATE INDEX library_engine_models_model_version ON library_engine_models (model_version_id) WHERE model_version_id IS NOT NULL;
CREATE INDEX jobs_model_version ON jobs (model_version_id) WHERE model_version_id IS NOT NULL;
