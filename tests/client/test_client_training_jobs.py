"""#15 through the client: Vertex's training job (seed 003) — run, wait, done, cancel, delete, get, get_model,
list(filter, order_by), and state, create_time, start_time, end_time, error, labels, display_name.

NEEDS the `trainings` branch (Job displayName/labels/done/progress/times/error/outputModel, job(waitSeconds), jobs(labels),
cancelJob answering not_allowed): it passes once the lead has merged it.
"""

from __future__ import annotations

import pytest

from engineshed.client import AsyncClient, Client, InvalidInputError, JobNotRunning, NoModel, NotFoundError, PipelineState, TrainingJob
from tests.client.future import SLEEPER


@pytest.fixture
def client(org):
    with Client(org.gateway.url, org.token) as c:
        yield c


def test_run_with_sync_waits_and_returns_the_trained_model(client, start_worker):
    library = client.create_library("vertex", "objects")
    start_worker()
    job = client.training_job(display_name="faces-v1", labels={"team": "vision"})
    model = job.run(library["id"], engine_id=SLEEPER, config={"seconds": 0.5, "steps": 2})
    assert model["libraryId"] == library["id"] and model["trainStatus"] == "complete"
    assert job.state == PipelineState.PIPELINE_STATE_SUCCEEDED and job.done() is True
    assert job.display_name == "faces-v1" and job.labels == {"team": "vision"}
    assert job.create_time <= job.start_time <= job.end_time and job.error is None
    assert job.get_model()["id"] == model["id"]
    with pytest.raises(RuntimeError, match="already been run"):
        job.run(library["id"], engine_id=SLEEPER)
    with pytest.raises(JobNotRunning) as not_running:
        job.cancel()
    assert isinstance(not_running.value, RuntimeError) and not_running.value.code == "not_allowed"


def test_run_without_sync_returns_at_once_and_cancel_stops_it(client):
    library = client.create_library("queued", "objects")
    job = client.training_job(display_name="slow")
    assert job.run(library["id"], engine_id=SLEEPER, config={"seconds": 60}, sync=False) is None
    assert job.state in (PipelineState.PIPELINE_STATE_QUEUED, PipelineState.PIPELINE_STATE_PENDING)
    assert job.done() is False and job.end_time is None
    job.cancel()
    job.wait()
    assert job.state == PipelineState.PIPELINE_STATE_CANCELLED and job.end_time is not None
    with pytest.raises(NoModel):
        job.get_model()


def test_a_failed_training_has_its_error_and_no_model(client, start_worker):
    library = client.create_library("failing", "objects")
    start_worker()
    job = client.training_job(display_name="doomed")
    with pytest.raises(NoModel, match="asked to fail"):
        job.run(library["id"], engine_id=SLEEPER, config={"fail": "engine", "steps": 1})
    assert job.has_failed and "asked to fail" in job.error


def test_get_list_filter_order_and_delete(client, other_org):
    library = client.create_library("listed", "objects")
    made = {}
    for name, team in (("b-job", "vision"), ("a-job", "vision"), ("c-job", "audio")):
        job = client.training_job(display_name=name, labels={"team": team})
        job.run(library["id"], engine_id=SLEEPER, config={"seconds": 60}, sync=False)
        made[name] = job.resource_name
    fetched = TrainingJob.get(made["a-job"], client=client)
    assert fetched.display_name == "a-job" and fetched.labels == {"team": "vision"}
    vision = TrainingJob.list(filter='labels.team="vision"', order_by="display_name", client=client)
    assert [j.display_name for j in vision] == ["a-job", "b-job"]
    assert {j["id"] for j in client.jobs(labels={"team": "vision"})["records"]} == {made["a-job"], made["b-job"]}
    newest_first = TrainingJob.list(order_by="create_time desc", client=client)
    assert [j.display_name for j in newest_first] == ["c-job", "a-job", "b-job"]
    assert [j.display_name for j in TrainingJob.list(filter='display_name="c-job"', client=client)] == ["c-job"]
    with pytest.raises(InvalidInputError):
        TrainingJob.list(filter='owner="me"', client=client)
    with Client(other_org.gateway.url, other_org.token) as stranger:
        assert TrainingJob.list(client=stranger) == []
        with pytest.raises(NotFoundError):
            TrainingJob.get(made["a-job"], client=stranger)
    for job_id in made.values():
        job = TrainingJob.get(job_id, client=client)
        job.cancel()
        job.delete()
    with pytest.raises(NotFoundError):
        TrainingJob.get(made["a-job"], client=client)


