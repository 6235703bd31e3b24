"""The reference schema's fields of the library domain that clients read and send: jsonstring beside
jsondata, a new url for an identifier, applicationId."""

from __future__ import annotations

import json
import uuid

import httpx
import pytest

from tests.api.conftest import identifier_rows, org_keys, random_bytes
from tests.graphql_client import GraphQLClient


@pytest.fixture
def library(org):
    return org.create_library()


class TestJsonstring:
    def test_an_entity_created_with_jsonstring_reads_back_as_jsondata_and_as_jsonstring(self, org, library):
        text = json.dumps({"born": 1815, "name": "Ada ✓"})
        created = org.client.query(
            "mutation($l: ID!, $s: String) { createEntity(input: {libraryId: $l, name: \"Ada\", jsonstring: $s}) { id jsondata jsonstring } }",
            l=library, s=text,
        ).ok()["createEntity"]
        assert created["jsondata"] == {"born": 1815, "name": "Ada ✓"}
        assert json.loads(created["jsonstring"]) == created["jsondata"]
        updated = org.client.query(
            "mutation($id: ID!) { updateEntity(input: {id: $id, jsonstring: \"[1, 2]\"}) { jsondata jsonstring } }", id=created["id"]
        ).ok()["updateEntity"]
        assert updated == {"jsondata": [1, 2], "jsonstring": "[1,2]"}

    def test_an_update_without_either_keeps_the_stored_jsondata(self, org, library):
        entity_id = org.create_entity(library, "Ada", {"a": 1})
        kept = org.client.query("mutation($id: ID!) { updateEntity(input: {id: $id, name: \"Ada L\"}) { jsondata } }", id=entity_id).ok()
        assert kept["updateEntity"]["jsondata"] == {"a": 1}

    def test_jsondata_and_jsonstring_together_are_invalid_input(self, org, library, stack):
        reply = org.client.query(
            "mutation($l: ID!) { createEntity(input: {libraryId: $l, name: \"Ada\", jsondata: {a: 1}, jsonstring: \"{}\"}) { id } }", l=library
        )
        assert reply.error_code == "invalid_input" and "not both" in reply.error_message
        assert stack.db.fetchval("SELECT count(*) FROM entities WHERE org_id = $1", org.id) == 0

    def test_a_jsonstring_that_is_not_json_is_invalid_input(self, org, library):
        entity_id = org.create_entity(library, "Ada", {"a": 1})
        reply = org.client.query("mutation($id: ID!) { updateEntity(input: {id: $id, jsonstring: \"{oops\"}) { id } }", id=entity_id)
        assert reply.error_code == "invalid_input" and "jsonstring" in reply.error_message
        read = org.client.query("query($id: ID!) { entity(id: $id) { jsondata } }", id=entity_id).ok()
        assert read["entity"]["jsondata"] == {"a": 1}

    def test_identifiers_take_and_give_jsonstring_too(self, org, library):
        entity_id = org.create_entity(library, "Ada")
        created = org.client.query(
            "mutation($e: ID!) { createEntityIdentifier(input: {entityId: $e, identifierTypeId: \"face\", contentType: \"image/png\", "
            "url: \"https://example.com/a.png\", storeReference: true, jsonstring: \"{\\\"pose\\\": \\\"left\\\"}\"}) { id jsondata jsonstring } }",
            e=entity_id,
        ).ok()["createEntityIdentifier"]
        assert created["jsondata"] == {"pose": "left"} and json.loads(created["jsonstring"]) == {"pose": "left"}
        updated = org.client.query(
            "mutation($id: ID!) { updateEntityIdentifier(input: {id: $id, jsonstring: \"{}\"}) { jsondata } }", id=created["id"]
        ).ok()["updateEntityIdentifier"]
        assert updated["jsondata"] == {}
        both = org.client.query(
            "mutation($id: ID!) { updateEntityIdentifier(input: {id: $id, jsondata: {a: 1}, jsonstring: \"{}\"}) { id } }", id=created["id"]
        )
        assert both.error_code == "invalid_input"


