"""One rule for "the library's model": the library's default engine's default model, unless an engine is named.
The API's recognize(libraryId) and the Python client's recognize(library_id=) answer the same photo with the
same model after a second engine was trained on the library (the client used to take the newest model's engine)."""

from __future__ import annotations

from engineshed.client import Client
from sampledata import digits
from tests.conftest import Org
from tests.engines import api_helpers as api

RECOGNIZE = "query($l: ID!, $e: ID) { recognize(libraryId: $l, engineId: $e) { libraryEngineModelId engineId matches { entityId score } } }"


def test_api_and_client_answer_with_the_same_model_after_a_second_engine_is_trained(org: Org, start_worker) -> None:
    data = digits.load()
    library = api.create_library(org, "two-engines")
    entities: dict[str, str] = {}
    for entry in data.train[:60]:
        if entry.entity_id not in entities:
            entities[entry.entity_id] = org.create_entity(library, entry.entity_name)
        org.add_identifier(entities[entry.entity_id], entry.data, type_id="image")
    worker = start_worker()
    gallery, _ = api.trained(org, api.GALLERY, library, worker=worker)
    classifier, _ = api.trained(org, api.CLASSIFIER, library, worker=worker)  # the newest model, another engine
    photo = data.test_images[0]
    by_api = org.client.upload_form(RECOGNIZE, photo, "image/png", variables={"l": library}).ok()["recognize"]
    with Client(org.gateway.url, org.token) as client:
        by_client = client.recognize(photo, library_id=library)
        named = client.recognize(photo, library_id=library, engine_id=api.CLASSIFIER)
    assert by_api["libraryEngineModelId"] == gallery["id"]  # the objects library's default engine: the gallery
    assert by_client["libraryEngineModelId"] == by_api["libraryEngineModelId"]
    assert [m["entityId"] for m in by_client["matches"]] == [m["entityId"] for m in by_api["matches"]]
    assert named["libraryEngineModelId"] == classifier["id"]
