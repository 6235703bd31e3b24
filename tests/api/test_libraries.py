"""Libraries through the public API: create, read, update, delete, list, and the type catalogue."""

from __future__ import annotations

import re

from tests.api.conftest import identifier_rows, org_keys, random_bytes

LIBRARY_FIELDS = "id name description libraryTypeId version organizationId coverImageUrl createdDateTime modifiedDateTime"
ISO_MILLIS = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{3}Z$")


def create(client, **fields):
    return client.query(
        f"mutation($input: CreateLibrary!) {{ createLibrary(input: $input) {{ {LIBRARY_FIELDS} }} }}", input=fields
    )


def names(reply, field="libraries"):
    return [r["name"] for r in reply.ok()[field]["records"]]


def test_a_created_library_reads_back_with_every_field(org):
    created = create(
        org.client, name="Rock Stars", libraryTypeId="people", description="famous faces", coverImageUrl="https://x.test/c.png"
    ).ok()["createLibrary"]
    read = org.client.query(f'query {{ library(id: "{created["id"]}") {{ {LIBRARY_FIELDS} }} }}').ok()["library"]
    assert read == created
    assert read["name"] == "Rock Stars"
    assert read["description"] == "famous faces"
    assert read["coverImageUrl"] == "https://x.test/c.png"
    assert read["libraryTypeId"] == "people"
    assert read["version"] == 0
    assert read["organizationId"] == str(org.id)


def test_library_dates_are_iso_utc_with_milliseconds_and_modified_is_not_before_created(org):
    created = create(org.client, name="dates", libraryTypeId="people").ok()["createLibrary"]
    assert ISO_MILLIS.match(created["createdDateTime"]), created["createdDateTime"]
    assert ISO_MILLIS.match(created["modifiedDateTime"]), created["modifiedDateTime"]
    updated = org.client.query(
        "mutation($id: ID!) { updateLibrary(input: {id: $id, name: \"dates 2\"}) { createdDateTime modifiedDateTime } }",
        id=created["id"],
    ).ok()["updateLibrary"]
    assert updated["createdDateTime"] == created["createdDateTime"]
    # Fixed-width ISO text in UTC sorts as time does.
    assert updated["createdDateTime"] <= updated["modifiedDateTime"]
    assert created["modifiedDateTime"] <= updated["modifiedDateTime"]


def test_a_library_with_an_empty_name_or_unknown_type_is_invalid_input(org):
    assert create(org.client, name="   ", libraryTypeId="people").error_code == "invalid_input"
    assert create(org.client, name="x", libraryTypeId="no-such-type").error_code == "invalid_input"
    assert org.client.query("query { libraries { totalCount } }").ok()["libraries"]["totalCount"] == 0


def test_update_changes_only_the_fields_sent(org):
    lib = create(org.client, name="a", libraryTypeId="people", description="keep me", coverImageUrl="https://x.test/1").ok()[
        "createLibrary"
    ]
    updated = org.client.query(
        f'mutation {{ updateLibrary(input: {{id: "{lib["id"]}", name: "b"}}) {{ {LIBRARY_FIELDS} }} }}'
    ).ok()["updateLibrary"]
    assert updated["name"] == "b"
    assert updated["description"] == "keep me"
    assert updated["coverImageUrl"] == "https://x.test/1"


def test_update_with_null_description_clears_it(org):
    lib = create(org.client, name="a", libraryTypeId="people", description="to clear", coverImageUrl="https://x.test/1").ok()[
        "createLibrary"
    ]
    updated = org.client.query(
        "mutation($input: UpdateLibrary!) { updateLibrary(input: $input) { description coverImageUrl name } }",
        input={"id": lib["id"], "description": None, "coverImageUrl": ""},
    ).ok()["updateLibrary"]
    assert updated["description"] is None
    assert updated["coverImageUrl"] == ""
    assert updated["name"] == "a"
    read = org.client.query(f'query {{ library(id: "{lib["id"]}") {{ description coverImageUrl }} }}').ok()["library"]
    assert read == {"description": None, "coverImageUrl": ""}


def test_update_rejects_an_empty_name(org):
    lib = create(org.client, name="a", libraryTypeId="people").ok()["createLibrary"]
    reply = org.client.query(f'mutation {{ updateLibrary(input: {{id: "{lib["id"]}", name: ""}}) {{ name }} }}')
    assert reply.error_code == "invalid_input"
    assert org.client.query(f'query {{ library(id: "{lib["id"]}") {{ name }} }}').ok()["library"]["name"] == "a"


