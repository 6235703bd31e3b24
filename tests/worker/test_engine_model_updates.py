"""An engine reports its training through updateLibraryEngineModel, as the established API's documentation
shows: the published mutations sent as they are, and the multipart `curl` upload of the model file."""

from __future__ import annotations

import os

from tests.conftest import TEST_UPLOAD_LIMIT
from tests.worker.conftest import create_model, s3_keys, download, library_with_faces, model, seed

SEED_MODEL_ID = "4ae6d34d-8f4a-4e4e-aefa-12964cbf29c9"


def seed_for(name: str, model_id: str) -> str:
    text = seed(name)
    assert SEED_MODEL_ID in text
    return text.replace(SEED_MODEL_ID, model_id)


def test_the_documented_running_failed_and_complete_updates_work_as_written(org):
    library_id = org.create_library()
    model_id = create_model(org, library_id)

    running = org.client.query(seed_for("039", model_id)).ok()["updateLibraryEngineModel"]
    assert running == {"id": model_id, "trainStatus": "running"}

    failed = org.client.query(seed_for("040", model_id)).ok()["updateLibraryEngineModel"]
    assert failed["trainStatus"] == "failed"
    assert failed["jsondata"] == {"error": "something failed"}

    complete = org.client.query(seed_for("041", model_id)).ok()["updateLibraryEngineModel"]
    assert complete["trainStatus"] == "complete"
    assert complete["jsondata"] == {"collectionId": "abcd-1234-efgh-5678", "fingerprints": 3}  # replaced, not merged
    assert complete["modifiedDateTime"].endswith("Z")

    summary = org.client.query(
        "query($id: ID!) { library(id: $id) { summary { lastTrainedVersion lastTrainedDateTime } } }", id=library_id
    ).ok()["library"]["summary"]
    assert summary["lastTrainedVersion"] == 0
    assert summary["lastTrainedDateTime"] is not None


def test_the_documented_curl_upload_stores_the_model_file(org):
    library_id = org.create_library()
    model_id = create_model(org, library_id)
    org.client.query(seed_for("040", model_id)).ok()  # jsondata {error: ...} before the upload
    blob = os.urandom(70_000)

    reply = org.client.upload_form(seed_for("042", model_id), blob, "application/octet-stream", filename="model.bin")
    saved = reply.ok()["updateLibraryEngineModel"]
    assert saved["trainStatus"] == "complete"
    assert saved["jsondata"] == {"fingerprints": 3, "contentType": "application/octet-stream"}
    assert download(saved["dataUrl"]) == blob

    read = model(org, model_id)
    assert read["contentType"] == "application/octet-stream"
    assert read["trainJobId"] is None and read["libraryId"] == library_id
    assert download(read["dataUrl"]) == blob


def test_fields_not_sent_keep_their_values_and_a_second_upload_gets_a_new_key(org):
    library_id = org.create_library()
    model_id = create_model(org, library_id)
    first = org.client.upload_form(seed_for("042", model_id), b"first model", "application/x-first", filename="a.bin").ok()
    first_url = first["updateLibraryEngineModel"]["dataUrl"]

    # Only trainStatus sent: the file, its type and the metadata stay.
    org.client.query(seed_for("039", model_id)).ok()
    kept = model(org, model_id)
    assert kept["trainStatus"] == "running"
    assert kept["contentType"] == "application/x-first"
    assert kept["jsondata"] == {"fingerprints": 3, "contentType": "application/x-first"}
    assert download(kept["dataUrl"]) == b"first model"

    # A second upload, with an input contentType that overrides the part's.
    second = org.client.upload_form(
        f'mutation {{ updateLibraryEngineModel(input: {{id: "{model_id}", contentType: "application/onnx"}}) '
        "{ dataUrl contentType jsondata trainStatus } }",
        b"second model", "application/octet-stream",
    ).ok()["updateLibraryEngineModel"]
    assert second["contentType"] == "application/onnx"
    assert second["jsondata"] == {"fingerprints": 3, "contentType": "application/onnx"}
    assert second["trainStatus"] == "running"
    assert download(second["dataUrl"]) == b"second model"
    assert _key(second["dataUrl"]) != _key(first_url)
    # The replaced object stays readable for downloads already under way (it is removed after a grace period).
    assert download(first_url) == b"first model"


def test_an_invalid_content_type_is_invalid_input_and_changes_nothing(org):
    library_id = org.create_library()
    model_id = create_model(org, library_id)
    before = model(org, model_id)

    reply = org.client.upload_form(
        f'mutation {{ updateLibraryEngineModel(input: {{id: "{model_id}", trainStatus: complete, contentType: "not a type"}}) {{ id }} }}',
        b"model", "application/octet-stream",
    )
    assert reply.error_code == "invalid_input"
    part = org.client.upload_form(seed_for("042", model_id), b"model", "nonsense")
    assert part.error_code == "invalid_input"
    after = model(org, model_id)
    assert after["trainStatus"] == before["trainStatus"] == "pending"
    assert after["dataUrl"] is None


def test_a_model_file_over_the_upload_limit_is_refused_with_413_and_changes_nothing(org):
    library_id = library_with_faces(org, people=0)
    model_id = create_model(org, library_id)
    org.client.query(seed_for("039", model_id)).ok()

    reply = org.client.upload_form(seed_for("042", model_id), b"x" * (TEST_UPLOAD_LIMIT + 1), "application/octet-stream")
    assert reply.status == 413
    assert reply.error_code == "invalid_input"
    after = model(org, model_id)
    assert after["trainStatus"] == "running"
    assert after["dataUrl"] is None and after["jsondata"] == {}
    assert s3_keys(org.stack, f"{org.id}/models/") == []


def _key(url: str) -> str:
    return url.split("?")[0].rsplit("/", 1)[-1]