async def test_the_training_job_works_with_the_async_client(org):
    async with AsyncClient(org.gateway.url, org.token) as client:
        library = await client.create_library("async-vertex", "objects")
        job = client.training_job(display_name="async", labels={"k": "v"})
        await job.run(library["id"], engine_id=SLEEPER, config={"seconds": 60}, sync=False)
        assert await job.done() is False
        await job.cancel()
        assert job.state == PipelineState.PIPELINE_STATE_CANCELLED
        listed = await TrainingJob.list(filter='labels.k="v"', client=client)
        assert [j.resource_name for j in listed] == [job.resource_name]


def _engine_models(client, library_id):
    data = client.query("query($id: ID!) { library(id: $id) { engineModels { records { id trainStatus } } } }", {"id": library_id})
    return data["library"]["engineModels"]["records"]


def test_a_refused_training_leaves_no_model_behind(client):
    """The model is made before the job (upstream needs it first); when the server refuses the job, the client
    takes the model away again, so a refusal writes nothing."""
    library = client.create_library("refused", "objects")
    refusals = [
        lambda: client.training_job("bad labels", {"Team": "Vision"}).run(library["id"], engine_id=SLEEPER, sync=False),
        lambda: client.training_job("x" * 10_000).run(library["id"], engine_id=SLEEPER, sync=False),
        lambda: client.training_job("bad config").run(library["id"], engine_id=SLEEPER, config={"bogusKey": 1}, sync=False),
        lambda: client.train(library["id"], engine_id=SLEEPER, config={"bogusKey": 1}),
    ]
    for refused in refusals:
        with pytest.raises(InvalidInputError):
            refused()
        assert _engine_models(client, library["id"]) == []
    # ...and an accepted one still keeps its model.
    job = client.train(library["id"], engine_id=SLEEPER, config={"seconds": 60})
    assert [m["id"] for m in _engine_models(client, library["id"])] == [job["libraryEngineModelId"]]
    client.query("mutation($id: ID!) { cancelJob(id: $id) { id } }", {"id": job["id"]})


def test_vertex_run_options_name_the_model_and_split_the_data(client, start_worker):
    library = client.create_library("vertex-options", "objects")
    start_worker()
    job = client.training_job(display_name="named")
    model = job.run(library["id"], engine_id=SLEEPER, config={"seconds": 0.2, "steps": 1},
                    model_display_name="my model", model_labels={"team": "vision"}, model_version_aliases=["candidate"],
                    model_version_description="first try", is_default_version=True)
    assert model["name"] == "my model" and model["trainStatus"] == "complete"
    stored = client.query("query($id: ID!) { libraryEngineModel(id: $id) { name description labels aliases autoPromote } }",
                          {"id": model["id"]})["libraryEngineModel"]
    assert stored == {"name": "my model", "description": "first try", "labels": {"team": "vision"},
                      "aliases": ["default", "candidate"], "autoPromote": True}
    assert "TrainingJob(" in repr(job) and "SUCCEEDED" in repr(job)
    # The splits go into the engine's config (the sleeper takes no splits: its refusal shows they arrived).
    with pytest.raises(InvalidInputError, match="testFraction"):
        client.training_job("split").run(library["id"], engine_id=SLEEPER, training_fraction_split=0.7, test_fraction_split=0.2)
    with pytest.raises(InvalidInputError, match="is_default_version=False"):
        client.training_job("x").run(library["id"], engine_id=SLEEPER, is_default_version=False)
    with pytest.raises(InvalidInputError, match="testFraction"):
        client.training_job("x").run(library["id"], engine_id=SLEEPER, test_fraction_split="a lot")
    assert _engine_models(client, library["id"]) == [{"id": model["id"], "trainStatus": "complete"}]


def test_wait_gives_up_after_its_timeout(client):
    library = client.create_library("vertex-wait", "objects")
    job = client.training_job(display_name="slow")
    job.run(library["id"], engine_id=SLEEPER, config={"seconds": 60}, sync=False)
    for timeout in (1, 0.3):  # under a second too: it asks at least once before giving up
        with pytest.raises(TimeoutError, match="still"):
            job.wait(timeout=timeout)
    job.cancel()


def test_get_and_list_without_a_client_use_the_environments(org, monkeypatch):
    """Vertex's TrainingJob.get(resource_name) names no client: the environment's is used."""
    with Client(org.gateway.url, org.token) as client:
        library = client.create_library("env-vertex", "objects")
        job = client.training_job(display_name="from-env", labels={"env": "yes"})
        job.run(library["id"], engine_id=SLEEPER, config={"seconds": 60}, sync=False)
    monkeypatch.setenv("ENGINESHED_URL", org.gateway.url)
    monkeypatch.setenv("ENGINESHED_TOKEN", org.token)
    assert TrainingJob.get(job.resource_name).display_name == "from-env"
    assert [j.resource_name for j in TrainingJob.list(filter='labels.env="yes"')] == [job.resource_name]
    TrainingJob.get(job.resource_name).cancel()