def test_deleting_a_library_removes_its_entities_identifiers_and_their_s3_objects(org, stack, bucket):
    library_id = org.create_library("doomed")
    entity_ids = [org.create_entity(library_id, f"person {i}") for i in range(2)]
    for entity_id in entity_ids:
        org.add_identifier(entity_id, random_bytes())
        org.add_identifier(entity_id, random_bytes())
    keeper = org.create_library("kept")
    kept_identifier = org.add_identifier(org.create_entity(keeper, "stays"), random_bytes())
    assert len(org_keys(bucket, org)) == 5

    reply = org.client.query(f'mutation {{ deleteLibrary(id: "{library_id}") {{ id message }} }}').ok()
    assert reply["deleteLibrary"]["id"] == library_id

    assert org.client.query(f'query {{ library(id: "{library_id}") {{ id }} }}').error_code == "not_found"
    for entity_id in entity_ids:
        assert org.client.query(f'query {{ entity(id: "{entity_id}") {{ id }} }}').error_code == "not_found"
    rows = identifier_rows(stack, org)
    assert [str(r["id"]) for r in rows] == [kept_identifier]
    assert org_keys(bucket, org) == [rows[0]["storage_key"]]


def test_deleting_the_last_library_leaves_nothing_in_the_bucket_under_the_org_prefix(org, bucket):
    library_id = org.create_library("only")
    org.add_identifier(org.create_entity(library_id, "p"), random_bytes())
    assert org_keys(bucket, org)
    org.client.query(f'mutation {{ deleteLibrary(id: "{library_id}") {{ id }} }}').ok()
    assert org_keys(bucket, org) == []


def test_deleting_a_missing_library_is_not_found(org):
    reply = org.client.query('mutation { deleteLibrary(id: "7f9c2a59-5fd2-4c36-9a3e-0b3f3f0f0f0f") { id } }')
    assert reply.error_code == "not_found"
    assert reply.error_message == "The requested object was not found"


class TestListing:
    def test_the_default_page_holds_30_and_counts_only_this_page(self, org):
        for i in range(33):
            org.create_library(f"lib {i:02d}")
        page = org.client.query("query { libraries { offset limit count totalCount records { id } } }").ok()["libraries"]
        assert (page["offset"], page["limit"], page["count"], page["totalCount"]) == (0, 30, 30, 33)
        assert len(page["records"]) == 30

    def test_paging_walks_every_library_once_and_ends_on_a_short_page(self, org):
        created = {org.create_library(f"lib {i}") for i in range(7)}
        seen: list[str] = []
        counts = []
        offset = 0
        while True:
            page = org.client.query(
                "query($o: Int, $l: Int) { libraries(offset: $o, limit: $l) { offset limit count totalCount records { id } } }",
                o=offset, l=3,
            ).ok()["libraries"]
            assert page["offset"] == offset and page["limit"] == 3 and page["totalCount"] == 7
            counts.append(page["count"])
            seen += [r["id"] for r in page["records"]]
            if page["count"] < 3:
                break
            offset += 3
        assert counts == [3, 3, 1]
        assert sorted(seen) == sorted(created)

    def test_a_page_past_the_end_is_empty_but_still_reports_the_total(self, org):
        for i in range(2):
            org.create_library(f"lib {i}")
        page = org.client.query("query { libraries(offset: 10) { count totalCount records { id } } }").ok()["libraries"]
        assert page == {"count": 0, "totalCount": 2, "records": []}

    def test_the_name_filter_is_a_case_insensitive_substring_match(self, org):
        for name in ("Rock Stars", "rockabilly", "Jazz", "Punk rock"):
            org.create_library(name)
        reply = org.client.query('query { libraries(name: "ROCK", orderBy: name, orderDirection: asc) { count records { name } } }')
        assert names(reply) == ["Punk rock", "Rock Stars", "rockabilly"]
        assert org.client.query('query { libraries(name: "nothing") { count } }').ok()["libraries"]["count"] == 0

    def test_the_name_filter_treats_percent_and_underscore_as_ordinary_text(self, org):
        for name in ("100% real", "1000 real", "a_b", "axb"):
            org.create_library(name)
        assert names(org.client.query('query { libraries(name: "0%") { records { name } } }')) == ["100% real"]
        assert names(org.client.query('query { libraries(name: "a_b") { records { name } } }')) == ["a_b"]

    def test_order_by_name_in_both_directions(self, org):
        for name in ("b", "c", "a"):
            org.create_library(name)
        assert names(org.client.query("query { libraries(orderBy: name, orderDirection: asc) { records { name } } }")) == ["a", "b", "c"]
        assert names(org.client.query("query { libraries(orderBy: name, orderDirection: desc) { records { name } } }")) == ["c", "b", "a"]

    def test_by_default_the_newest_library_comes_first(self, org):
        for name in ("first", "second", "third"):
            org.create_library(name)
        assert names(org.client.query("query { libraries { records { name } } }")) == ["third", "second", "first"]
        assert names(
            org.client.query("query { libraries(orderBy: createdDateTime, orderDirection: asc) { records { name } } }")
        ) == ["first", "second", "third"]

    def test_an_unknown_order_by_value_is_invalid_input(self, org):
        reply = org.client.query("query { libraries(orderBy: shoeSize) { count } }")
        assert reply.status == 400
        assert reply.error_code == "invalid_input"

    def test_the_type_filter_and_id_filter_select_libraries(self, org):
        people = org.create_library("p", "people")
        org.create_library("s", "speakers")
        assert names(org.client.query('query { libraries(type: "speakers") { records { name } } }')) == ["s"]
        assert names(org.client.query(f'query {{ libraries(id: "{people}") {{ records {{ name }} }} }}')) == ["p"]


    def test_the_identifier_type_filter_selects_libraries_whose_type_takes_one_of_them(self, org):
        org.create_library("p", "people")
        org.create_library("s", "speakers")
        org.create_library("o", "objects")
        audio = org.client.query('query { libraries(entityIdentifierTypeIds: "audio-recording", orderBy: name, orderDirection: asc) { records { name } } }')
        assert names(audio) == ["p", "s"]
        assert names(org.client.query('query { libraries(entityIdentifierTypeIds: "text") { records { name } } }')) == []
        both = org.client.query('query { libraries(entityIdentifierTypeIds: ["face", "audio-recording"], orderBy: name, orderDirection: asc) { records { name } } }')
        assert names(both) == ["p", "s"]
        assert names(org.client.query('query { libraries(entityIdentifierTypeIds: ["image"], orderBy: name, orderDirection: asc) { records { name } } }')) == ["o", "p"]


