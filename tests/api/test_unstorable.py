"""Which database errors are the client's value (invalid_input) and which are ours (internal_error, logged)."""

from __future__ import annotations

import asyncpg
from asyncpg.exceptions import _base

from gateway.errors import unstorable


def _encoding_error(message: str, cause: BaseException) -> asyncpg.DataError:
    error = asyncpg.DataError(message)
    error.__cause__ = cause
    return error


def test_characters_and_ranges_a_client_sent_are_invalid_input():
    assert "characters" in unstorable(asyncpg.CharacterNotInRepertoireError("nul")).message
    assert "out of range" in unstorable(asyncpg.NumericValueOutOfRangeError("x")).message
    surrogate = _encoding_error("invalid input for query argument $1: '\\ud800' ('utf-8' codec can't encode ...)",
                                UnicodeEncodeError("utf-8", "\ud800", 0, 1, "surrogates not allowed"))
    assert "characters" in unstorable(surrogate).message
    too_big = _base.DataError("invalid input for query argument $2: 9223372036854775808 (value out of int64 range)")
    assert "out of range" in unstorable(too_big).message


def test_other_data_errors_are_bugs_of_ours_and_stay_internal():
    assert unstorable(asyncpg.DivisionByZeroError("division by zero")) is None
    assert unstorable(asyncpg.InvalidRegularExpressionError("bad regex")) is None
    wrong_type = _encoding_error("invalid input for query argument $1: 'a' (an integer is required (got type str))",
                                 TypeError("an integer is required"))
    assert unstorable(wrong_type) is None
    assert unstorable(ValueError("not a database error")) is None
