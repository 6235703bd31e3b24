"""engineshed.client, sync and async, against the real stack: the operations that exist on the server today."""

from __future__ import annotations

import asyncio
import hashlib
import json

import pytest

from engineshed.client import (
    AsyncClient,
    AuthenticationError,
    Client,
    InvalidInputError,
    NotAllowedError,
    NotFoundError,
)
from tests.client.helpers import png
from sampledata import onnx_models as m

SLEEPER = "test-sleeper"


@pytest.fixture
def client(org):
    with Client(org.gateway.url, org.token) as c:
        yield c


def test_a_library_built_through_the_client_reads_back_with_each_files_digest(client, org, tmp_path):
    me = client.me()
    assert me["organizationId"] == str(org.id)
    library = client.create_library("staff", "people", description="people at the office")
    assert client.find_library("staff")["id"] == library["id"]
    assert client.find_library("staf") is None  # the API's filter is a substring; find_library is exact
    alice = client.create_entity(library["id"], "alice")
    photo = tmp_path / "alice.png"
    photo.write_bytes(png(1))
    from_path = client.create_entity_identifier(alice["id"], photo, identifier_type_id="face")
    from_bytes = client.create_entity_identifier(alice["id"], png(2), identifier_type_id="face", filename="b.png")
    assert from_path["contentSha256"] == hashlib.sha256(photo.read_bytes()).hexdigest()
    assert from_path["contentLength"] == photo.stat().st_size and from_path["contentType"] == "image/png"
    assert from_bytes["contentSha256"] == hashlib.sha256(png(2)).hexdigest()
    contents = client.library_contents(library["id"])
    assert contents == {"alice": {"id": alice["id"], "sha256": {from_path["contentSha256"], from_bytes["contentSha256"]}}}
    published = client.publish_library(library["id"])
    assert published["version"] == library["version"] + 1
    page = client.entities(library["id"])
    assert [e["name"] for e in page["records"]] == ["alice"] and page["totalCount"] == 1


def test_each_error_code_arrives_as_its_own_exception(client, org):
    with pytest.raises(NotFoundError) as missing:
        client.library("00000000-0000-0000-0000-000000000001")
    assert missing.value.code == "not_found"
    with pytest.raises(InvalidInputError) as invalid:
        client.create_library("x", "no-such-type")
    assert invalid.value.code == "invalid_input" and "no-such-type" in invalid.value.message
    with Client(org.gateway.url, org.token_for("read")) as reader:
        assert reader.me()["organizationId"] == str(org.id)
        with pytest.raises(NotAllowedError) as refused:
            reader.create_library("x", "people")
    assert refused.value.code == "not_allowed"
    with Client(org.gateway.url, "not-a-token") as stranger, pytest.raises(AuthenticationError) as wrong:
        stranger.me()
    assert wrong.value.code == "authentication_error" and wrong.value.status == 401


def test_another_organizations_library_is_not_found_like_a_made_up_one(client, other_org):
    with Client(other_org.gateway.url, other_org.token) as theirs:
        library = theirs.create_library("theirs", "people")
    with pytest.raises(NotFoundError):
        client.library(library["id"])
    assert client.find_library("theirs") is None


def test_jobs_are_created_listed_cancelled_and_deleted(client):
    library = client.create_library("jobs", "objects")
    job = client.train(library["id"], engine_id=SLEEPER, config={"seconds": 30})
    assert job["status"] == "queued" and job["libraryEngineModelId"]
    assert job["tasks"]["records"][0]["engineId"] == SLEEPER
    listed = client.jobs(library_id=library["id"])
    assert [j["id"] for j in listed["records"]] == [job["id"]]
    assert client.job(job["id"])["id"] == job["id"]
    client.cancel_job(job["id"])
    assert client.wait_for_job(job["id"], timeout=30)["status"] == "cancelled"
    assert client.jobs(status=["cancelled"], library_id=library["id"])["totalCount"] == 1
    with pytest.raises(NotAllowedError, match="only failed jobs"):
        client.retry_job(job["id"])
    client.delete_job(job["id"])
    with pytest.raises(NotFoundError):
        client.job(job["id"])


def test_a_failed_job_is_retried(client, start_worker):
    library = client.create_library("retried", "objects")
    job = client.train(library["id"], engine_id=SLEEPER, config={"fail": "engine", "steps": 1})
    start_worker()
    failed = client.wait_for_job(job["id"], timeout=60)
    assert failed["status"] == "failed"
    assert "asked to fail" in (failed["tasks"]["records"][0]["failureMessage"] or "")
    retried = client.retry_job(job["id"])
    assert retried["id"] == job["id"] and retried["status"] in ("queued", "pending", "running")
    assert client.wait_for_job(job["id"], timeout=60)["status"] == "failed"  # the engine fails again, as asked


