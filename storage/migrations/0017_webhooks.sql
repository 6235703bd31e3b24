-- Webhooks: URLs an organization registers for job, training and model-version events, and the outbox of
-- their deliveries. Deliveries are written by triggers in the same transaction as the status change they
-- report, so an event is never lost and never reported for a change that rolled back, whichever process (a
-- gateway, a worker, an external engine's completeTask) made the change. Workers send them.

-- `secret` is kept as it is, not hashed: signing a delivery (HMAC-SHA256) needs the secret itself. It is
-- shown once, by createWebhook or rotateWebhookSecret, and never returned again.
CREATE TABLE webhooks (
    id uuid PRIMARY KEY,
    org_id uuid NOT NULL REFERENCES organizations(id) ON DELETE CASCADE,
    url text NOT NULL,
    events text[] NOT NULL,
    description text,
    secret text NOT NULL,
    enabled boolean NOT NULL DEFAULT true,
    disabled_reason text,
    created_by text,
    created_at timestamptz NOT NULL DEFAULT now(),
    modified_at timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX webhooks_org ON webhooks (org_id, created_at, id);

-- One row per (event, webhook). `status`: pending (waiting for its next attempt, or being sent while a lease is
-- held), delivered (a 2xx answer), failed (out of attempts, refused by the address rules, or 410 Gone).
CREATE TABLE webhook_deliveries (
    id uuid PRIMARY KEY,
    org_id uuid NOT NULL REFERENCES organizations(id) ON DELETE CASCADE,
    webhook_id uuid NOT NULL REFERENCES webhooks(id) ON DELETE CASCADE,
    event text NOT NULL,
    data jsonb NOT NULL,
    status text NOT NULL DEFAULT 'pending' CHECK (status IN ('pending', 'delivered', 'failed')),
    attempts integer NOT NULL DEFAULT 0,
    next_attempt_at timestamptz NOT NULL DEFAULT now(),
    lease_owner text,
    lease_expires_at timestamptz,
    last_status_code integer,
    last_error text,
    last_attempt_at timestamptz,
    delivered_at timestamptz,
    created_at timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX webhook_deliveries_due ON webhook_deliveries (next_attempt_at) WHERE status = 'pending';
CREATE INDEX webhook_deliveries_webhook ON webhook_deliveries (webhook_id, created_at DESC, id DESC);
CREATE INDEX webhook_deliveries_old ON webhook_deliveries (created_at) WHERE status <> 'pending';

-- Whether any enabled webhook of the organization wants the event: the triggers ask first, so organizations
-- without webhooks pay one index probe per finished job, not the building of an event.
CREATE FUNCTION webhook_wanted(p_org uuid, p_event text) RETURNS boolean
LANGUAGE sql STABLE AS $$
    SELECT EXISTS (SELECT 1 FROM webhooks w WHERE w.org_id = p_org AND w.enabled AND p_event = ANY (w.events))
$$;

-- One delivery per enabled webhook of the organization that subscribed to the event; wakes the senders.
CREATE FUNCTION webhook_enqueue(p_org uuid, p_event text, p_data jsonb) RETURNS void
LANGUAGE plpgsql AS $$
DECLARE
    queued integer;
BEGIN
    IF p_org IS NULL THEN
        RETURN;
    END IF;
    INSERT INTO webhook_deliveries (id, org_id, webhook_id, event, data)
    SELECT gen_random_uuid(), w.org_id, w.id, p_event, p_data
    FROM webhooks w WHERE w.org_id = p_org AND w.enabled AND p_event = ANY (w.events);
    GET DIAGNOSTICS queued = ROW_COUNT;
    IF queued > 0 THEN
        PERFORM pg_notify('engineshed_webhooks', '');
    END IF;
END $$;

-- A job reaching complete, failed or cancelled (again after a retry, too).
CREATE FUNCTION webhook_job_event() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    IF NOT webhook_wanted(NEW.org_id, 'job_' || NEW.status) THEN
        RETURN NULL;
    END IF;
    PERFORM webhook_enqueue(NEW.org_id, 'job_' || NEW.status, jsonb_build_object(
        'jobId', NEW.id,
        'status', NEW.status,
        'name', NEW.name,
        'displayName', NEW.display_name,
        'libraryId', NEW.library_id,
        'labels', NEW.labels,
        'engineIds', (SELECT coalesce(jsonb_agg(DISTINCT t.engine_id), '[]'::jsonb) FROM tasks t WHERE t.job_id = NEW.id),
        'error', (SELECT coalesce(t.failure_message, t.failure_reason) FROM tasks t
                  WHERE t.job_id = NEW.id AND t.status = 'failed' ORDER BY t.position, t.id LIMIT 1),
        'modifiedDateTime', NEW.modified_at
    ));
    RETURN NULL;
END $$;
CREATE TRIGGER webhook_job_finished AFTER UPDATE OF status ON jobs FOR EACH ROW
    WHEN (NEW.status IS DISTINCT FROM OLD.status AND NEW.status IN ('complete', 'failed', 'cancelled'))
    EXECUTE FUNCTION webhook_job_event();
CREATE TRIGGER webhook_job_created_finished AFTER INSERT ON jobs FOR EACH ROW
    WHEN (NEW.status IN ('complete', 'failed', 'cancelled'))
    EXECUTE FUNCTION webhook_job_event();

-- A library engine model's training ending: complete or failed (a cancelled training ends failed).
CREATE FUNCTION webhook_training_event() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    IF NOT webhook_wanted(NEW.org_id, 'training_' || NEW.train_status) THEN
        RETURN NULL;
    END IF;
    PERFORM webhook_enqueue(NEW.org_id, 'training_' || NEW.train_status, jsonb_build_object(
        'libraryEngineModelId', NEW.id,
        'trainJobId', NEW.train_job_id,
        'trainStatus', NEW.train_status,
        'libraryId', NEW.library_id,
        'libraryVersion', NEW.library_version,
        'engineId', NEW.engine_id,
        'name', NEW.name,
        'accuracy', NEW.accuracy,
        'isDefault', NEW.is_default,
        'error', NEW.jsondata->>'error',
        'modifiedDateTime', NEW.modified_at
    ));
    RETURN NULL;
END $$;
CREATE TRIGGER webhook_training_finished AFTER UPDATE OF train_status ON library_engine_models FOR EACH ROW
    WHEN (NEW.train_status IS DISTINCT FROM OLD.train_status AND NEW.train_status IN ('complete', 'failed'))
    EXECUTE FUNCTION webhook_training_event();

-- A registered model version passing or failing its checks (system models, without an organization, have no
-- webhooks).
CREATE FUNCTION webhook_model_version_event() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    IF NOT webhook_wanted(NEW.org_id, 'model_version_' || NEW.status) THEN
        RETURN NULL;
    END IF;
    PERFORM webhook_enqueue(NEW.org_id, 'model_version_' || NEW.status, jsonb_build_object(
        'modelId', NEW.model_id,
        'modelName', (SELECT m.name FROM models m WHERE m.id = NEW.model_id),
        'modelVersionId', NEW.id,
        'version', NEW.version,
        'status', NEW.status,
        'error', NEW.error,
        'modifiedDateTime', NEW.modified_at
    ));
    RETURN NULL;
END $$;
CREATE TRIGGER webhook_model_version_finished AFTER UPDATE OF status ON model_versions FOR EACH ROW
    WHEN (NEW.status IS DISTINCT FROM OLD.status AND NEW.status IN ('ready', 'failed'))
    EXECUTE FUNCTION webhook_model_version_event();
