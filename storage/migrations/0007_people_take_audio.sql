-- A people library serves face engines and speaker engines at once (seed 000: an engine asks for the identifier
-- type it needs), so it takes audio recordings of a person's voice beside pictures of their face.
UPDATE library_types SET identifier_type_ids = ARRAY['face', 'image', 'audio-recording'] WHERE id = 'people';
