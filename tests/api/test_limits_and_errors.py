"""Limits are refused out loud, and every error is a clean, coded reply: never a stack trace, never a 5xx."""

from __future__ import annotations

import json

import httpx
import pytest

from tests.api.conftest import assert_clean_error_text


def raw_post(org, **kwargs) -> httpx.Response:
    headers = {"Authorization": f"Bearer {org.token}", **kwargs.pop("headers", {})}
    return httpx.post(org.client.url, headers=headers, timeout=30, **kwargs)


def assert_refused(response: httpx.Response, status: int, code: str = "invalid_input") -> dict:
    assert response.status_code == status, response.text
    body = response.json()
    assert body["errors"], body
    assert body["errors"][0]["extensions"]["code"] == code
    assert body["errors"][0]["name"] == code
    assert_clean_error_text(body)
    return body


class TestPaging:
    @pytest.fixture
    def entity(self, org):
        return org.create_entity(org.create_library(), "Ada")

    def page_queries(self, entity_id, library_id):
        return {
            "libraries": "query($o: Int, $l: Int) { libraries(offset: $o, limit: $l) { count } }",
            "entities": f'query($o: Int, $l: Int) {{ entities(libraryIds: "{library_id}", offset: $o, limit: $l) {{ count }} }}',
            "library.entities": f'query($o: Int, $l: Int) {{ library(id: "{library_id}") {{ entities(offset: $o, limit: $l) {{ count }} }} }}',
            "entity.identifiers": f'query($o: Int, $l: Int) {{ entity(id: "{entity_id}") {{ identifiers(offset: $o, limit: $l) {{ count }} }} }}',
            "libraryTypes": "query($o: Int, $l: Int) { libraryTypes(offset: $o, limit: $l) { count } }",
            "entityIdentifierTypes": "query($o: Int, $l: Int) { entityIdentifierTypes(offset: $o, limit: $l) { count } }",
        }

    def test_a_limit_above_1000_is_invalid_input_not_a_silent_cap(self, org, entity):
        library_id = org.client.query(f'query {{ entity(id: "{entity}") {{ libraryId }} }}').ok()["entity"]["libraryId"]
        for name, query in self.page_queries(entity, library_id).items():
            reply = org.client.query(query, o=0, l=1001)
            assert reply.error_code == "invalid_input", name
            assert "1000" in reply.error_message, name
            assert org.client.query(query, o=0, l=1000).errors == [], name

    def test_a_negative_offset_or_limit_is_invalid_input(self, org, entity):
        library_id = org.client.query(f'query {{ entity(id: "{entity}") {{ libraryId }} }}').ok()["entity"]["libraryId"]
        for name, query in self.page_queries(entity, library_id).items():
            assert org.client.query(query, o=-1, l=10).error_code == "invalid_input", name
            assert org.client.query(query, o=0, l=-5).error_code == "invalid_input", name

    def test_a_null_offset_and_limit_mean_the_defaults(self, org):
        page = org.client.query("query { libraries(offset: null, limit: null) { offset limit } }").ok()["libraries"]
        assert page == {"offset": 0, "limit": 30}


class TestQueryShapeLimits:
    def test_a_deeply_nested_query_is_refused_with_a_clear_error(self, org):
        inner = "id"
        for _ in range(10):
            inner = f"library {{ entities {{ records {{ {inner} }} }} }}"
        query = f'query {{ entity(id: "00000000-0000-0000-0000-000000000001") {{ {inner} }} }}'
        body = assert_refused(raw_post(org, json={"query": query}), 400)
        assert "depth" in body["errors"][0]["message"].lower()

    def test_an_alias_bomb_is_refused_with_a_clear_error(self, org):
        query = "query { " + " ".join(f"a{i}: libraries {{ count }}" for i in range(200)) + " }"
        body = assert_refused(raw_post(org, json={"query": query}), 400)
        assert "alias" in body["errors"][0]["message"].lower()

    def test_a_query_with_a_huge_token_count_is_refused_with_a_clear_error(self, org):
        query = "query { " + "__typename " * 20_000 + "}"
        body = assert_refused(raw_post(org, json={"query": query}), 400)
        assert "token" in body["errors"][0]["message"].lower()

    def test_a_query_within_the_limits_still_runs(self, org):
        query = "query { " + " ".join(f"a{i}: libraries {{ count }}" for i in range(20)) + " }"
        assert raw_post(org, json={"query": query}).status_code == 200


