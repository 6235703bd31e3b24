"""The shared identifier filter: its validation, and its SQL run by the real PostgreSQL."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

import asyncpg
import pytest

from gateway.errors import InvalidInput
from gateway.services.selection import IdentifierSelection

T0 = datetime(2024, 5, 1, tzinfo=timezone.utc)
ROWS = [  # (name, annotation type, uploaded)
    ("a", "raw", T0),
    ("b", "machine", T0 + timedelta(days=1)),
    ("c", "human", T0 + timedelta(days=2)),
    ("d", "raw", T0 + timedelta(days=3)),
]


def select(stack, selection: IdentifierSelection) -> list[str]:
    where, args = selection.conditions("i", 1)
    values = ", ".join(f"('{n}', '{t}', '{at.isoformat()}'::timestamptz)" for n, t, at in ROWS)
    sql = f"SELECT i.name FROM (VALUES {values}) AS i(name, annotation_type, created_at) WHERE true{where} ORDER BY 1"
    return [r["name"] for r in stack.db.fetch(sql, *args)]


def test_no_filter_selects_everything(stack) -> None:
    assert IdentifierSelection.build().is_empty
    assert select(stack, IdentifierSelection.build()) == ["a", "b", "c", "d"]


def test_annotation_types_and_inclusive_range(stack) -> None:
    assert select(stack, IdentifierSelection.build(["raw", "machine"])) == ["a", "b", "d"]
    assert select(stack, IdentifierSelection.build(None, T0 + timedelta(days=1), T0 + timedelta(days=2))) == ["b", "c"]
    assert select(stack, IdentifierSelection.build(["raw"], T0 + timedelta(hours=1), None)) == ["d"]
    assert select(stack, IdentifierSelection.build(["human"], None, T0)) == []


def test_round_trip_through_a_job_payload(stack) -> None:
    chosen = IdentifierSelection.build(["human", "human", "raw"], T0, T0 + timedelta(days=2))
    assert chosen.annotation_types == ("human", "raw")  # duplicates folded, order kept
    again = IdentifierSelection.from_json(chosen.as_json())
    assert again == chosen
    assert select(stack, again) == ["a", "c"]


@pytest.mark.parametrize(
    ("types", "start", "end", "says"),
    [
        ([], None, None, "at least one"),
        (["raw", "robot"], None, None, "'robot'"),
        (None, T0 + timedelta(days=1), T0, "is after toDateTime"),
    ],
)
def test_bad_filters_are_invalid_input(types, start, end, says) -> None:
    with pytest.raises(InvalidInput) as caught:
        IdentifierSelection.build(types, start, end)
    assert says in str(caught.value)


def test_the_column_defaults_to_human_and_refuses_other_values(stack) -> None:
    row = stack.db.fetch(
        "SELECT column_default, is_nullable FROM information_schema.columns "
        "WHERE table_name = 'entity_identifiers' AND column_name = 'annotation_type'"
    )
    assert row and "'human'" in row[0]["column_default"] and row[0]["is_nullable"] == "NO"
    with pytest.raises(asyncpg.CheckViolationError):
        stack.db.execute(
            "INSERT INTO entity_identifiers (id, org_id, library_id, entity_id, identifier_type_id, storage_key, content_type, annotation_type) "
            "VALUES (gen_random_uuid(), gen_random_uuid(), gen_random_uuid(), gen_random_uuid(), 'face', 'k', 'image/png', 'robot')"
        )
