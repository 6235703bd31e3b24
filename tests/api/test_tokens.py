"""Tokens managed over the API by an organization's admins: createToken, tokens, revokeToken."""

from __future__ import annotations

import uuid
from pathlib import Path

import pytest

from tests.conftest import Org, Stack, start_gateway
from tests.graphql_client import GraphQLClient

TOKEN_FIELDS = "id label scope engineId createdDateTime revokedDateTime revoked applicationId groupId json { rights }"
CREATE = f"mutation($i: CreateToken!) {{ createToken(input: $i) {{ token {TOKEN_FIELDS} }} }}"
LIST = f"query($o: Int, $l: Int) {{ tokens(offset: $o, limit: $l) {{ {TOKEN_FIELDS} }} }}"
REVOKE = f"mutation($id: ID!) {{ revokeToken(id: $id) {{ {TOKEN_FIELDS} }} }}"
LIBRARIES = "{ libraries { count } }"


def create(org: Org, **input: object) -> dict:
    return org.client.query(CREATE, i=input).ok()["createToken"]


def external_engine(org: Org) -> str:
    engine_id = f"tok-{uuid.uuid4().hex[:10]}"
    org.client.query(
        'mutation($id: ID!) { createEngine(input: {id: $id, identifierTypeIds: ["face"], modes: ["library-train"]}) { id } }',
        id=engine_id,
    ).ok()
    return engine_id


def token_rows(stack: Stack, org: Org) -> int:
    return stack.db.fetchval("SELECT count(*) FROM api_tokens WHERE org_id = $1", org.id)


def test_an_admin_creates_tokens_of_each_scope_and_each_works_for_what_it_allows(org: Org) -> None:
    engine_id = external_engine(org)
    read = create(org, scope="read", label="dashboard")
    admin = create(org, scope="admin")
    engine = create(org, scope="engine", engineId=engine_id, label="  my engine  ")
    assert read["token"].startswith("es_") and len({read["token"], admin["token"], engine["token"]}) == 3
    assert {k: read[k] for k in ("label", "scope", "engineId", "revoked", "revokedDateTime", "json")} == {
        "label": "dashboard", "scope": "read", "engineId": None, "revoked": False, "revokedDateTime": None,
        "json": {"rights": ["read"]},
    }
    assert (engine["scope"], engine["engineId"], engine["label"]) == ("engine", engine_id, "my engine")

    reader = org.client.with_token(read["token"])
    assert reader.query(LIBRARIES).errors == []
    assert reader.query('mutation { createLibrary(input: {name: "x", libraryTypeId: "people"}) { id } }').error_code == "not_allowed"
    assert org.client.with_token(admin["token"]).query('mutation { createLibrary(input: {name: "x", libraryTypeId: "people"}) { id } }').errors == []
    claimer = org.client.with_token(engine["token"])
    assert claimer.query("mutation($e: ID!) { claimTasks(engineId: $e) { token } }", e=engine_id).ok() == {"claimTasks": []}
    for client in (reader, claimer):
        client.close()


def test_the_list_shows_every_token_of_the_organization_and_never_a_secret(org: Org, other_org: Org) -> None:
    made = [create(org, scope="read", label=f"r{i}") for i in range(3)]
    other_org.client.query(CREATE, i={"scope": "read", "label": "theirs"}).ok()
    reply = org.client.query(LIST)
    listed = reply.ok()["tokens"]
    # The organization's first admin token (the fixture's), then these, oldest first; nothing of the other org.
    assert [t["label"] for t in listed] == [None, "r0", "r1", "r2"]
    assert [t["id"] for t in listed[1:]] == [m["id"] for m in made]
    assert listed[0]["scope"] == "admin"
    for secret in [m["token"] for m in made] + [org.token]:
        assert secret not in str(reply.body)
    assert [t["label"] for t in org.client.query(LIST, o=1, l=2).ok()["tokens"]] == ["r0", "r1"]
    assert org.client.query(LIST, l=1001).error_code == "invalid_input"
    assert org.client.query(LIST, o=-1).error_code == "invalid_input"


def test_a_revoked_token_is_refused_at_once_by_every_gateway_process(org: Org, stack: Stack, tmp_path: Path) -> None:
    second = start_gateway(stack.env, tmp_path, "gateway-b")
    try:
        made = create(org, scope="read", label="to revoke")
        here, there = org.client.with_token(made["token"]), GraphQLClient(second.url, made["token"])
        assert here.query(LIBRARIES).errors == [] and there.query(LIBRARIES).errors == []
        revoked = org.client.query(REVOKE, id=made["id"]).ok()["revokeToken"]
        assert revoked["revoked"] is True and revoked["revokedDateTime"] and revoked["id"] == made["id"]
        for client in (here, there):
            reply = client.query(LIBRARIES)
            assert (reply.status, reply.error_code) == (401, "authentication_error")
            client.close()
        listed = {t["id"]: t for t in org.client.query(LIST).ok()["tokens"]}
        assert listed[made["id"]]["revoked"] is True
    finally:
        second.process.stop()