class TestMalformedRequests:
    def test_variables_that_are_not_valid_json_are_400(self, org):
        response = raw_post(org, json={"query": "query($n: String) { libraries(name: $n) { count } }", "variables": "{not json"})
        body = assert_refused(response, 400)
        assert "variables" in body["errors"][0]["message"]

    def test_variables_given_as_a_json_string_are_accepted(self, org):
        response = raw_post(org, json={"query": "query($n: String) { libraries(name: $n) { count } }", "variables": '{"n": "x"}'})
        assert response.status_code == 200 and response.json()["data"] == {"libraries": {"count": 0}}

    def test_json_nested_too_deeply_is_400_not_a_server_error(self, org):
        query = "query($v: JSONData) { __typename }"
        deep = "[" * 50_000 + "]" * 50_000
        body = f'{{"query": "{query}", "variables": {{"v": {deep}}}}}'.encode()
        response = raw_post(org, content=body, headers={"Content-Type": "application/json"})
        assert "nested too deeply" in assert_refused(response, 400)["errors"][0]["message"]
        as_string = raw_post(org, json={"query": "{ __typename }", "variables": "[" * 50_000})
        assert_refused(as_string, 400)
        via_get = httpx.get(org.client.url, params={"query": "{ __typename }", "variables": "[" * 20_000},
                            headers={"Authorization": f"Bearer {org.token}"}, timeout=30)
        assert_refused(via_get, 400)

    def test_jsondata_nested_a_few_hundred_levels_is_stored_as_sent(self, org):
        library_id = org.create_library()
        nested: object = 1
        for _ in range(300):
            nested = [nested]
        reply = org.client.query(
            "mutation($l: ID!, $j: JSONData) { createEntity(input: {libraryId: $l, name: \"deep\", jsondata: $j}) { jsondata } }",
            l=library_id, j=nested,
        )
        assert reply.ok()["createEntity"]["jsondata"] == nested

    def test_variables_that_are_not_an_object_are_400(self, org):
        assert_refused(raw_post(org, json={"query": "query { libraries { count } }", "variables": [1, 2]}), 400)

    def test_a_body_that_is_not_json_is_400(self, org):
        assert_refused(raw_post(org, content=b"{query: oops", headers={"Content-Type": "application/json"}), 400)

    def test_a_request_without_a_query_is_400(self, org):
        assert_refused(raw_post(org, json={"variables": {}}), 400)
        assert_refused(raw_post(org, json={"query": "   "}), 400)

    def test_a_batch_of_operations_is_400(self, org):
        assert_refused(raw_post(org, json=[{"query": "{ libraries { count } }"}]), 400)

    def test_an_unsupported_content_type_is_415(self, org):
        assert_refused(raw_post(org, content=b"<q/>", headers={"Content-Type": "application/xml"}), 415)

    def test_a_syntax_error_is_400_invalid_input(self, org):
        body = assert_refused(raw_post(org, json={"query": "query { libraries { count "}), 400)
        assert "Syntax Error" in body["errors"][0]["message"]

    def test_an_unknown_field_is_a_validation_error_with_code_invalid_input(self, org):
        body = assert_refused(raw_post(org, json={"query": "query { libraries { count shoeSize } }"}), 400)
        assert "shoeSize" in body["errors"][0]["message"]
        assert body["data"] is None

    def test_an_unknown_argument_and_a_wrongly_typed_variable_are_invalid_input(self, org):
        assert_refused(raw_post(org, json={"query": "query { libraries(colour: \"red\") { count } }"}), 400)
        response = raw_post(org, json={"query": "query($l: Int) { libraries(limit: $l) { count } }", "variables": {"l": "ten"}})
        assert_refused(response, 400)

    def test_jsondata_that_is_not_valid_json_text_is_invalid_input(self, org):
        library_id = org.create_library()
        reply = org.client.query(
            "mutation($l: ID!, $j: JSONData) { createEntity(input: {libraryId: $l, name: \"x\", jsondata: $j}) { id } }",
            l=library_id, j="{not json",
        )
        assert reply.error_code == "invalid_input"
        assert_clean_error_text(reply.body)

    @pytest.mark.parametrize("name", ["a\u0000b", "\ud800"])
    def test_text_postgresql_cannot_store_is_invalid_input_and_nothing_is_created(self, org, name):
        raw = json.dumps({"query": "mutation($n: String!) { createLibrary(input: {name: $n, libraryTypeId: \"people\"}) { id } }",
                          "variables": {"n": name}}).encode()  # json.dumps writes \u0000 and the lone \ud800 as escapes
        before = org.client.query("query { libraries { count } }").ok()["libraries"]["count"]
        response = raw_post(org, content=raw, headers={"Content-Type": "application/json"})
        assert response.status_code == 200
        (error,) = response.json()["errors"]
        assert error["extensions"]["code"] == "invalid_input" and "cannot be stored" in error["message"]
        assert_clean_error_text(response.json())
        assert org.client.query("query { libraries { count } }").ok()["libraries"]["count"] == before

    def test_an_unknown_operation_name_is_invalid_input(self, org):
        response = raw_post(org, json={"query": "query A { libraries { count } }", "operationName": "B"})
        assert_refused(response, 400)

    def test_several_operations_without_an_operation_name_run_none_of_them(self, org):
        document = 'query A { libraries { count } } mutation B { createLibrary(input: {name: "b", libraryTypeId: "people"}) { id } }'
        response = raw_post(org, json={"query": document})
        assert_refused(response, 400)
        assert "operationName" in response.json()["errors"][0]["message"]
        assert org.client.query("query { libraries { count } }").ok()["libraries"]["count"] == 0
        # Naming one runs exactly that one.
        named = raw_post(org, json={"query": document, "operationName": "B"})
        assert named.status_code == 200 and named.json()["data"]["createLibrary"]["id"]
        assert raw_post(org, json={"query": document, "operationName": "A"}).json()["data"] == {"libraries": {"count": 1}}


