"""Queries that would fan out to too many objects are refused before they run; ordinary pages pass."""

from graphql import parse

from gateway.schema.extensions.limits import measure


def cost(text: str, **variables: object) -> int:
    return measure(parse(text), None, variables).cost


def test_fragments_are_measured_once_so_a_fragment_fan_out_is_cheap_to_refuse():
    # 31 fragments each spreading the next twice: 2^30 fields once expanded, in a document of ~1 KB.
    fragments = "".join(f"fragment F{i} on Library {{ ...F{i + 1} ...F{i + 1} }}" for i in range(30))
    text = "{ libraries { records { ...F0 } } } " + fragments + " fragment F30 on Library { id }"
    measured = measure(parse(text), None, {})
    assert measured.cost > 2**30
    assert measured.depth == 3


def test_nested_pages_multiply_and_a_missing_limit_counts_the_default_page():
    small = cost("{ libraries(limit: 2) { records { id entities(limit: 3) { records { id } } } } }")
    # libraries(1) + records(2) + id(2) + entities(2) + records(6) + id(6)
    assert small == 1 + 2 + 2 + 2 + 6 + 6
    assert cost("{ libraries { records { id } } }") == 1 + 30 + 30


def test_a_limit_given_as_a_variable_is_used():
    assert cost("query($n: Int) { libraries(limit: $n) { records { id } } }", n=5) == 1 + 5 + 5


def test_a_fan_out_bomb_is_refused_as_capacity_exceeded_and_nothing_runs(org):
    bomb = """{ libraries(limit: 1000) { records { entities(limit: 1000) { records {
        identifiers(limit: 1000) { records { id url } } } } } } }"""
    reply = org.client.query(bomb)
    assert reply.error_code == "capacity_exceeded"
    assert reply.data is None
    assert "smaller pages" in reply.error_message


def test_the_seed_query_with_its_default_limits_is_well_under_the_budget(org):
    library_id = org.create_library()
    reply = org.client.query(
        """query GetIdentifiers($identifierTypeId: ID, $offset: Int = 0, $limit: Int = 25) {
          library(id: "%s") { id name entities(identifierTypeId: $identifierTypeId, offset: $offset, limit: $limit) {
            count records { id name jsondata identifiers(identifierTypeId: $identifierTypeId, limit: $limit) {
              count records { id url jsondata } } } } } }""" % library_id
    )
    assert reply.ok()["library"]["entities"]["count"] == 0