def test_train_picks_an_installed_engine_for_the_library_type(client):
    people = client.create_library("people", "people")
    assert client.default_engine(people["id"]) in ("engineshed-face", "engineshed-gallery")
    speakers = client.create_library("voices", "speakers")
    assert client.default_engine(speakers["id"]) == "engineshed-speaker"
    with pytest.raises(NotFoundError):
        client.default_engine("00000000-0000-0000-0000-000000000002")


def test_watch_job_follows_a_training_to_the_end(client, start_worker):
    library = client.create_library("watched", "objects")
    job = client.train(library["id"], engine_id=SLEEPER, config={"seconds": 1, "steps": 4})
    start_worker()
    updates = list(client.watch_job(job["id"]))
    assert updates[0]["id"] == job["id"]
    assert updates[-1]["status"] == "complete"
    progress = [u["tasks"]["records"][0]["progress"] for u in updates]
    assert progress == sorted(progress) and progress[-1] == 1.0
    tasks = list(client.watch_tasks(job["id"]))
    assert tasks[-1]["status"] == "complete"


def test_a_subscription_with_a_wrong_token_raises_authentication_error(client, org):
    library = client.create_library("secret", "objects")
    job = client.train(library["id"], engine_id=SLEEPER, config={"seconds": 30})
    with Client(org.gateway.url, "wrong") as stranger, pytest.raises(AuthenticationError):
        list(stranger.watch_job(job["id"]))
    client.cancel_job(job["id"])


def test_register_model_packs_a_directory_and_streams_it(client, tmp_path):
    package = tmp_path / "pets"
    package.mkdir()
    (package / "model.onnx").write_bytes(m.conv_net(classes=3))
    (package / "manifest.json").write_text(json.dumps(m.normalised_manifest(kind="logits")))
    (package / "label_list.yaml").write_text("- cat\n- dog\n- bird\n")
    model = client.register_model(package, "pets", "autotagging", labels={"team": "vision"}, wait=False)  # no worker here
    assert (model["name"], model["version"], model["application"]) == ("pets", 1, "auto_tagging")
    assert model["classLabels"] == ["cat", "dog", "bird"] and model["labels"] == {"team": "vision"}
    # A file goes as it is: the next version.
    single = tmp_path / "embedder.onnx"
    single.write_bytes(m.conv_net(dimension=8))
    again = client.register_model(single, "embedder", "embedding", manifest=m.normalised_manifest(), wait=False)
    assert again["dimension"] == 8
    listed = client.models(name="pets", system=False)
    assert [r["ref"] for r in listed["records"]] == ["pets@1"]
    assert client.model("pets")["ref"] == "pets@1"
    with pytest.raises(NotFoundError):
        client.model("pets", version=9)


def test_register_model_passes_the_servers_refusal_of_the_code_and_checkpoint_layout(client, tmp_path):
    package = tmp_path / "yolo"
    (package / "code").mkdir(parents=True)
    (package / "code" / "inference.py").write_text("def model_fn(model_dir):\n    return None\n")
    (package / "code" / "requirements.txt").write_text("torch\n")
    (package / "label_list.yaml").write_text("- person\n")
    (package / "yolov8l.pt").write_bytes(m.pickle_bytes())
    with pytest.raises(InvalidInputError) as refused:
        client.register_model(package, "test_yolov8", "autotagging")
    assert "code" in refused.value.message and "never run" in refused.value.message
    with pytest.raises(InvalidInputError, match="application"):
        client.register_model(package, "x", "segmentation")
    assert client.models(name="test_yolov8")["totalCount"] == 0


def test_tokens_are_created_listed_and_revoked(client, org):
    created = client.create_token("read", label="ci")
    assert created["token"] and created["scope"] == "read"
    with Client(org.gateway.url, created["token"]) as reader:
        assert reader.me()["organizationId"] == str(org.id)
        assert created["id"] in [t["id"] for t in client.tokens()]
        client.revoke_token(created["id"])
        with pytest.raises(AuthenticationError):
            reader.me()


