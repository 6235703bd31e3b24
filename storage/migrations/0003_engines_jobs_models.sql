-- Engines, library engine models, jobs and tasks. The tasks table is the queue.
CREATE TABLE engines (
    id text PRIMARY KEY,
    -- NULL: installed in workers, visible to every organization; else an external engine of that org.
    org_id uuid REFERENCES organizations(id) ON DELETE CASCADE,
    name text NOT NULL,
    category_id text NOT NULL,
    identifier_type_ids text[] NOT NULL,
    library_type_ids text[] NOT NULL DEFAULT '{}',
    modes text[] NOT NULL,
    library_required boolean NOT NULL DEFAULT true,
    concurrency_limit integer NOT NULL DEFAULT 2 CHECK (concurrency_limit > 0),
    builtin boolean NOT NULL DEFAULT false,
    version text NOT NULL DEFAULT '1',
    config_schema jsonb NOT NULL DEFAULT '[]'::jsonb,
    state text NOT NULL DEFAULT 'active',
    created_at timestamptz NOT NULL DEFAULT now(),
    modified_at timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE jobs (
    id uuid PRIMARY KEY,
    org_id uuid NOT NULL REFERENCES organizations(id) ON DELETE CASCADE,
    name text,
    cluster_id text,
    status text NOT NULL DEFAULT 'queued',
    library_id uuid,
    created_at timestamptz NOT NULL DEFAULT now(),
    modified_at timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX jobs_org_created ON jobs (org_id, created_at DESC, id DESC);
CREATE INDEX jobs_org_status ON jobs (org_id, status);

CREATE TABLE tasks (
    id uuid PRIMARY KEY,
    org_id uuid NOT NULL REFERENCES organizations(id) ON DELETE CASCADE,
    job_id uuid NOT NULL REFERENCES jobs(id) ON DELETE CASCADE,
    engine_id text NOT NULL REFERENCES engines(id),
    position integer NOT NULL DEFAULT 0,
    status text NOT NULL DEFAULT 'queued'
        CHECK (status IN ('pending', 'queued', 'running', 'complete', 'failed', 'cancelled')),
    payload jsonb NOT NULL DEFAULT '{}'::jsonb,
    output jsonb,
    progress double precision NOT NULL DEFAULT 0,
    progress_message text,
    attempts integer NOT NULL DEFAULT 0,
    max_attempts integer NOT NULL DEFAULT 3,
    run_after timestamptz NOT NULL DEFAULT now(),
    lease_owner text,
    lease_expires_at timestamptz,
    cancel_requested boolean NOT NULL DEFAULT false,
    failure_reason text,
    failure_message text,
    created_at timestamptz NOT NULL DEFAULT now(),
    modified_at timestamptz NOT NULL DEFAULT now(),
    queued_at timestamptz,
    started_at timestamptz,
    completed_at timestamptz
);
CREATE INDEX tasks_job ON tasks (job_id, position);
CREATE INDEX tasks_claimable ON tasks (engine_id, run_after) WHERE status = 'queued';
CREATE INDEX tasks_running ON tasks (engine_id, lease_expires_at) WHERE status = 'running';

CREATE TABLE library_engine_models (
    id uuid PRIMARY KEY,
    org_id uuid NOT NULL REFERENCES organizations(id) ON DELETE CASCADE,
    library_id uuid NOT NULL REFERENCES libraries(id) ON DELETE CASCADE,
    engine_id text NOT NULL REFERENCES engines(id),
    library_version integer NOT NULL,
    train_job_id uuid,
    train_status text NOT NULL DEFAULT 'pending'
        CHECK (train_status IN ('pending', 'queued', 'running', 'complete', 'failed')),
    storage_key text,
    data_url text,
    content_type text,
    jsondata jsonb NOT NULL DEFAULT '{}'::jsonb,
    accuracy double precision,
    created_at timestamptz NOT NULL DEFAULT now(),
    modified_at timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX library_engine_models_library ON library_engine_models (library_id, created_at DESC, id DESC);

ALTER TABLE libraries ADD COLUMN last_trained_version integer, ADD COLUMN last_trained_at timestamptz;

-- Backbone outputs per (content, backbone), so retraining an unchanged library runs no inference.
CREATE TABLE embeddings (
    org_id uuid NOT NULL REFERENCES organizations(id) ON DELETE CASCADE,
    content_sha256 text NOT NULL,
    backbone_digest text NOT NULL,
    vector bytea NOT NULL,
    created_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (org_id, backbone_digest, content_sha256)
);