def test_revoking_twice_answers_the_token_unchanged(org: Org) -> None:
    made = create(org, scope="read")
    first = org.client.query(REVOKE, id=made["id"]).ok()["revokeToken"]
    again = org.client.query(REVOKE, id=made["id"]).ok()["revokeToken"]
    assert again == first  # the first revocation's time stays


def test_an_admin_may_revoke_its_own_token(org: Org) -> None:
    me = next(t for t in org.client.query(LIST).ok()["tokens"] if t["scope"] == "admin")
    assert org.client.query(REVOKE, id=me["id"]).ok()["revokeToken"]["revoked"] is True
    assert org.client.query(LIBRARIES).error_code == "authentication_error"


@pytest.mark.parametrize("made_up", [str(uuid.uuid4()), "not-a-uuid", "", "x" * 300])
def test_an_unknown_token_id_is_not_found(org: Org, made_up: str) -> None:
    reply = org.client.query(REVOKE, id=made_up)
    assert reply.error_code == "not_found" and reply.data is None


def test_another_organizations_token_is_not_found_exactly_like_a_made_up_one(org: Org, other_org: Org) -> None:
    theirs = other_org.client.query(CREATE, i={"scope": "read"}).ok()["createToken"]
    real = org.client.query(REVOKE, id=theirs["id"])
    fake = org.client.query(REVOKE, id=str(uuid.uuid4()))
    assert real.error_code == fake.error_code == "not_found" and real.error_message == fake.error_message
    assert org.client.with_token(theirs["token"]).query(LIBRARIES).errors == []  # still works


def test_task_tokens_are_neither_listed_nor_revocable(org: Org, stack: Stack) -> None:
    task_token_id = stack.db.fetchval(
        "INSERT INTO api_tokens (id, org_id, token_hash, scope, engine_id, task_id) VALUES ($1, $2, $3, 'task', 'e', $4) RETURNING id",
        uuid.uuid4(), org.id, uuid.uuid4().bytes, uuid.uuid4(),
    )
    assert all(t["scope"] != "task" for t in org.client.query(LIST).ok()["tokens"])
    assert org.client.query(REVOKE, id=str(task_token_id)).error_code == "not_found"


def test_only_admin_tokens_manage_tokens(org: Org, stack: Stack) -> None:
    engine_id = external_engine(org)
    victim = create(org, scope="read")
    before = token_rows(stack, org)
    for scope, engine in (("read", None), ("engine", engine_id)):
        client = org.client_for(scope, engine)
        for document, variables in (
            (LIST, {}),
            (CREATE, {"i": {"scope": "admin"}}),
            (REVOKE, {"id": victim["id"]}),
        ):
            reply = client.query(document, **variables)
            assert reply.error_code == "not_allowed", (scope, document, reply.body)
            assert "needs an admin token" in reply.error_message
    assert token_rows(stack, org) == before + 2  # the two clients' own tokens, nothing else
    assert org.client.with_token(victim["token"]).query(LIBRARIES).errors == []


@pytest.mark.parametrize(
    ("input", "code", "message"),
    [
        ({"scope": "engine"}, "invalid_input", "an engine token needs engineId"),
        ({"scope": "engine", "engineId": "  "}, "invalid_input", "an engine token needs engineId"),
        ({"scope": "read", "engineId": "some-engine"}, "invalid_input", "engineId is only for engine tokens"),
        ({"scope": "admin", "label": "x" * 201}, "invalid_input", "at most 200 characters"),
        ({"scope": "engine", "engineId": "no-such-engine"}, "not_found", None),
        ({"scope": "engine", "engineId": "engineshed-gallery"}, "invalid_input", "is a built-in engine"),
    ],
)
def test_bad_input_is_refused_and_creates_nothing(org: Org, stack: Stack, input: dict, code: str, message: str | None) -> None:
    before = token_rows(stack, org)
    reply = org.client.query(CREATE, i=input)
    assert reply.error_code == code, reply.body
    if message:
        assert message in reply.error_message
    assert reply.data is None
    assert token_rows(stack, org) == before


@pytest.mark.parametrize("scope", ["owner", "task", "ADMIN", ""])
def test_a_scope_outside_admin_read_engine_is_invalid_input(org: Org, stack: Stack, scope: str) -> None:
    before = token_rows(stack, org)
    reply = org.client.query(CREATE, i={"scope": scope})
    assert reply.status == 400 and reply.error_code == "invalid_input", reply.body
    inline = org.client.query(f"mutation {{ createToken(input: {{scope: {scope or 'null'}}}) {{ id }} }}")
    assert inline.status == 400 and inline.error_code == "invalid_input", inline.body
    assert token_rows(stack, org) == before


def test_another_organizations_engine_is_not_found_for_an_engine_token(org: Org, other_org: Org, stack: Stack) -> None:
    theirs = external_engine(other_org)
    before = token_rows(stack, org)
    reply = org.client.query(CREATE, i={"scope": "engine", "engineId": theirs})
    fake = org.client.query(CREATE, i={"scope": "engine", "engineId": "made-up-engine"})
    assert reply.error_code == fake.error_code == "not_found" and reply.error_message == fake.error_message
    assert token_rows(stack, org) == before
