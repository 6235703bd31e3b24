"""Nested lists under a list of libraries cost a constant number of SQL statements, whatever the count."""

QUERY = """query($n: Int) { libraries(limit: $n, orderBy: name, orderDirection: asc) { count records { name
    entities(limit: 2, orderBy: name, orderDirection: asc) { count totalCount records { name } } } } }"""


def test_listing_libraries_with_their_entities_costs_the_same_statements_for_2_or_6_libraries(org):
    for index in range(6):
        library_id = org.create_library(f"lib-{index}")
        for name in ("a", "b", "c")[: index % 3 + 1]:
            org.create_entity(library_id, f"{name}{index}")

    # A pooled connection opened during a request adds its own set-up statements: take the least of three.
    two = min((org.client.query(QUERY, n=2) for _ in range(3)), key=lambda r: r.sql_statements)
    six = min((org.client.query(QUERY, n=6) for _ in range(3)), key=lambda r: r.sql_statements)

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
