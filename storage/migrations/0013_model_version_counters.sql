-- The last version number given out under each model name, kept apart from the versions themselves: a
-- deleted version's number (and, when it was the last one, the model row) goes away, but a config or a
-- script that pinned `name@2` must never silently get different bytes. Numbers therefore only grow.
-- owner: the organization, or the nil UUID for system models (a primary key cannot hold NULL).
CREATE TABLE model_version_counters (
    owner uuid NOT NULL,
    name text NOT NULL,
    last_version integer NOT NULL CHECK (last_version > 0),
    PRIMARY KEY (owner, name)
);

INSERT INTO model_version_counters (owner, name, last_version)
SELECT coalesce(m.org_id, '00000000-0000-0000-0000-000000000000'::uuid), m.name, max(v.version)
FROM models m JOIN model_versions v ON v.model_id = m.id
GROUP BY m.org_id, m.name;
