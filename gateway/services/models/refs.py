"""Model names, aliases, references (``name``, ``name@3``, ``name@alias``) and key/value labels: the
text rules every registry operation applies before it touches storage."""

from __future__ import annotations

import re
from typing import Any

from gateway.errors import InvalidInput
from gateway.services.models.packages import APPLICATIONS

NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$")  # no '@': it separates a name from a version or alias
ALIAS = re.compile(r"^[A-Za-z][A-Za-z0-9._-]{0,63}$")  # never all digits: name@3 is version 3
DEFAULT = "default"


def check_name(name: Any) -> str:
    if not isinstance(name, str) or not NAME.match(name):
        raise InvalidInput("name must be 1 to 128 letters, digits, '.', '_' or '-', starting with a letter or digit")
    return name


def check_alias(alias: Any) -> str:
    if not isinstance(alias, str) or not ALIAS.match(alias):
        raise InvalidInput(f"alias {alias!r} must be 1 to 64 letters, digits, '.', '_' or '-', starting with a letter")
    return alias


def check_application(application: Any) -> str:
    if application not in APPLICATIONS:
        raise InvalidInput(f"application must be one of {', '.join(APPLICATIONS)}")
    return application


def check_tags(tags: Any) -> dict[str, str]:
    if tags is None:
        return {}
    if isinstance(tags, list):  # [{key, value}] as the input type sends them
        tags = {t.get("key"): t.get("value") for t in tags if isinstance(t, dict)} if all(isinstance(t, dict) for t in tags) else None
    if not isinstance(tags, dict) or len(tags) > 64:
        raise InvalidInput("labels must be at most 64 key/value pairs")
    out: dict[str, str] = {}
    for key, value in tags.items():
        if not isinstance(key, str) or not 1 <= len(key) <= 128 or not isinstance(value, str) or len(value) > 1024:
            raise InvalidInput("each label needs a key (1 to 128 characters) and a text value (up to 1024)")
        out[key] = value
    return out


def parse_ref(ref: Any) -> tuple[str, int | None, str | None]:
    """``name``, ``name@3``, ``name@alias`` -> (name, version, alias)."""
    if not isinstance(ref, str) or not ref:
        raise InvalidInput("a model reference is name, name@version or name@alias")
    name, _, tail = ref.partition("@")
    check_name(name)
    if not tail:
        return name, None, DEFAULT if "@" not in ref else None
    if tail.isdigit():
        return name, int(tail), None
    return name, None, check_alias(tail)
