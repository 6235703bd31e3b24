"""Validation cached by the document's shape, so that a query with its IDs written inline validates once.

curl users write their IDs into the query text (``createEntityIdentifier(input: {entityId: "…"})``): every
upload is a new text, so a cache keyed by the text (Strawberry's ValidationCache) never hits, and full
validation was a quarter of the gateway's CPU per upload (py-spy, ``make bench`` scenario 0).

The key is the document's token stream with every string literal replaced by a placeholder numbered by
first appearance of its (kind, value), so equal strings stay equal (OverlappingFieldsCanBeMerged compares
argument values) and everything else (names, numbers, enums, nulls, structure) is kept. Of the rules,
only ValuesOfCorrectType reads a string's content (a custom scalar's ``parse_literal``: a DateTime, a
JSONData); it runs on every request whose shape is known valid. Shapes that failed are not cached: their
requests get full validation, with its exact messages. An exact-text cache sits in front, as before.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from cachetools import LRUCache
from graphql import GraphQLError, validate
from graphql.language import Lexer, Source, TokenKind
from graphql.validation import ValuesOfCorrectTypeRule
from strawberry.extensions import SchemaExtension
from strawberry.schema.schema import validate_document

_STRINGS = (TokenKind.STRING, TokenKind.BLOCK_STRING)


def shape_of(text: str) -> str:
    """The token stream with string literals numbered by their (kind, value); GraphQLError if it does not lex."""
    lexer = Lexer(Source(text))
    seen: dict[tuple[TokenKind, str], int] = {}
    out: list[str] = []
    token = lexer.advance()
    while token.kind != TokenKind.EOF:
        if token.kind in _STRINGS:
            out.append("\0%s%d" % (token.kind.value, seen.setdefault((token.kind, token.value), len(seen))))
        elif token.value is not None:
            out.append(token.value)
        else:
            out.append(token.kind.value)
        token = lexer.advance()
    return " ".join(out)


class ShapeValidationCache(SchemaExtension):
    """Use as a factory (``lambda: ShapeValidationCache(caches)``); ``caches`` are shared by every request."""

    def __init__(self, caches: tuple[LRUCache[Any, Any], LRUCache[Any, Any]]) -> None:
        super().__init__()
        self._texts, self._shapes = caches

    @staticmethod
    def caches(maxsize: int) -> tuple[LRUCache[Any, Any], LRUCache[Any, Any]]:
        return LRUCache(maxsize), LRUCache(maxsize)

    def on_validate(self) -> Iterator[None]:
        context = self.execution_context
        schema, document, rules = context.schema._schema, context.graphql_document, tuple(context.validation_rules)
        text = context.query
        errors: list[GraphQLError] | None = None
        if text is not None and document is not None:
            errors = self._texts.get((text, rules))
            if errors is None:
                try:
                    shape = shape_of(text)
                except GraphQLError:
                    shape = None
                if shape is not None and self._shapes.get((shape, rules)):
                    errors = validate(schema, document, [ValuesOfCorrectTypeRule])
                else:
                    errors = validate_document(schema, document, rules)
                    if not errors and shape is not None:
                        self._shapes[(shape, rules)] = True
                self._texts[(text, rules)] = errors
        if errors is None:
            errors = validate_document(schema, document, rules)
        context.pre_execution_errors = errors
        yield
