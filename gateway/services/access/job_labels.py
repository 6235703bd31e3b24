"""User labels on jobs and models.

Keys and values are at most 64 characters of lowercase ASCII letters, digits, ``_`` and ``-``; a key starts
with a letter (an empty value is allowed, an empty key is not); at most 64 labels. International characters are
refused, so that labels stay plain in URLs, filters and logs.
Each violation is invalid_input naming the label.
"""

from __future__ import annotations

import re
from typing import Any

from gateway.errors import InvalidInput

MAX_LABELS = 64
MAX_LENGTH = 64
_KEY = re.compile(r"[a-z][a-z0-9_-]*")
_VALUE = re.compile(r"[a-z0-9_-]*")


def check_labels(raw: Any, *, field: str = "labels") -> dict[str, str]:
    """The labels as a ``{str: str}`` dict (None: ``{}``), or invalid_input naming the first bad one."""
    if raw is None:
        return {}
    if not isinstance(raw, dict):
        raise InvalidInput(f"{field} must be a JSON object of string keys and string values")
    if len(raw) > MAX_LABELS:
        raise InvalidInput(f"{field}: at most {MAX_LABELS} labels, got {len(raw)}")
    for key, value in raw.items():
        shown = repr(key[:80]) if isinstance(key, str) else repr(key)
        if not isinstance(key, str) or not key:
            raise InvalidInput(f"{field}: label key {shown} must be a non-empty string")
        if len(key) > MAX_LENGTH:
            raise InvalidInput(f"{field}: label key {shown} is longer than {MAX_LENGTH} characters")
        if not _KEY.fullmatch(key):
            raise InvalidInput(
                f"{field}: label key {shown} must start with a lowercase letter and hold only lowercase letters, "
                "digits, '_' and '-'"
            )
        if not isinstance(value, str):
            raise InvalidInput(f"{field}: the value of label {shown} must be a string")
        if len(value) > MAX_LENGTH:
            raise InvalidInput(f"{field}: the value of label {shown} is longer than {MAX_LENGTH} characters")
        if not _VALUE.fullmatch(value):
            raise InvalidInput(f"{field}: the value of label {shown} may hold only lowercase letters, digits, '_' and '-'")
    return dict(raw)


def check_filter(raw: Any) -> dict[str, str] | None:
    """A label filter (every given pair must match): the same rules, None when not given."""
    if raw is None:
        return None
    return check_labels(raw, field="labels filter")
