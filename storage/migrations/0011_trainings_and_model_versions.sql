-- Training jobs and model versions (issue #15; seeds 001 and 003).
-- Jobs: a display name and user labels (string -> string, checked by the service: Vertex's label rules).
ALTER TABLE jobs ADD COLUMN display_name text, ADD COLUMN labels jsonb NOT NULL DEFAULT '{}'::jsonb;
CREATE INDEX jobs_labels ON jobs USING gin (labels jsonb_path_ops);

-- Models as versions: a name, description, changelog and labels; the model it was retrained from; aliases
-- (each unique among the models of one library and engine); and which one is the default that recognize
-- and library-run use when no model is named. `auto_promote`: whether a model that scores worse than the
-- default still becomes the default when it completes; `promotion`: what was compared when it completed.
ALTER TABLE library_engine_models
    ADD COLUMN name text,
    ADD COLUMN description text,
    ADD COLUMN changelog text,
    ADD COLUMN labels jsonb NOT NULL DEFAULT '{}'::jsonb,
    ADD COLUMN parent_model_id uuid REFERENCES library_engine_models(id) ON DELETE SET NULL,
    ADD COLUMN aliases text[] NOT NULL DEFAULT '{}',
    ADD COLUMN is_default boolean NOT NULL DEFAULT false,
    ADD COLUMN auto_promote boolean NOT NULL DEFAULT false,
    ADD COLUMN promotion jsonb;
CREATE UNIQUE INDEX library_engine_models_default ON library_engine_models (library_id, engine_id) WHERE is_default;
CREATE INDEX library_engine_models_train_job ON library_engine_models (train_job_id) WHERE train_job_id IS NOT NULL;

-- Until now the newest complete model answered: it becomes the default.
UPDATE library_engine_models m SET is_default = true
WHERE m.id IN (
    SELECT DISTINCT ON (library_id, engine_id) id FROM library_engine_models
    WHERE train_status = 'complete' ORDER BY library_id, engine_id, created_at DESC, id DESC
);
