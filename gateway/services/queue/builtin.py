"""The engines the platform itself runs. Each is a row of the engines table (its migration inserts it), so its
tasks queue, lease and count against its concurrency limit like any engine's; no client may run them directly."""

from __future__ import annotations

# Runs autoTag, findHardExamples and autoGroup jobs (gateway/worker/labeling.py).
LABELING = "engineshed-labeling"
# Runs generateEmbeddings jobs and the embeddings queued on ingest (gateway/worker/embedding.py).
EMBEDDINGS = "engineshed-embeddings"
# A media adapter task carries the media URL of its job's library-run tasks and completes when it is queued:
# there is nothing to run, only a URL to hand on. The id is the one clients of the established API send.
MEDIA_ADAPTER = "9e611ad7-2d3b-48f6-a51b-0a1ba40feab4"
