"""Validation cached by shape: documents that differ only in their string literals validate once, yet
every literal is still checked (a DateTime written inline), equal and unequal strings are told apart
where validation cares (overlapping fields), and a shape that failed validation is never taken as valid."""

from __future__ import annotations

import uuid

import pytest
from graphql import GraphQLError

from gateway.schema.extensions.validation_cache import shape_of


def test_the_shape_numbers_strings_by_value_and_keeps_everything_else():
    a = shape_of('{ library(id: "x") { id } other: library(id: "y") { id } again: library(id: "x") { id } }')
    b = shape_of('{ library(id: "p") { id } other: library(id: "q") { id } again: library(id: "p") { id } }')
    assert a == b
    assert a != shape_of('{ library(id: "p") { id } other: library(id: "q") { id } again: library(id: "q") { id } }')
    assert shape_of('{ f(a: "x") }') != shape_of('{ f(a: """x""") }')  # block strings stay block strings
    assert shape_of("{ f(a: 1) }") != shape_of("{ f(a: 2) }")  # numbers are kept
    assert shape_of("{ f(a: ONE) }") != shape_of("{ f(a: TWO) }") != shape_of("{ f(a: null) }")
    assert shape_of('# a "quoted" comment\n{ f }') == shape_of("{ f }")  # the lexer's tokens, not a regex
    with pytest.raises(GraphQLError):
        shape_of('{ f(a: "unterminated) }')


def job_with_start(value: str) -> str:
    return f'mutation {{ createJob(input: {{target: {{name: "n{uuid.uuid4().hex[:6]}", startDateTime: "{value}"}}, tasks: []}}) {{ id }} }}'


def test_a_bad_inline_datetime_is_refused_after_the_same_shape_passed(org):
    first = org.client.query(job_with_start("2024-01-01T00:00:00Z"))
    assert first.status in (200, 400)
    assert not any("date" in (e.get("message") or "") for e in first.errors), first.body
    for _ in range(2):  # cached shape: still checked every time
        bad = org.client.query(job_with_start("not a date"))
        assert bad.status == 400 and bad.data is None, bad.body
        assert bad.error_code == "invalid_input" and "not a date" in bad.error_message


def test_overlapping_fields_with_different_inline_arguments_are_refused_after_equal_ones_passed(org):
    library_id = org.create_library()
    same = org.client.query(f'{{ a: library(id: "{library_id}") {{ id }} a: library(id: "{library_id}") {{ id }} }}')
    assert same.ok()["a"]["id"] == library_id
    other = str(uuid.uuid4())
    differ = org.client.query(f'{{ a: library(id: "{library_id}") {{ id }} a: library(id: "{other}") {{ id }} }}')
    assert differ.status == 400 and differ.error_code == "invalid_input" and "conflict" in differ.error_message, differ.body


def test_a_shape_that_failed_validation_is_validated_in_full_again(org):
    bad = org.client.query('{ library(id: "x") { noSuchField } }')
    assert bad.status == 400 and "noSuchField" in bad.error_message
    again = org.client.query('{ library(id: "y") { noSuchField } }')
    assert again.status == 400 and "noSuchField" in again.error_message
    # and an identical text answers the same, from the exact-text cache
    assert org.client.query('{ library(id: "y") { noSuchField } }').body == again.body
