"""publishLibrary trains only the engines whose identifier types the library holds: a people library of photos
starts no speaker training (it could only end failed); the engines passed over are in the answer, with why."""

from __future__ import annotations

from sampledata import digits
from tests.conftest import Org

PUBLISH = """mutation($id: ID!) { publishLibrary(id: $id) { version
  publishedTrainings { engineId started libraryEngineModelId reason } } }"""
MODELS = "query($l: ID!) { library(id: $l) { engineModels { records { id engineId trainStatus } } } }"


def test_publishing_a_photos_only_people_library_starts_no_speaker_training_and_says_why(org: Org) -> None:
    library = org.create_library("photos-only", "people")
    person = org.create_entity(library, "ada")
    for entry in digits.load().train[:3]:
        org.add_identifier(person, entry.data, type_id="face")
    published = org.client.query(PUBLISH, id=library).ok()["publishLibrary"]
    outcome = {t["engineId"]: t for t in published["publishedTrainings"]}
    speaker = outcome["engineshed-speaker"]
    assert not speaker["started"] and speaker["libraryEngineModelId"] is None
    assert "audio-recording" in speaker["reason"] and "face" in speaker["reason"]
    assert outcome["engineshed-gallery"]["started"] and outcome["engineshed-gallery"]["reason"] is None
    models = org.client.query(MODELS, l=library).ok()["library"]["engineModels"]["records"]
    assert "engineshed-speaker" not in {m["engineId"] for m in models}
    started = {t["libraryEngineModelId"] for t in outcome.values() if t["started"]}
    assert started == {m["id"] for m in models}


def test_a_library_holding_recordings_too_trains_the_speaker_engine(org: Org) -> None:
    library = org.create_library("photos-and-voices", "people")
    person = org.create_entity(library, "ada")
    org.add_identifier(person, digits.load().train[0].data, type_id="face")
    org.add_identifier(person, b"RIFF\x24\x00\x00\x00WAVEfmt some recording", content_type="audio/wav",
                       type_id="audio-recording")
    outcome = {t["engineId"]: t for t in org.client.query(PUBLISH, id=library).ok()["publishLibrary"]["publishedTrainings"]}
    assert outcome["engineshed-speaker"]["started"]


def test_published_trainings_is_null_outside_the_publish_answer(org: Org) -> None:
    library = org.create_library("plain", "people")
    got = org.client.query("query($l: ID!) { library(id: $l) { publishedTrainings { engineId } } }", l=library).ok()
    assert got["library"]["publishedTrainings"] is None
