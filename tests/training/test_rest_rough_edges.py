"""REST ``/v1/trainings`` as a newcomer meets it: DELETE of a running training answers what the cancel did, and a
config error names the key as the caller sent it."""

from __future__ import annotations

import httpx
import pytest

from engines.face.engine import FaceEngine
from engines.gallery import GalleryEngine
from gateway.errors import InvalidInput
from gateway.services.training.trainings import engine_config
from tests.support.waits import wait_for
from tests.worker.conftest import library_with_faces, sleeper_job, task_of


def test_delete_of_a_running_training_answers_it_cancelled_not_as_it_was(org, start_worker):
    library_id = library_with_faces(org, people=2, name="running")
    job_id, _, _ = sleeper_job(org, library_id, seconds=60, steps=60)
    start_worker()
    wait_for(lambda: task_of(org, job_id)["progress"] > 0, what="the training to be running")
    with httpx.Client(base_url=org.gateway.url, headers={"Authorization": f"Bearer {org.token}"}, timeout=60) as http:
        assert http.get(f"/v1/trainings/{job_id}").json()["state"] == "processing"
        cancelled = http.delete(f"/v1/trainings/{job_id}")
        assert cancelled.status_code == 202, cancelled.text
        body = cancelled.json()
        assert (body["state"], body["error"]) == ("failed", "the training was cancelled"), body
        assert body["time_completed"] is not None and body["progress"] < 1.0
        read = http.get(f"/v1/trainings/{job_id}").json()
        assert (read["state"], read["error"]) == ("failed", "the training was cancelled")
        gone = http.delete(f"/v1/trainings/{job_id}")  # now finished: a second DELETE deletes it
        assert gone.status_code == 204, gone.text


def test_a_config_error_names_the_snake_case_key_the_caller_sent():
    face = FaceEngine()
    assert engine_config(face, {"min_face_size": 60, "sharpness_threshold": 20}) == {"minFaceSize": 60, "sharpnessThreshold": 20}
    for config, message in (
        ({"min_face_size": -1}, "config key 'min_face_size' must be at least 0, got -1"),
        ({"min_face_size": "big"}, "config key 'min_face_size' must be an integer, got str"),
        ({"sharpness_threshold": "high"}, "config key 'sharpness_threshold' must be a number, got str"),
        ({"minFaceSize": -1}, "config key 'minFaceSize' must be at least 0"),  # the engine's own name stays as sent too
    ):
        with pytest.raises(InvalidInput) as refused:
            engine_config(face, config)
        assert message in refused.value.message
        assert ("minFaceSize" in refused.value.message) == ("minFaceSize" in config)
    # An engine without face detection has nothing to apply the face keys to: they are not an error there.
    assert engine_config(GalleryEngine(), {"min_face_size": -1}) == {}