class TestGet:
    def test_a_query_may_be_sent_with_get(self, org):
        reply = org.client.get("query($n: String) { libraries(name: $n) { count } }", n="x")
        assert reply.status == 200
        assert reply.data == {"libraries": {"count": 0}}

    def test_a_mutation_sent_with_get_is_refused_and_changes_nothing(self, org):
        reply = org.client.get('mutation { createLibrary(input: {name: "via get", libraryTypeId: "people"}) { id } }')
        assert reply.status == 405
        assert reply.error_code == "not_allowed"
        assert_clean_error_text(reply.body)
        assert org.client.query("query { libraries { count } }").ok()["libraries"]["count"] == 0

    def test_get_without_a_query_is_400_for_api_clients(self, org):
        response = httpx.get(org.client.url, headers={"Authorization": f"Bearer {org.token}", "Accept": "application/json"}, timeout=30)
        assert_refused(response, 400)


def test_error_replies_never_carry_a_traceback_or_a_server_path(org):
    library_id = org.create_library()
    replies = [
        org.client.query("query { library(id: \"nope\") { id } }"),
        org.client.query("query { entities { count } }"),
        org.client.query(f'mutation {{ createEntity(input: {{libraryId: "{library_id}", name: ""}}) {{ id }} }}'),
        org.client.query("mutation($i: CreateLibrary!) { createLibrary(input: $i) { id } }", i={"name": "x"}),
        org.client.query("query { libraries(limit: 99999) { count } }"),
        org.client.query("{ __schema { queryType { name } } nonsense }"),
    ]
    for reply in replies:
        assert reply.errors, reply.body
        assert reply.status < 500
        assert_clean_error_text(reply.body)
