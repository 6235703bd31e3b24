-- Tenants and the bearer tokens that act for them. Tokens are stored only as SHA-256 hashes.
CREATE TABLE organizations (
    id uuid PRIMARY KEY,
    name text NOT NULL UNIQUE,
    created_at timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE api_tokens (
    id uuid PRIMARY KEY,
    org_id uuid NOT NULL REFERENCES organizations(id) ON DELETE CASCADE,
    token_hash bytea NOT NULL UNIQUE,
    -- admin: everything in the org; read: queries only; engine: an external engine's claim token;
    -- task: handed out with a claimed task, limited to that task's library and model.
    scope text NOT NULL CHECK (scope IN ('admin', 'read', 'engine', 'task')),
    engine_id text,
    task_id uuid,
    label text,
    expires_at timestamptz,
    revoked_at timestamptz,
    created_at timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX api_tokens_task ON api_tokens (task_id) WHERE task_id IS NOT NULL;
