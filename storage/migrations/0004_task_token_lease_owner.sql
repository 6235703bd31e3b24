-- A task token acts for one claim of its task: the lease owner it was issued with. When the lease passes
-- to another claimer (expiry, retry, release), the old token no longer acts for the task.
ALTER TABLE api_tokens ADD COLUMN lease_owner text;