class TestIdentifierUrl:
    def _reference(self, org, library):
        entity_id = org.create_entity(library, "Ada")
        return org.client.query(
            "mutation($e: ID!) { createEntityIdentifier(input: {entityId: $e, identifierTypeId: \"face\", contentType: \"image/png\", "
            "url: \"https://example.com/a.png\", storeReference: true}) { id } }", e=entity_id,
        ).ok()["createEntityIdentifier"]["id"]

    def test_a_reference_identifier_refers_to_the_new_url(self, org, library, stack, bucket):
        identifier_id = self._reference(org, library)
        updated = org.client.query(
            "mutation($id: ID!) { updateEntityIdentifier(input: {id: $id, url: \"https://example.com/b.png\", title: \"b\"}) { url title contentType } }",
            id=identifier_id,
        ).ok()["updateEntityIdentifier"]
        assert updated == {"url": "https://example.com/b.png", "title": "b", "contentType": "image/png"}
        assert org_keys(bucket, org) == []

    def test_a_url_that_is_not_http_is_invalid_input_and_the_old_one_stays(self, org, library):
        identifier_id = self._reference(org, library)
        reply = org.client.query(
            "mutation($id: ID!) { updateEntityIdentifier(input: {id: $id, url: \"file:///etc/passwd\"}) { id } }", id=identifier_id)
        assert reply.error_code == "invalid_input"
        read = org.client.query("query($id: ID!) { entityIdentifier(id: $id) { url } }", id=identifier_id).ok()
        assert read["entityIdentifier"]["url"] == "https://example.com/a.png"

    def test_a_stored_identifier_stores_a_copy_of_the_new_url_and_its_old_object_goes(
        self, org, library, stack, bucket, file_server, private_fetch_gateway
    ):
        entity_id = org.create_entity(library, "Ada")
        identifier_id = org.add_identifier(entity_id, random_bytes(3000))
        (old_key,) = org_keys(bucket, org)
        data = random_bytes(50_000)
        url = file_server.add("/ada-new.jpg", data, "image/jpeg")
        client = GraphQLClient(private_fetch_gateway.url, org.token)
        try:
            updated = client.query(
                "mutation($id: ID!, $u: String) { updateEntityIdentifier(input: {id: $id, url: $u}) { url contentType } }",
                id=identifier_id, u=url,
            ).ok()["updateEntityIdentifier"]
        finally:
            client.close()
        assert updated["contentType"] == "image/jpeg"
        assert httpx.get(updated["url"], timeout=30).content == data
        (row,) = identifier_rows(stack, org)
        assert row["content_length"] == len(data) and row["storage_key"] != old_key
        assert org_keys(bucket, org) == [row["storage_key"]]

    def test_a_new_url_that_cannot_be_fetched_changes_nothing(self, org, library, stack, bucket, file_server, private_fetch_gateway):
        entity_id = org.create_entity(library, "Ada")
        identifier_id = org.add_identifier(entity_id, random_bytes(3000))
        before = identifier_rows(stack, org)
        client = GraphQLClient(private_fetch_gateway.url, org.token)
        try:
            reply = client.query(
                "mutation($id: ID!, $u: String) { updateEntityIdentifier(input: {id: $id, url: $u}) { id } }",
                id=identifier_id, u=file_server.base_url + "/missing.jpg",
            )
        finally:
            client.close()
        assert reply.error_code == "invalid_input"
        assert identifier_rows(stack, org) == before
        assert org_keys(bucket, org) == [before[0]["storage_key"]]


