"""Entities: create with JSON literals or variables, unique names, update and clear, delete, list, publish."""

from __future__ import annotations

import re

from tests.api.conftest import identifier_rows, org_keys, random_bytes

ENTITY_FIELDS = "id name description libraryId isPublished jsondata profileImageUrl createdDateTime modifiedDateTime"
ISO_MILLIS = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{3}Z$")


def create_entity(client, **fields):
    return client.query(
        f"mutation($input: CreateEntity!) {{ createEntity(input: $input) {{ {ENTITY_FIELDS} }} }}", input=fields
    )


def test_jsondata_written_as_an_object_literal_in_the_query_is_stored_as_json(org):
    library_id = org.create_library()
    reply = org.client.query(
        f'mutation {{ createEntity(input: {{libraryId: "{library_id}", name: "Ada", '
        f'jsondata: {{age: 36, tags: ["math", "poetry"], nested: {{ok: true, none: null}}, ratio: 0.5}}}}) {{ {ENTITY_FIELDS} }} }}'
    ).ok()["createEntity"]
    assert reply["jsondata"] == {"age": 36, "tags": ["math", "poetry"], "nested": {"ok": True, "none": None}, "ratio": 0.5}
    assert reply["libraryId"] == library_id
    assert reply["isPublished"] is False
    assert ISO_MILLIS.match(reply["createdDateTime"]) and reply["createdDateTime"] <= reply["modifiedDateTime"]
    read = org.client.query(f'query {{ entity(id: "{reply["id"]}") {{ {ENTITY_FIELDS} }} }}').ok()["entity"]
    assert read == reply


def test_jsondata_sent_as_a_variable_is_stored_as_json(org):
    library_id = org.create_library()
    data = {"age": 36, "unicode": "Zoë ✓", "list": [1, {"a": None}]}
    reply = create_entity(org.client, libraryId=library_id, name="Ada", jsondata=data, description="d").ok()["createEntity"]
    assert reply["jsondata"] == data
    assert reply["description"] == "d"


def test_jsondata_given_as_a_json_encoded_string_variable_is_decoded(org):
    library_id = org.create_library()
    reply = create_entity(org.client, libraryId=library_id, name="Ada", jsondata='{"a": 1}').ok()["createEntity"]
    assert reply["jsondata"] == {"a": 1}


def test_jsondata_given_as_a_string_that_is_not_json_is_invalid_input_and_nothing_is_created(org):
    library_id = org.create_library()
    reply = create_entity(org.client, libraryId=library_id, name="Ada", jsondata="{not json")
    assert reply.error_code == "invalid_input"
    assert "jsondata" in reply.error_message
    assert org.client.query(f'query {{ entities(libraryIds: "{library_id}") {{ totalCount }} }}').ok()["entities"]["totalCount"] == 0


def test_entity_names_are_unique_within_a_library_but_not_across_libraries(org):
    first = org.create_library("one")
    second = org.create_library("two")
    org.create_entity(first, "Ada")
    duplicate = create_entity(org.client, libraryId=first, name="Ada")
    assert duplicate.error_code == "invalid_input"
    assert "Ada" in duplicate.error_message
    assert create_entity(org.client, libraryId=second, name="Ada").ok()["createEntity"]["name"] == "Ada"


def test_renaming_an_entity_onto_a_taken_name_is_invalid_input_and_keeps_the_old_name(org):
    library_id = org.create_library()
    org.create_entity(library_id, "Ada")
    grace = org.create_entity(library_id, "Grace")
    reply = org.client.query(f'mutation {{ updateEntity(input: {{id: "{grace}", name: "Ada"}}) {{ name }} }}')
    assert reply.error_code == "invalid_input"
    assert org.client.query(f'query {{ entity(id: "{grace}") {{ name }} }}').ok()["entity"]["name"] == "Grace"


def test_an_entity_in_a_missing_library_is_not_found(org):
    reply = create_entity(org.client, libraryId="6d4f4a1e-8d0e-4a3a-9d55-4b8e0c7a1e11", name="x")
    assert reply.error_code == "not_found"


def test_update_sets_false_clears_strings_and_replaces_jsondata(org):
    library_id = org.create_library()
    created = create_entity(
        org.client, libraryId=library_id, name="Ada", description="desc", jsondata={"a": 1, "b": 2},
        profileImageUrl="https://x.test/p.png", isPublished=True,
    ).ok()["createEntity"]
    assert created["isPublished"] is True
    updated = org.client.query(
        f"mutation($input: UpdateEntity!) {{ updateEntity(input: $input) {{ {ENTITY_FIELDS} }} }}",
        input={"id": created["id"], "description": None, "profileImageUrl": None, "isPublished": False, "jsondata": {"c": 3}},
    ).ok()["updateEntity"]
    assert updated["isPublished"] is False
    assert updated["description"] is None
    assert updated["profileImageUrl"] is None
    assert updated["jsondata"] == {"c": 3}
    assert updated["name"] == "Ada"
    assert updated["createdDateTime"] == created["createdDateTime"]
    assert updated["createdDateTime"] <= updated["modifiedDateTime"]


def test_update_without_fields_keeps_everything(org):
    library_id = org.create_library()
    created = create_entity(org.client, libraryId=library_id, name="Ada", description="d", jsondata={"a": 1}).ok()["createEntity"]
    updated = org.client.query(f'mutation {{ updateEntity(input: {{id: "{created["id"]}"}}) {{ name description jsondata }} }}').ok()
    assert updated["updateEntity"] == {"name": "Ada", "description": "d", "jsondata": {"a": 1}}


