"""A LibraryEngineModel as a version: name, description, changelog, labels, aliases and autoPromote."""

from __future__ import annotations

import re
from typing import Any

from gateway.errors import InvalidInput, NotFound
from gateway.resources import Resources
from gateway.services.access.ids import parse_id
from gateway.services.access.job_labels import check_labels
from gateway.services.access.principal import Principal
from storage.queries import engine_models as model_q
from storage.queries import trainings as q
from storage.rows import EngineModel

MAX_TEXT = 10_000  # description / changelog
MAX_NAME = 128  # a display name's limit, as in other model registries
MAX_ALIASES = 20
_ALIAS = re.compile(r"[a-z][a-zA-Z0-9-]{0,126}[a-z0-9]")


def check_text(value: Any, name: str, limit: int) -> str | None:
    """A free-text field: a string of at most ``limit`` characters, or None."""
    if value is None:
        return None
    if not isinstance(value, str):
        raise InvalidInput(f"{name} must be a string")
    if len(value) > limit:
        raise InvalidInput(f"{name} may be at most {limit} characters")
    return value


ALIAS_RULE = "an alias is 2-128 characters: a lowercase letter, then letters, digits or '-', ending in a lowercase letter or digit"


def check_aliases(raw: Any) -> list[str]:
    """A version alias is ``[a-z][a-zA-Z0-9-]{0,126}[a-z0-9]``; ``default`` is setDefaultModel's."""
    if not isinstance(raw, list):
        raise InvalidInput("aliases must be a list of strings")
    if len(raw) > MAX_ALIASES:
        raise InvalidInput(f"a model may have at most {MAX_ALIASES} aliases")
    seen: list[str] = []
    for alias in raw:
        if not isinstance(alias, str) or not _ALIAS.fullmatch(alias):
            raise InvalidInput(f"alias {alias!r}: {ALIAS_RULE}")
        if alias == "default":
            raise InvalidInput("alias 'default' follows the default model; use setDefaultModel")
        if alias not in seen:
            seen.append(alias)
    return seen


def check_version(principal: Principal, changes: dict[str, Any]) -> tuple[dict[str, Any], list[str] | None]:
    """The version fields ``update_version`` would write, checked (and nothing written): callers that change
    other fields of the model in the same request check these first, so a refusal leaves nothing half-done."""
    principal.require_write()
    fields: dict[str, Any] = {}
    if "name" in changes:
        fields["name"] = check_text(changes["name"], "name", MAX_NAME)
    for key in ("description", "changelog"):
        if key in changes:
            fields[key] = check_text(changes[key], key, MAX_TEXT)
    if "labels" in changes:
        fields["labels"] = check_labels(changes["labels"])
    if "auto_promote" in changes:
        if not isinstance(changes["auto_promote"], bool):
            raise InvalidInput("autoPromote must be true or false")
        fields["auto_promote"] = changes["auto_promote"]
    aliases = check_aliases(changes["aliases"]) if changes.get("aliases") is not None else None
    return fields, aliases


async def update_version(res: Resources, principal: Principal, model_id: object, changes: dict[str, Any]) -> EngineModel:
    """name, description, changelog, labels, aliases, autoPromote of a model (each only when sent)."""
    fields, aliases = check_version(principal, changes)
    mid = parse_id(model_id)
    async with res.pool.acquire() as conn, conn.transaction():
        model = await model_q.by_id(conn, principal.org_id, mid)
        if model is None:
            raise NotFound()
        principal.check_library(model.library_id)
        return await apply_version(conn, principal, model, fields, aliases)


async def apply_version(
    conn: Any, principal: Principal, model: EngineModel, fields: dict[str, Any], aliases: list[str] | None,
) -> EngineModel:
    """Write ``check_version``'s result inside the caller's transaction (updateLibraryEngineModel writes the
    model's other fields and these in one)."""
    # Aliases move under the (library, engine) default lock, taken before any row (promotion.on_complete).
    await q.lock_default(conn, model.library_id, model.engine_id)
    if fields:
        model = await q.set_version_fields(conn, principal.org_id, model.id, fields)
    if aliases is not None:
        model = await q.set_aliases(conn, model, aliases)
    return model
