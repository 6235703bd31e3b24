-- Upstream's Webstream Adapter, under its upstream id: the tutorial's library-run job (createJob with an
-- adapter task carrying payload.url and a library-run task without one) names it. Here the adapter does no
-- work of its own: its task is recorded complete when the job is made, and its url becomes the media of the
-- job's library-run tasks, which fetch it under the outbound-fetch rules as they fetch any payload.url.
INSERT INTO engines (id, org_id, name, category_id, identifier_type_ids, library_type_ids, modes, library_required,
                     concurrency_limit, builtin, version, description)
VALUES ('9e611ad7-2d3b-48f6-a51b-0a1ba40feab4', NULL, 'Webstream Adapter', 'ingestion', '{}', '{}', ARRAY['ingest'],
        false, 2, true, '1',
        'Upstream''s media adapter: payload.url is the media the job''s library-run tasks read; complete at once.')
ON CONFLICT (id) DO NOTHING;