class TestApplicationId:
    def test_a_library_reports_its_organization_as_its_application(self, org, library):
        read = org.client.query("query($id: ID!) { library(id: $id) { applicationId organizationId } }", id=library).ok()["library"]
        assert read == {"applicationId": str(org.id), "organizationId": str(org.id)}

    def test_create_library_takes_the_callers_own_application_or_organization_id(self, org):
        for field in ("applicationId", "organizationId"):
            created = org.client.query(
                f"mutation($a: ID) {{ createLibrary(input: {{name: \"x\", libraryTypeId: \"people\", {field}: $a}}) {{ applicationId }} }}",
                a=str(org.id),
            ).ok()["createLibrary"]
            assert created["applicationId"] == str(org.id)

    def test_another_organizations_id_there_is_not_found_and_nothing_is_created(self, org, other_org, stack):
        for field in ("applicationId", "organizationId"):
            reply = org.client.query(
                f"mutation($a: ID) {{ createLibrary(input: {{name: \"x\", libraryTypeId: \"people\", {field}: $a}}) {{ id }} }}",
                a=str(other_org.id),
            )
            assert reply.error_code == "not_found"
        assert stack.db.fetchval("SELECT count(*) FROM libraries WHERE org_id = ANY($1::uuid[])", [org.id, other_org.id]) == 0


def _job(org, **task_fields):
    library_id = org.create_library()
    model_id = org.client.query(
        "mutation($l: ID!) { createLibraryEngineModel(input: {engineId: \"test-sleeper\", libraryId: $l}) { id } }", l=library_id
    ).ok()["createLibraryEngineModel"]["id"]
    return org.client.query(
        "mutation($t: [CreateTask!]) { createJob(input: {tasks: $t}) { id tasks { records { id } } } }",
        t=[{"engineId": "test-sleeper", **task_fields,
            "payload": {"mode": "library-train", "libraryId": library_id, "libraryEngineModelId": model_id}}],
    ).ok()["createJob"]


class TestJobsAndTasks:
    def test_a_task_names_its_job_application_and_test_flag(self, org):
        job = _job(org, testTask=True)
        task_id = job["tasks"]["records"][0]["id"]
        task = org.client.query(
            "query($id: ID!) { task(id: $id) { job { id applicationId } applicationId testTask isClone targetId "
            "parentTaskId parentTask { id } childTaskIds childTasks { id } } }", id=task_id,
        ).ok()["task"]
        assert task == {"job": {"id": job["id"], "applicationId": str(org.id)}, "applicationId": str(org.id), "testTask": True,
                        "isClone": False, "targetId": None, "parentTaskId": None, "parentTask": None, "childTaskIds": [],
                        "childTasks": []}
        plain = _job(org)
        assert org.client.query("query($id: ID!) { job(id: $id) { tasks { records { testTask } } } }", id=plain["id"]).ok()[
            "job"]["tasks"]["records"] == [{"testTask": False}]

    def test_job_tasks_filter_by_id_target_and_source_asset(self, org):
        job = _job(org)
        task_id = job["tasks"]["records"][0]["id"]
        reply = org.client.query(
            "query($j: ID!, $t: ID) { job(id: $j) { byId: tasks(id: $t) { totalCount records { id } } "
            "other: tasks(id: \"8d4c7e0e-0000-4000-8000-000000000000\") { totalCount } bad: tasks(id: \"nonsense\") { totalCount } "
            "target: tasks(targetId: [\"123\"]) { totalCount } asset: tasks(hasSourceAsset: true) { totalCount } "
            "noAsset: tasks(hasSourceAsset: false) { totalCount } } }", j=job["id"], t=task_id,
        ).ok()["job"]
        assert reply["byId"] == {"totalCount": 1, "records": [{"id": task_id}]}
        assert [reply[k]["totalCount"] for k in ("other", "bad", "target", "asset", "noAsset")] == [0, 0, 0, 0, 1]

    def test_jobs_filter_by_application_and_scheduled_job(self, org, other_org):
        job = _job(org)

        def found(args: str) -> bool:
            records = org.client.query(f"{{ jobs({args} limit: 100) {{ records {{ id }} }} }}").ok()["jobs"]["records"]
            return job["id"] in {r["id"] for r in records}

        assert found(f'applicationId: "{org.id}",') and found(f'applicationIds: ["{other_org.id}", "{org.id}"],')
        assert not found(f'applicationId: "{other_org.id}",') and not found('applicationId: "not-a-uuid",')
        assert found("hasScheduledJobId: false,") and not found("hasScheduledJobId: true,")
        assert not found('scheduledJobIds: ["1"],')

    def test_task_statuses_no_task_reaches_here_filter_to_nothing(self, org):
        job = _job(org)
        reply = org.client.query(
            "query($j: ID!) { job(id: $j) { tasks(status: [waiting, aborted, resuming, standby_pending]) { totalCount } } }", j=job["id"]
        ).ok()
        assert reply["job"]["tasks"]["totalCount"] == 0


