-- What the quality gates (minSize, sharpnessThreshold) read of an image, kept per content like the embedding
-- cache: an identifier whose vector comes from that cache or from identifier_embeddings is gated without
-- fetching its bytes again, so a retrain with a stricter gate still skips what it should.
-- sharpness is NULL until a run with a sharpness gate has measured it.
CREATE TABLE content_measures (
    org_id uuid NOT NULL REFERENCES organizations(id) ON DELETE CASCADE,
    content_sha256 text NOT NULL,
    width integer NOT NULL CHECK (width > 0),
    height integer NOT NULL CHECK (height > 0),
    sharpness double precision,
    PRIMARY KEY (org_id, content_sha256)
);