def test_deleting_an_entity_removes_its_identifiers_and_s3_objects_only(org, stack, bucket):
    library_id = org.create_library()
    doomed = org.create_entity(library_id, "doomed")
    kept = org.create_entity(library_id, "kept")
    org.add_identifier(doomed, random_bytes())
    org.add_identifier(doomed, random_bytes())
    kept_identifier = org.add_identifier(kept, random_bytes())
    reply = org.client.query(f'mutation {{ deleteEntity(id: "{doomed}") {{ id message }} }}').ok()
    assert reply["deleteEntity"]["id"] == doomed
    assert org.client.query(f'query {{ entity(id: "{doomed}") {{ id }} }}').error_code == "not_found"
    rows = identifier_rows(stack, org)
    assert [str(r["id"]) for r in rows] == [kept_identifier]
    assert org_keys(bucket, org) == [rows[0]["storage_key"]]
    again = org.client.query(f'mutation {{ deleteEntity(id: "{doomed}") {{ id }} }}')
    assert again.error_code == "not_found"


class TestEntitiesQuery:
    def test_a_single_library_id_given_to_the_list_argument_is_coerced_to_a_list(self, org):
        library_id = org.create_library()
        other = org.create_library("other")
        ids = {org.create_entity(library_id, f"e{i}") for i in range(3)}
        org.create_entity(other, "elsewhere")
        page = org.client.query(
            f'query {{ entities(libraryIds: "{library_id}", isPublished: false, limit: 1000) '
            f"{{ limit count totalCount records {{ id isPublished libraryId }} }} }}"
        ).ok()["entities"]
        assert page["limit"] == 1000
        assert page["count"] == page["totalCount"] == 3
        assert {r["id"] for r in page["records"]} == ids
        assert all(r["isPublished"] is False and r["libraryId"] == library_id for r in page["records"])

    def test_without_library_ids_or_ids_it_is_invalid_input(self, org):
        reply = org.client.query("query { entities { count } }")
        assert reply.error_code == "invalid_input"
        assert reply.status == 200

    def test_ids_select_entities_and_malformed_ids_match_nothing(self, org):
        library_id = org.create_library()
        a = org.create_entity(library_id, "a")
        org.create_entity(library_id, "b")
        page = org.client.query(f'query {{ entities(ids: ["{a}", "not-a-uuid"]) {{ count records {{ name }} }} }}').ok()
        assert page["entities"] == {"count": 1, "records": [{"name": "a"}]}

    def test_name_filter_and_paging_with_a_short_last_page(self, org):
        library_id = org.create_library()
        for i in range(5):
            org.create_entity(library_id, f"Person {i}")
        org.create_entity(library_id, "Someone else")
        first = org.client.query(
            f'query {{ entities(libraryIds: ["{library_id}"], name: "person", limit: 3, orderBy: name, orderDirection: asc) '
            f"{{ count totalCount records {{ name }} }} }}"
        ).ok()["entities"]
        second = org.client.query(
            f'query {{ entities(libraryIds: ["{library_id}"], name: "person", offset: 3, limit: 3, orderBy: name, orderDirection: asc) '
            f"{{ count totalCount records {{ name }} }} }}"
        ).ok()["entities"]
        assert [r["name"] for r in first["records"]] == ["Person 0", "Person 1", "Person 2"]
        assert [r["name"] for r in second["records"]] == ["Person 3", "Person 4"]
        assert (first["count"], second["count"], first["totalCount"], second["totalCount"]) == (3, 2, 5, 5)

    def test_library_entities_filter_by_identifier_type(self, org):
        library_id = org.create_library()
        with_face = org.create_entity(library_id, "with face")
        org.create_entity(library_id, "bare")
        org.add_identifier(with_face, random_bytes())
        data = org.client.query(
            f'query {{ library(id: "{library_id}") {{ entities(identifierTypeId: "face") {{ count records {{ id }} }} }} }}'
        ).ok()
        assert data["library"]["entities"] == {"count": 1, "records": [{"id": with_face}]}


def test_publishing_a_library_increments_its_version_and_publishes_its_entities(org):
    library_id = org.create_library()
    for i in range(3):
        org.create_entity(library_id, f"e{i}")
    summary = org.client.query(
        f'query {{ library(id: "{library_id}") {{ version summary {{ entityCount unpublishedEntityCount }} }} }}'
    ).ok()["library"]
    assert summary == {"version": 0, "summary": {"entityCount": 3, "unpublishedEntityCount": 3}}

    published = org.client.query(f'mutation {{ publishLibrary(id: "{library_id}") {{ id version }} }}').ok()["publishLibrary"]
    assert published == {"id": library_id, "version": 1}
    after = org.client.query(
        f'query {{ library(id: "{library_id}") {{ version summary {{ entityCount unpublishedEntityCount }} }} '
        f'entities(libraryIds: "{library_id}", isPublished: false) {{ count }} }}'
    ).ok()
    assert after["library"] == {"version": 1, "summary": {"entityCount": 3, "unpublishedEntityCount": 0}}
    assert after["entities"]["count"] == 0

    org.create_entity(library_id, "late")
    again = org.client.query(f'mutation {{ publishLibrary(id: "{library_id}") {{ version }} }}').ok()["publishLibrary"]
    assert again["version"] == 2
    unpublished = org.client.query(f'query {{ entities(libraryIds: "{library_id}", isPublished: false) {{ count }} }}').ok()
    assert unpublished["entities"]["count"] == 0


def test_publishing_a_missing_library_is_not_found(org):
    reply = org.client.query('mutation { publishLibrary(id: "0b8c2f8e-51b9-4b5d-8d6f-2f5a8e0e9c01") { version } }')
    assert reply.error_code == "not_found"