class TestTypeCatalogue:
    def test_library_types_are_a_page_with_their_identifier_types_as_a_plain_list(self, org):
        page = org.client.query(
            "query { libraryTypes { offset limit count totalCount records { id label entityTypeName entityTypeNamePlural "
            "entityIdentifierTypes { id dataType } } } }"
        ).ok()["libraryTypes"]
        assert page["offset"] == 0 and page["limit"] == 30
        assert page["count"] == len(page["records"]) == page["totalCount"]
        people = next(r for r in page["records"] if r["id"] == "people")
        assert people["entityTypeName"] == "person"
        # One people library serves face engines and speaker engines (seed 000).
        assert {(t["id"], t["dataType"]) for t in people["entityIdentifierTypes"]} == {
            ("face", "image"), ("image", "image"), ("audio-recording", "audio")}

    def test_library_types_page_honours_limit(self, org):
        page = org.client.query("query { libraryTypes(limit: 1) { count totalCount records { id } } }").ok()["libraryTypes"]
        assert page["count"] == 1 and page["totalCount"] > 1

    def test_library_type_by_id_and_unknown_id(self, org):
        data = org.client.query('query { libraryType(id: "speakers") { id label entityIdentifierTypes { id } } }').ok()
        assert data["libraryType"] == {"id": "speakers", "label": "Speakers", "entityIdentifierTypes": [{"id": "audio-recording"}]}
        missing = org.client.query('query { libraryType(id: "nope") { id } }')
        assert missing.error_code == "not_found" and missing.data == {"libraryType": None}

    def test_entity_identifier_types_page_and_filter(self, org):
        page = org.client.query(
            "query { entityIdentifierTypes { count totalCount records { id label labelPlural dataType } } }"
        ).ok()["entityIdentifierTypes"]
        ids = {r["id"] for r in page["records"]}
        assert {"face", "image", "audio-recording"} <= ids
        assert page["count"] == page["totalCount"] == len(ids)
        one = org.client.query('query { entityIdentifierTypes(id: "face") { count records { id dataType } } }').ok()
        assert one["entityIdentifierTypes"] == {"count": 1, "records": [{"id": "face", "dataType": "image"}]}

    def test_a_library_names_its_type(self, org):
        library_id = org.create_library("t", "speakers")
        data = org.client.query(f'query {{ library(id: "{library_id}") {{ libraryType {{ id entityTypeNamePlural }} }} }}').ok()
        assert data["library"]["libraryType"] == {"id": "speakers", "entityTypeNamePlural": "speakers"}