def test_recognize_without_a_trained_model_says_so(client, tmp_path):
    library = client.create_library("untrained", "people")
    with pytest.raises(NotFoundError, match="no trained model"):
        client.recognize(png(3), library_id=library["id"])
    with pytest.raises(InvalidInputError):
        client.recognize(png(3))


async def test_the_async_client_runs_the_same_operations_concurrently(org, tmp_path):
    async with AsyncClient(org.gateway.url, org.token) as client:
        me = await client.me()
        assert me["organizationId"] == str(org.id)
        library = await client.create_library("async", "people")
        entity = await client.create_entity(library["id"], "bob")
        uploaded = await asyncio.gather(*(client.create_entity_identifier(entity["id"], png(10 + n), filename=f"{n}.png")
                                          for n in range(6)))
        assert {u["contentSha256"] for u in uploaded} == {hashlib.sha256(png(10 + n)).hexdigest() for n in range(6)}
        photo = tmp_path / "bob.png"
        photo.write_bytes(png(20))
        from_disk = await client.create_entity_identifier(entity["id"], photo)  # streamed from the file
        assert from_disk["contentSha256"] == hashlib.sha256(png(20)).hexdigest()
        contents = await client.library_contents(library["id"])
        assert len(contents["bob"]["sha256"]) == 7
        with pytest.raises(NotFoundError):
            await client.job("00000000-0000-0000-0000-000000000003")
        job = await client.train(library["id"], engine_id=SLEEPER, config={"seconds": 30})
        await client.cancel_job(job["id"])
        assert (await client.wait_for_job(job["id"], timeout=30))["status"] == "cancelled"
    async with AsyncClient(org.gateway.url, "wrong") as stranger:
        with pytest.raises(AuthenticationError):
            await stranger.me()


async def test_the_async_client_follows_a_job_over_its_subscription(org, start_worker):
    async with AsyncClient(org.gateway.url, org.token) as client:
        library = await client.create_library("async-watch", "objects")
        job = await client.train(library["id"], engine_id=SLEEPER, config={"seconds": 1, "steps": 2})
        start_worker()
        statuses = [update["status"] async for update in client.watch_job(job["id"])]
        assert statuses[-1] == "complete"
        # A job that stays quiet for a minute: the watch gives up after idle_timeout, as the blocking one does.
        stuck = await client.train(library["id"], engine_id=SLEEPER, config={"seconds": 60, "steps": 1})
        updates = []
        with pytest.raises(TimeoutError):
            async for update in client.watch_job(stuck["id"], idle_timeout=1.5):
                updates.append(update)
        assert updates and updates[0]["id"] == stuck["id"]
        await client.cancel_job(stuck["id"])


def test_register_model_waits_for_the_trial_so_the_model_is_usable_at_once(client, start_worker, tmp_path):
    """Seed 7.1: once registered, a model is available to what follows; a failed trial says why."""
    start_worker()
    single = tmp_path / "ready.onnx"
    single.write_bytes(m.conv_net(dimension=8, seed=31))
    model = client.register_model(single, "usable-at-once", "embedding", manifest=m.normalised_manifest())
    assert model["status"] == "ready" and model["ref"] == "usable-at-once@1"
    nan = tmp_path / "nan.onnx"
    nan.write_bytes(m.conv_net(nan=True))
    with pytest.raises(InvalidInputError, match="failed its trial run") as failed:
        client.register_model(nan, "never-usable", "embedding", manifest=m.normalised_manifest())
    assert failed.value.data["model"] == "never-usable@1"


def test_the_model_registry_calls_have_client_methods(client, tmp_path):
    for seed in (41, 42):
        path = tmp_path / f"v{seed}.onnx"
        path.write_bytes(m.conv_net(dimension=8, seed=seed))
        client.register_model(path, "managed", "embedding", manifest=m.normalised_manifest(), wait=False)
    updated = client.update_model("managed", description="two versions", labels={"team": "vision"}, aliases={"stable": 1})
    assert updated["description"] == "two versions" and updated["labels"] == {"team": "vision"}
    assert client.model("managed", alias="stable")["version"] == 1
    assert client.set_model_alias("managed", 2, "default")["version"] == 2
    with pytest.raises(NotAllowedError):
        client.delete_model_version("managed", 1)  # "stable" holds it
    client.set_model_alias("managed", 2, "stable")
    assert client.delete_model_version("managed", 1)["message"] == "model managed@1 deleted"
    with pytest.raises(NotFoundError):
        client.model("managed", version=1)
    with pytest.raises(NotFoundError):
        client.set_default_model("00000000-0000-0000-0000-000000000000")