class TestMe:
    def test_me_is_the_calling_token_and_its_organization(self, org):
        me = org.client.query("{ me { id name organizationId organization { id name status createdDateTime } jsondata status createdDateTime } }").ok()["me"]
        assert me["organizationId"] == str(org.id)
        assert me["organization"]["id"] == str(org.id) and me["organization"]["name"] == org.name
        assert me["organization"]["status"] == "active" and me["status"] == "active"
        assert me["name"] == "admin token" and me["jsondata"]["scope"] == "admin"
        assert org.token not in repr(me)  # the secret is never shown

    def test_each_token_is_its_own_caller(self, org, other_org):
        reader = org.client_for("read")
        mine, theirs, read = (c.query("{ me { id organizationId jsondata } }").ok()["me"] for c in (org.client, other_org.client, reader))
        assert len({mine["id"], theirs["id"], read["id"]}) == 3
        assert read["organizationId"] == mine["organizationId"] == str(org.id) and theirs["organizationId"] == str(other_org.id)
        assert read["jsondata"]["scope"] == "read"

    def test_an_engine_token_says_which_engine_it_acts_for(self, org):
        engine = org.client_for("engine", "test-sleeper")
        me = engine.query("{ me { jsondata } }").ok()["me"]
        assert me["jsondata"]["scope"] == "engine" and me["jsondata"]["engineId"] == "test-sleeper"


class TestCreatedByModifiedBy:
    def test_each_change_records_the_token_that_made_it(self, org):
        admin_id = org.client.query("{ me { id } }").ok()["me"]["id"]
        second = org.client_for("admin")
        second_id = second.query("{ me { id } }").ok()["me"]["id"]
        library_id = org.create_library()
        entity_id = org.create_entity(library_id, "Ada")
        look = "query($l: ID!, $e: ID!) { library(id: $l) { createdBy modifiedBy } entity(id: $e) { createdBy modifiedBy } }"
        assert org.client.query(look, l=library_id, e=entity_id).ok() == {
            "library": {"createdBy": admin_id, "modifiedBy": admin_id}, "entity": {"createdBy": admin_id, "modifiedBy": admin_id}}
        second.query("mutation($id: ID!) { updateLibrary(input: {id: $id, description: \"d\"}) { id } }", id=library_id).ok()
        second.query("mutation($id: ID!) { updateEntity(input: {id: $id, description: \"d\"}) { id } }", id=entity_id).ok()
        assert org.client.query(look, l=library_id, e=entity_id).ok() == {
            "library": {"createdBy": admin_id, "modifiedBy": second_id}, "entity": {"createdBy": admin_id, "modifiedBy": second_id}}

    def test_jobs_and_their_tasks_name_their_creator_and_a_cancel_names_who_cancelled(self, org):
        admin_id = org.client.query("{ me { id } }").ok()["me"]["id"]
        job = _job(org)
        second = org.client_for("admin")
        second_id = second.query("{ me { id } }").ok()["me"]["id"]
        read = org.client.query("query($id: ID!) { job(id: $id) { createdBy modifiedBy tasks { records { createdBy } } } }", id=job["id"]).ok()
        assert read["job"] == {"createdBy": admin_id, "modifiedBy": admin_id, "tasks": {"records": [{"createdBy": admin_id}]}}
        second.query("mutation($id: ID!) { cancelJob(id: $id) { id } }", id=job["id"]).ok()
        after = org.client.query("query($id: ID!) { job(id: $id) { createdBy modifiedBy } }", id=job["id"]).ok()["job"]
        assert after == {"createdBy": admin_id, "modifiedBy": second_id}

    def test_an_external_engine_names_the_token_that_registered_it(self, org):
        admin_id = org.client.query("{ me { id } }").ok()["me"]["id"]
        engine_id = f"by-{uuid.uuid4().hex[:8]}"
        org.client.query("mutation($id: ID!) { createEngine(input: {id: $id, identifierTypeIds: [\"face\"]}) { id } }", id=engine_id).ok()
        both = org.client.query("query($id: ID!) { mine: engine(id: $id) { createdBy modifiedBy } sleeper: engine(id: \"test-sleeper\") { createdBy } }",
                                id=engine_id).ok()
        assert both == {"mine": {"createdBy": admin_id, "modifiedBy": admin_id}, "sleeper": {"createdBy": None}}


