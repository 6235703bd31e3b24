"""The engine developers' GetIdentifiers query, as published, over identifiers uploaded both multipart ways."""

from __future__ import annotations

import httpx
import pytest

from sampledata.published import GET_IDENTIFIERS, PUBLISHED_LIBRARY_ID
from tests.api.conftest import random_bytes

SPEC_MUTATION = "mutation($input: CreateEntityIdentifier!) { createEntityIdentifier(input: $input) { id } }"


def get_identifiers(org, library_id: str, **variables):
    return org.client.query(GET_IDENTIFIERS.replace(PUBLISHED_LIBRARY_ID, library_id), **variables)


def upload_plain(org, entity_id: str, data: bytes, type_id: str = "face", jsondata: str = "{}") -> str:
    reply = org.client.upload_form(
        f'mutation {{ createEntityIdentifier(input: {{entityId: "{entity_id}", identifierTypeId: "{type_id}", jsondata: {jsondata}}}) {{ id }} }}',
        data, "image/jpeg", filename="face.jpg",
    )
    return reply.ok()["createEntityIdentifier"]["id"]


def upload_spec(org, entity_id: str, data: bytes, type_id: str = "face", jsondata: dict | None = None) -> str:
    reply = org.client.upload_spec(
        SPEC_MUTATION,
        {"input": {"entityId": entity_id, "identifierTypeId": type_id, "jsondata": jsondata, "file": None}},
        {"input.file": (data, "image/png")},
    )
    return reply.ok()["createEntityIdentifier"]["id"]


@pytest.fixture
def training_library(org):
    """Three people with two faces (one per multipart style) and an image each, and one with only an image."""
    library_id = org.create_library("Rock Stars")
    people = {}
    for name in ("Ada", "Grace", "Linus"):
        entity_id = org.create_entity(library_id, name, jsondata={"who": name})
        faces = {}
        plain_bytes, spec_bytes = random_bytes(1500), random_bytes(1700)
        faces[upload_plain(org, entity_id, plain_bytes, jsondata=f'{{pose: "front", who: "{name}"}}')] = (plain_bytes, {"pose": "front", "who": name})
        faces[upload_spec(org, entity_id, spec_bytes, jsondata={"pose": "side"})] = (spec_bytes, {"pose": "side"})
        image_id = upload_spec(org, entity_id, random_bytes(900), type_id="image")
        people[name] = {"id": entity_id, "faces": faces, "image": image_id}
    no_face = org.create_entity(library_id, "Faceless")
    upload_plain(org, no_face, random_bytes(800), type_id="image")
    return library_id, people, no_face


def test_get_identifiers_returns_each_entity_with_its_faces_that_serve_the_uploaded_bytes(org, training_library):
    library_id, people, _ = training_library
    data = get_identifiers(org, library_id, identifierTypeId="face").ok()
    library = data["library"]
    assert library["id"] == library_id and library["name"] == "Rock Stars"
    entities = library["entities"]
    assert entities["count"] == 3  # the image-only entity has no face
    assert [r["name"] for r in entities["records"]] == ["Ada", "Grace", "Linus"]
    for record in entities["records"]:
        person = people[record["name"]]
        assert record["id"] == person["id"]
        assert record["jsondata"] == {"who": record["name"]}
        identifiers = record["identifiers"]
        assert identifiers["count"] == 2
        assert {r["id"] for r in identifiers["records"]} == set(person["faces"])
        for identifier in identifiers["records"]:
            expected_bytes, expected_json = person["faces"][identifier["id"]]
            assert identifier["jsondata"] == expected_json
            assert httpx.get(identifier["url"], timeout=30).content == expected_bytes


def test_get_identifiers_without_a_type_returns_every_entity_and_identifier(org, training_library):
    library_id, people, no_face = training_library
    entities = get_identifiers(org, library_id, identifierTypeId=None).ok()["library"]["entities"]
    assert entities["count"] == 4
    counts = {r["name"]: r["identifiers"]["count"] for r in entities["records"]}
    assert counts == {"Ada": 3, "Grace": 3, "Linus": 3, "Faceless": 1}


def test_get_identifiers_uses_its_variable_defaults_when_none_are_sent(org, training_library):
    library_id, _, _ = training_library
    entities = get_identifiers(org, library_id).ok()["library"]["entities"]
    assert entities["count"] == 4


def test_get_identifiers_pages_until_a_short_page(org, training_library):
    library_id, people, _ = training_library
    seen, offset, counts = [], 0, []
    while True:
        page = get_identifiers(org, library_id, identifierTypeId="face", offset=offset, limit=2).ok()["library"]["entities"]
        counts.append(page["count"])
        seen += [r["name"] for r in page["records"]]
        for record in page["records"]:
            assert record["identifiers"]["count"] == 2  # limit 2 applies to identifiers too
        if page["count"] < 2:
            break
        offset += 2
    assert counts == [2, 1]
    assert seen == ["Ada", "Grace", "Linus"]


def test_get_identifiers_limits_the_identifiers_of_each_entity_too(org, training_library):
    library_id, _, _ = training_library
    page = get_identifiers(org, library_id, identifierTypeId=None, limit=1).ok()["library"]["entities"]
    assert page["count"] == 1
    assert page["records"][0]["identifiers"]["count"] == 1


def test_get_identifiers_for_another_organizations_library_is_not_found(other_org, training_library):
    library_id, _, _ = training_library
    reply = get_identifiers(other_org, library_id, identifierTypeId="face")
    assert reply.error_code == "not_found"
    assert reply.data == {"library": None}


class TestSqlCostIsConstantInPageSize:
    def fill(self, org, library_id: str, entities: int) -> None:
        for i in range(entities):
            entity_id = org.create_entity(library_id, f"person {i:02d}")
            upload_plain(org, entity_id, random_bytes(100))
            upload_spec(org, entity_id, random_bytes(100))
            upload_plain(org, entity_id, random_bytes(100), type_id="image")

    def test_a_page_of_30_entities_with_3_identifiers_each_costs_what_a_page_of_5_costs(self, org):
        small = org.create_library("small")
        large = org.create_library("large")
        self.fill(org, small, 5)
        self.fill(org, large, 30)

        small_reply = get_identifiers(org, small, identifierTypeId=None, limit=30)
        large_reply = get_identifiers(org, large, identifierTypeId=None, limit=30)
        small_page = small_reply.ok()["library"]["entities"]
        large_page = large_reply.ok()["library"]["entities"]
        assert small_page["count"] == 5 and large_page["count"] == 30
        assert all(r["identifiers"]["count"] == 3 for r in large_page["records"])

        assert small_reply.sql_statements is not None
        assert large_reply.sql_statements == small_reply.sql_statements
        assert large_reply.sql_statements < 30  # not one query per entity

    def test_filtering_by_type_and_a_short_last_page_keep_the_cost_constant(self, org):
        small = org.create_library("small")
        large = org.create_library("large")
        self.fill(org, small, 3)
        self.fill(org, large, 12)
        first_small = get_identifiers(org, small, identifierTypeId="face", offset=0, limit=10)
        first_large = get_identifiers(org, large, identifierTypeId="face", offset=0, limit=10)
        last_large = get_identifiers(org, large, identifierTypeId="face", offset=10, limit=10)
        assert first_small.ok()["library"]["entities"]["count"] == 3
        assert first_large.ok()["library"]["entities"]["count"] == 10
        assert last_large.ok()["library"]["entities"]["count"] == 2
        assert first_small.sql_statements == first_large.sql_statements == last_large.sql_statements
