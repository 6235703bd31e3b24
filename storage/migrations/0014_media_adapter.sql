-- Upstream's Webstream Adapter, under its upstream id: the tutorial's library-run job (createJob with an
-- adapter task carrying payload.url and a library-run task without one) names it. Here the adapter does no
-- work of its own: its task is recorded complete when the job is made, and its url becomes the media of the
-- job's library-run tasks, which fetch it under the outbound-fetch rules as they fetch any payload.url.
-- Engine ids are one namespace: should an organization have registered an external engine under this id, stop
-- here and say so, rather than let its engine be taken for the adapter (or the adapter quietly not exist).
DO $$
BEGIN
    IF EXISTS (SELECT 1 FROM engines WHERE id = '9e611ad7-2d3b-48f6-a51b-0a1ba40feab4' AND NOT builtin) THEN
        RAISE EXCEPTION 'engine id 9e611ad7-2d3b-48f6-a51b-0a1ba40feab4 (upstream''s Webstream Adapter) is taken by an '
            'external engine; delete or rename that engine, then migrate again';
    END IF;
END $$;
INSERT INTO engines (id, org_id, name, category_id, identifier_type_ids, library_type_ids, modes, library_required,
                     concurrency_limit, builtin, version, description)
VALUES ('9e611ad7-2d3b-48f6-a51b-0a1ba40feab4', NULL, 'Webstream Adapter', 'ingestion', '{}', '{}', ARRAY['ingest'],
        false, 2, true, '1',
        'Upstream''s media adapter: payload.url is the media the job''s library-run tasks read; complete at once.')
ON CONFLICT (id) DO NOTHING;
