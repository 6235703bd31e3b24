"""Nested lists under a list of libraries cost a constant number of SQL statements, whatever the count."""

QUERY = """query($n: Int) { libraries(limit: $n, orderBy: name, orderDirection: asc) { count records { name
    entities(limit: 2, orderBy: name, orderDirection: asc) { count totalCount records { name } } } } }"""


def cheapest(org, query: str, n: int):
    """The reply with the fewest SQL statements of three: a pooled connection opened during a request
    adds its own set-up statements."""
    return min((org.client.query(query, n=n) for _ in range(3)), key=lambda r: r.sql_statements)


def test_listing_libraries_with_their_entities_costs_the_same_statements_for_2_or_6_libraries(org):
    for index in range(6):
        library_id = org.create_library(f"lib-{index}")
        for name in ("a", "b", "c")[: index % 3 + 1]:
            org.create_entity(library_id, f"{name}{index}")

    two, six = cheapest(org, QUERY, 2), cheapest(org, QUERY, 6)

    records = six.ok()["libraries"]["records"]
    assert [r["name"] for r in records] == [f"lib-{i}" for i in range(6)]
    assert [r["entities"]["totalCount"] for r in records] == [1, 2, 3, 1, 2, 3]
    assert [r["entities"]["count"] for r in records] == [1, 2, 2, 1, 2, 2]
    assert records[2]["entities"]["records"] == [{"name": "a2"}, {"name": "b2"}]
    assert two.ok()["libraries"]["count"] == 2
    assert two.sql_statements == six.sql_statements


def test_a_page_past_one_librarys_end_still_reports_its_total(org):
    small = org.create_library("small")
    big = org.create_library("big")
    org.create_entity(small, "only")
    for name in ("x", "y", "z"):
        org.create_entity(big, name)

    reply = org.client.query(
        "{ libraries(orderBy: name, orderDirection: asc) { records { name entities(offset: 2) { count totalCount records { name } } } } }"
    ).ok()

    by_name = {r["name"]: r["entities"] for r in reply["libraries"]["records"]}
    assert by_name["big"] == {"count": 1, "totalCount": 3, "records": [{"name": "z"}]}
    assert by_name["small"] == {"count": 0, "totalCount": 1, "records": []}


MODELS_QUERY = """query($n: Int) { libraries(limit: $n, orderBy: name, orderDirection: asc) { records { name
    engineModels(limit: 2) { count totalCount records { id libraryVersion } } } } }"""


def _create_model(org, library_id: str) -> str:
    data = org.client.query(
        "mutation($l: ID!) { createLibraryEngineModel(input: {engineId: \"engineshed-gallery\", libraryId: $l}) { id } }",
        l=library_id,
    ).ok()
    return data["createLibraryEngineModel"]["id"]


def test_listing_libraries_with_their_engine_models_costs_the_same_statements_for_2_or_6_libraries(org):
    created: dict[str, list[str]] = {}
    for index in range(6):
        library_id = org.create_library(f"lib-{index}")
        created[f"lib-{index}"] = [_create_model(org, library_id) for _ in range(index % 3 + 1)]

    two, six = cheapest(org, MODELS_QUERY, 2), cheapest(org, MODELS_QUERY, 6)

    records = six.ok()["libraries"]["records"]
    assert [r["name"] for r in records] == [f"lib-{i}" for i in range(6)]
    assert [r["engineModels"]["totalCount"] for r in records] == [1, 2, 3, 1, 2, 3]
    assert [r["engineModels"]["count"] for r in records] == [1, 2, 2, 1, 2, 2]
    # Newest first, and each library sees only its own models.
    for record in records:
        ids = [m["id"] for m in record["engineModels"]["records"]]
        assert ids == list(reversed(created[record["name"]]))[:2]
    assert two.sql_statements == six.sql_statements


def test_a_page_of_engine_models_past_one_librarys_end_still_reports_its_total(org):
    small = org.create_library("small")
    big = org.create_library("big")
    _create_model(org, small)
    big_models = [_create_model(org, big) for _ in range(3)]

    reply = org.client.query(
        "{ libraries(orderBy: name, orderDirection: asc) { records { name engineModels(offset: 2) { count totalCount records { id } } } } }"
    ).ok()

    by_name = {r["name"]: r["engineModels"] for r in reply["libraries"]["records"]}
    assert by_name["big"] == {"count": 1, "totalCount": 3, "records": [{"id": big_models[0]}]}
    assert by_name["small"] == {"count": 0, "totalCount": 1, "records": []}