class TestProfileUpdateMode:
    def _add(self, org, entity_id, mode=None, type_id="face", url="https://example.com/a.png", content_type="image/png"):
        extra = f", profileUpdateMode: {mode}" if mode else ""
        return org.client.query(
            f"mutation($e: ID!, $t: ID!, $u: String, $c: String) {{ createEntityIdentifier(input: {{entityId: $e, identifierTypeId: $t, "
            f"contentType: $c, url: $u, storeReference: true{extra}}}) {{ id url }} }}", e=entity_id, t=type_id, u=url, c=content_type,
        )

    def _profile(self, org, entity_id):
        return org.client.query("query($id: ID!) { entity(id: $id) { profileImageUrl } }", id=entity_id).ok()["entity"]["profileImageUrl"]

    def test_none_by_default_leaves_the_profile_image_alone(self, org, library):
        entity_id = org.create_entity(library, "Ada")
        self._add(org, entity_id).ok()
        assert self._profile(org, entity_id) is None

    def test_if_not_set_takes_the_first_image_only_and_always_replaces_it(self, org, library):
        entity_id = org.create_entity(library, "Ada")
        self._add(org, entity_id, "ifNotSet", url="https://example.com/first.png").ok()
        self._add(org, entity_id, "ifNotSet", url="https://example.com/second.png").ok()
        assert self._profile(org, entity_id) == "https://example.com/first.png"
        self._add(org, entity_id, "always", url="https://example.com/third.png").ok()
        assert self._profile(org, entity_id) == "https://example.com/third.png"
        kept = org.client.query("mutation($id: ID!) { updateEntity(input: {id: $id, profileImageUrl: \"https://example.com/own.png\"}) { profileImageUrl } }",
                                id=entity_id).ok()["updateEntity"]
        assert kept["profileImageUrl"] == "https://example.com/own.png"
        self._add(org, entity_id, "ifNotSet", url="https://example.com/fourth.png").ok()
        assert self._profile(org, entity_id) == "https://example.com/own.png"

    def test_a_stored_image_gives_a_fresh_link_to_its_bytes_and_deleting_it_clears_the_profile(self, org, library):
        entity_id = org.create_entity(library, "Ada")
        data = random_bytes(4000)
        reply = org.client.upload_form(
            f'mutation {{ createEntityIdentifier(input: {{entityId: "{entity_id}", identifierTypeId: "face", profileUpdateMode: always}}) {{ id }} }}',
            data, "image/png", filename="ada.png",
        )
        identifier_id = reply.ok()["createEntityIdentifier"]["id"]
        assert httpx.get(self._profile(org, entity_id), timeout=30).content == data
        org.client.query("mutation($id: ID!) { deleteEntityIdentifier(id: $id) { id } }", id=identifier_id).ok()
        assert self._profile(org, entity_id) is None

    def test_a_profile_mode_on_an_identifier_that_is_not_an_image_is_invalid_input(self, org, stack):
        library_id = org.create_library("voices", "speakers")
        entity_id = org.create_entity(library_id, "Ada")
        reply = self._add(org, entity_id, "always", type_id="audio-recording", url="https://example.com/a.wav", content_type="audio/wav")
        assert reply.error_code == "invalid_input" and "image" in reply.error_message
        assert identifier_rows(stack, org) == []


def test_a_library_is_never_globally_visible(org, library):
    read = org.client.query("query($id: ID!) { library(id: $id) { security { global } } }", id=library).ok()
    assert read["library"]["security"] == {"global": False}
