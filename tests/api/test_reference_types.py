"""An organization's own library types and entity identifier types, beside the read-only built-ins."""

from __future__ import annotations

import uuid

import pytest

from tests.api.conftest import assert_clean_error_text

IDENTIFIER_TYPE = "id label labelPlural iconClass description dataType"
LIBRARY_TYPE = f"id label iconClass entityTypeName entityTypeNamePlural entityType {{ name namePlural schema }} entityIdentifierTypes {{ id }}"


def _id(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


def create_identifier_type(client, **fields):
    return client.query(
        f"mutation($input: CreateEntityIdentifierType!) {{ createEntityIdentifierType(input: $input) {{ {IDENTIFIER_TYPE} }} }}",
        input=fields,
    )


def create_library_type(client, **fields):
    return client.query(
        f"mutation($input: CreateLibraryType!) {{ createLibraryType(input: $input) {{ {LIBRARY_TYPE} }} }}", input=fields
    )


def logo_types(client, schema=None):
    """A 'logo' identifier type and a 'brands' library type taking it and built-in images."""
    logo = create_identifier_type(client, id=_id("logo"), label="Logo", labelPlural="Logos", dataType="image",
                                  iconClass="icon-logo", description="A brand's mark").ok()["createEntityIdentifierType"]
    brands = create_library_type(
        client, id=_id("brands"), label="Brands", iconClass="icon-brand", entityIdentifierTypeIds=[logo["id"], "image"],
        entityType={"name": "brand", "namePlural": "brands", "schema": schema if schema is not None else {}},
    ).ok()["createLibraryType"]
    return logo, brands


def test_an_organizations_types_are_listed_beside_the_built_ins_and_read_back_as_created(org):
    logo, brands = logo_types(org.client)
    assert logo == {"id": logo["id"], "label": "Logo", "labelPlural": "Logos", "iconClass": "icon-logo",
                    "description": "A brand's mark", "dataType": "image"}
    assert brands["entityType"] == {"name": "brand", "namePlural": "brands", "schema": {}}
    assert (brands["entityTypeName"], brands["entityTypeNamePlural"]) == ("brand", "brands")
    assert [t["id"] for t in brands["entityIdentifierTypes"]] == [logo["id"], "image"]
    listed = org.client.query("{ entityIdentifierTypes(limit: 100) { records { id } } libraryTypes(limit: 100) { records { id } } }").ok()
    identifier_ids = [t["id"] for t in listed["entityIdentifierTypes"]["records"]]
    assert "face" in identifier_ids and logo["id"] in identifier_ids
    assert {"people", brands["id"]} <= {t["id"] for t in listed["libraryTypes"]["records"]}
    one = org.client.query("query($id: ID) { libraryType(id: $id) { id label } }", id=brands["id"]).ok()
    assert one["libraryType"] == {"id": brands["id"], "label": "Brands"}


def test_another_organization_neither_sees_nor_uses_them(org, other_org):
    logo, brands = logo_types(org.client)
    for field, value in (("entityIdentifierType(id: $x)", logo["id"]), ("libraryType(id: $x)", brands["id"])):
        unseen = other_org.client.query(f"query($x: ID!) {{ {field} {{ id }} }}", x=value)
        made_up = other_org.client.query(f"query($x: ID!) {{ {field} {{ id }} }}", x="never-existed")
        assert unseen.error_code == made_up.error_code == "not_found" and unseen.error_message == made_up.error_message
    seen = other_org.client.query("query { libraryTypes(limit: 100) { records { id } } }").ok()
    assert brands["id"] not in {t["id"] for t in seen["libraryTypes"]["records"]}
    refused = other_org.client.query(
        "mutation($t: ID!) { createLibrary(input: {name: \"x\", libraryTypeId: $t}) { id } }", t=brands["id"])
    assert refused.error_code == "invalid_input" and "libraryTypeId" in refused.error_message
    taken = create_identifier_type(other_org.client, id=logo["id"], label="L", labelPlural="Ls", dataType="image")
    assert taken.error_code == "invalid_input" and "not available" in taken.error_message
    renamed = other_org.client.query(
        "mutation($id: ID!) { updateLibraryType(input: {id: $id, label: \"mine\"}) { id } }", id=brands["id"])
    assert renamed.error_code == "not_found"


def test_a_library_of_an_own_type_takes_identifiers_of_its_own_identifier_type(org):
    logo, brands = logo_types(org.client)
    library_id = org.create_library("acme", brands["id"])
    library = org.client.query("query($id: ID!) { library(id: $id) { libraryTypeId libraryType { id label } } }", id=library_id).ok()["library"]
    assert library == {"libraryTypeId": brands["id"], "libraryType": {"id": brands["id"], "label": "Brands"}}
    entity_id = org.create_entity(library_id, "Acme")
    identifier = org.client.query(
        "mutation($e: ID!, $t: ID!) { createEntityIdentifier(input: {entityId: $e, identifierTypeId: $t, contentType: \"image/png\", "
        "url: \"https://example.com/acme.png\", storeReference: true}) { identifierTypeId identifierType { id label dataType } } }",
        e=entity_id, t=logo["id"],
    ).ok()["createEntityIdentifier"]
    assert identifier == {"identifierTypeId": logo["id"], "identifierType": {"id": logo["id"], "label": "Logo", "dataType": "image"}}
    face = org.client.query(
        "mutation($e: ID!) { createEntityIdentifier(input: {entityId: $e, identifierTypeId: \"face\", contentType: \"image/png\", "
        "url: \"https://example.com/a.png\", storeReference: true}) { id } }", e=entity_id)
    assert face.error_code == "invalid_input" and "face" in face.error_message


def test_built_in_types_are_read_only(org):
    for document in (
        'mutation { updateLibraryType(input: {id: "people", label: "Folk"}) { id } }',
        'mutation { updateEntityIdentifierType(input: {id: "face", label: "Mug"}) { id } }',
    ):
        reply = org.client.query(document)
        assert reply.error_code == "not_allowed" and "built-in" in reply.error_message, reply.body
    people = org.client.query('{ libraryType(id: "people") { label } entityIdentifierType(id: "face") { label } }').ok()
    assert people == {"libraryType": {"label": "People"}, "entityIdentifierType": {"label": "Face"}}
    for reply in (
        create_identifier_type(org.client, id="face", label="F", labelPlural="Fs", dataType="image"),
        create_library_type(org.client, id="people", label="P", entityType={"name": "p", "namePlural": "ps", "schema": {}}),
    ):
        assert reply.error_code == "invalid_input" and "built-in" in reply.error_message


def test_a_read_token_may_list_types_but_not_create_or_change_them(org):
    logo, brands = logo_types(org.client)
    reader = org.client_for("read")
    assert reader.query("query($id: ID) { libraryType(id: $id) { id } }", id=brands["id"]).ok()["libraryType"]["id"] == brands["id"]
    assert create_identifier_type(reader, id=_id("r"), label="R", labelPlural="Rs", dataType="text").error_code == "not_allowed"
    changed = reader.query("mutation($id: ID!) { updateEntityIdentifierType(input: {id: $id, label: \"x\"}) { id } }", id=logo["id"])
    assert changed.error_code == "not_allowed"


@pytest.mark.parametrize(
    "fields, words",
    [
        ({"id": "", "label": "L", "labelPlural": "Ls", "dataType": "image"}, "id must be"),
        ({"id": "has space", "label": "L", "labelPlural": "Ls", "dataType": "image"}, "id must be"),
        ({"id": "x" * 129, "label": "L", "labelPlural": "Ls", "dataType": "image"}, "id must be"),
        ({"id": "{ID}", "label": "  ", "labelPlural": "Ls", "dataType": "image"}, "label must not be empty"),
        ({"id": "{ID}", "label": "L", "labelPlural": "L" * 257, "dataType": "image"}, "labelPlural must be at most"),
    ],
)
def test_bad_identifier_types_are_invalid_input_and_nothing_is_created(org, stack, fields, words):
    fields = {k: (_id("t") if v == "{ID}" else v) for k, v in fields.items()}
    reply = create_identifier_type(org.client, **fields)
    assert reply.error_code == "invalid_input" and words in reply.error_message, reply.body
    assert_clean_error_text(reply.body)
    assert stack.db.fetchval("SELECT count(*) FROM entity_identifier_types WHERE org_id = $1", org.id) == 0


def test_an_unknown_data_type_is_refused_by_validation(org):
    reply = create_identifier_type(org.client, id=_id("t"), label="L", labelPlural="Ls", dataType="hologram")
    assert reply.errors and reply.data is None


def test_the_same_id_twice_is_invalid_input(org):
    type_id = _id("dup")
    create_identifier_type(org.client, id=type_id, label="A", labelPlural="As", dataType="audio").ok()
    again = create_identifier_type(org.client, id=type_id, label="B", labelPlural="Bs", dataType="audio")
    assert again.error_code == "invalid_input"
    kept = org.client.query("query($id: ID!) { entityIdentifierType(id: $id) { label } }", id=type_id).ok()
    assert kept["entityIdentifierType"]["label"] == "A"


@pytest.mark.parametrize(
    "fields, words",
    [
        ({"entityIdentifierTypeIds": ["no-such-type"]}, "unknown entityIdentifierTypeIds: no-such-type"),
        ({"entityType": {"name": "", "namePlural": "bs", "schema": {}}}, "entityType.name must not be empty"),
        ({"entityType": {"name": "b", "namePlural": "bs", "schema": [1]}}, "entityType.schema must be a JSON object"),
        ({"entityType": {"name": "b", "namePlural": "bs", "schema": {"type": "nonsense"}}}, "not a valid JSON Schema"),
        ({"entityType": {"name": "b", "namePlural": "bs", "schema": {"properties": {"a": {"pattern": "(a+)+$"}}}}}, "may not use pattern"),
        ({"entityType": {"name": "b", "namePlural": "bs", "schema": {"$ref": "https://example.com/s.json"}}}, "$ref other than"),
    ],
)
def test_bad_library_types_are_invalid_input_and_nothing_is_created(org, stack, fields, words):
    base = {"id": _id("lt"), "label": "L", "entityType": {"name": "b", "namePlural": "bs", "schema": {}}}
    reply = create_library_type(org.client, **{**base, **fields})
    assert reply.error_code == "invalid_input" and words in reply.error_message, reply.body
    assert stack.db.fetchval("SELECT count(*) FROM library_types WHERE org_id = $1", org.id) == 0


def test_updates_change_what_is_sent_and_keep_the_rest(org):
    logo, brands = logo_types(org.client)
    updated = org.client.query(
        f"mutation($id: ID!) {{ updateEntityIdentifierType(input: {{id: $id, label: \"Mark\", iconClass: null}}) {{ {IDENTIFIER_TYPE} }} }}",
        id=logo["id"],
    ).ok()["updateEntityIdentifierType"]
    assert updated == {**logo, "label": "Mark", "iconClass": None}
    changed = org.client.query(
        f"mutation($id: ID!) {{ updateLibraryType(input: {{id: $id, label: \"Marques\", entityIdentifierTypeIds: [\"image\"], "
        f"entityType: {{namePlural: \"marques\"}}}}) {{ {LIBRARY_TYPE} }} }}", id=brands["id"],
    ).ok()["updateLibraryType"]
    assert changed["label"] == "Marques" and changed["iconClass"] == "icon-brand"
    assert changed["entityType"] == {"name": "brand", "namePlural": "marques", "schema": {}}
    assert [t["id"] for t in changed["entityIdentifierTypes"]] == ["image"]


def test_a_type_in_use_keeps_what_its_identifiers_need(org):
    logo, brands = logo_types(org.client)
    entity_id = org.create_entity(org.create_library("acme", brands["id"]), "Acme")
    org.client.query(
        "mutation($e: ID!, $t: ID!) { createEntityIdentifier(input: {entityId: $e, identifierTypeId: $t, contentType: \"image/png\", "
        "url: \"https://example.com/acme.png\", storeReference: true}) { id } }", e=entity_id, t=logo["id"]).ok()
    retyped = org.client.query("mutation($id: ID!) { updateEntityIdentifierType(input: {id: $id, dataType: audio}) { id } }", id=logo["id"])
    assert retyped.error_code == "invalid_input" and "dataType cannot change" in retyped.error_message
    dropped = org.client.query(
        "mutation($id: ID!) { updateLibraryType(input: {id: $id, label: \"B\", entityIdentifierTypeIds: [\"image\"]}) { id } }", id=brands["id"])
    assert dropped.error_code == "invalid_input" and logo["id"] in dropped.error_message
    kept = org.client.query("query($id: ID) { libraryType(id: $id) { label entityIdentifierTypes { id } } }", id=brands["id"]).ok()
    assert kept["libraryType"] == {"label": "Brands", "entityIdentifierTypes": [{"id": logo["id"]}, {"id": "image"}]}


SCHEMA = {"type": "object", "properties": {"founded": {"type": "integer", "minimum": 1800}}, "required": ["founded"]}


def test_entity_jsondata_must_satisfy_the_library_types_schema(org, stack):
    _, brands = logo_types(org.client, schema=SCHEMA)
    library_id = org.create_library("acme", brands["id"])
    bad = org.client.query("mutation($l: ID!) { createEntity(input: {libraryId: $l, name: \"Acme\", jsondata: {founded: 1500}}) { id } }", l=library_id)
    assert bad.error_code == "invalid_input" and "jsondata.founded" in bad.error_message and "1800" in bad.error_message
    missing = org.client.query("mutation($l: ID!) { createEntity(input: {libraryId: $l, name: \"Acme\"}) { id } }", l=library_id)
    assert missing.error_code == "invalid_input" and "founded" in missing.error_message
    assert stack.db.fetchval("SELECT count(*) FROM entities WHERE org_id = $1", org.id) == 0
    entity_id = org.create_entity(library_id, "Acme", {"founded": 1901})
    update = org.client.query("mutation($id: ID!) { updateEntity(input: {id: $id, jsonstring: \"{}\"}) { id } }", id=entity_id)
    assert update.error_code == "invalid_input"
    stricter = org.client.query(
        "mutation($id: ID!, $s: JSONData!) { updateLibraryType(input: {id: $id, label: \"B\", entityType: {schema: $s}}) { id } }",
        id=brands["id"], s={**SCHEMA, "properties": {"founded": {"type": "integer", "minimum": 1950}}})
    assert stricter.error_code == "invalid_input" and "Acme" in stricter.error_message
    read = org.client.query("query($id: ID!) { entity(id: $id) { jsondata } }", id=entity_id).ok()
    assert read["entity"]["jsondata"] == {"founded": 1901}


def test_a_library_cannot_move_to_a_type_whose_schema_its_entities_fail(org):
    _, brands = logo_types(org.client, schema=SCHEMA)
    library_id = org.create_library("people first", "people")
    org.create_entity(library_id, "Ada", {"born": 1815})
    moved = org.client.query("mutation($id: ID!, $t: ID) { updateLibrary(input: {id: $id, libraryTypeId: $t}) { id } }", id=library_id, t=brands["id"])
    assert moved.error_code == "invalid_input" and "Ada" in moved.error_message
    kept = org.client.query("query($id: ID!) { library(id: $id) { libraryTypeId } }", id=library_id).ok()
    assert kept["library"]["libraryTypeId"] == "people"
