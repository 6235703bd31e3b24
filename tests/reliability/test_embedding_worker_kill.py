"""A worker SIGKILLed in the middle of an embedding batch: its claimed identifiers are claimed again once their
lease (6 s in the tests) runs out, and every identifier ends with exactly one vector per model version.

The kill lands after the batch was fetched, decoded and run through the model, while the worker waits to
write it: the test holds a SHARE lock on identifier_embeddings, which the batch's INSERT waits behind."""

from __future__ import annotations

from sampledata.onnx_models import conv_net, normalised_manifest
from tests.conftest import Org
from tests.engines import api_helpers as api
from tests.engines import registered
from tests.reliability.test_worker_crashes import HeldLock
from tests.support.waits import wait_for

N = 24


def test_a_batch_cut_short_by_sigkill_is_embedded_once_by_another_worker(org: Org, stack, start_worker) -> None:
    db = stack.db
    registered.register_org_model(org, "kill-net", "embedding", conv_net(dimension=16, seed=9), normalised_manifest())
    library = api.create_library(org, "killed")
    entity = org.create_entity(library, "e")
    api.add_identifiers(org, [(entity, api.png(32, 90_000 + n)) for n in range(N)])
    lock = HeldLock(db, "LOCK TABLE identifier_embeddings IN SHARE MODE")
    victim = start_worker("victim", ENGINESHED_EMBED_BATCH_SIZE="64")
    try:
        job_id = org.client.query(
            "mutation($l: ID!) { generateEmbeddings(libraryId: $l, modelId: \"kill-net\") { id } }", l=library,
        ).ok()["generateEmbeddings"]["id"]
        # The victim claimed the whole selection as one batch, embedded it, and now waits to write it.
        wait_for(lambda: lock.waiters("identifier_embeddings") >= 1, timeout=60, what="the victim's batch to wait on the lock")
        leased = db.fetchval(
            "SELECT count(*) FROM embedding_queue WHERE library_id = $1::uuid AND lease_owner = 'victim'", library)
        assert leased == N
        victim.kill()
    finally:
        lock.release()
    assert db.fetchval("SELECT count(*) FROM identifier_embeddings WHERE library_id = $1::uuid", library) == 0

    rescuer = start_worker("rescuer", ENGINESHED_EMBED_BATCH_SIZE="64")
    job = wait_for(
        lambda: (lambda j: j if j["status"] in ("complete", "failed") else None)(org.client.query(
            "query($id: ID!) { job(id: $id) { status tasks { records { output progress } } } }", id=job_id).ok()["job"]),
        timeout=90, what="the job to finish on the rescuer",
    )
    assert job["status"] == "complete", (job, rescuer.output()[-3000:])
    assert job["tasks"]["records"][0]["output"]["embedded"] == N
    rows = db.fetch("SELECT identifier_id, model_version_id FROM identifier_embeddings WHERE library_id = $1::uuid", library)
    assert len(rows) == N and len({(r["identifier_id"], r["model_version_id"]) for r in rows}) == N
    assert db.fetchval("SELECT count(*) FROM embedding_queue WHERE library_id = $1::uuid", library) == 0
    assert f"embedded {N} identifiers" in rescuer.output()
    assert f"embedded {N} identifiers" not in victim.output()
