"""Direct uploads: writable URLs a client PUTs files to, which createEntityIdentifier then takes by URL."""

from __future__ import annotations

import weakref
from typing import Any

import strawberry
from graphql import FieldNode, ObjectValueNode, StringValueNode, ValueNode, VariableNode

from gateway.schema.context import Info
from gateway.schema.scalars import DateTime
from gateway.services.ingest import direct


@strawberry.type(description="A signed writable URL (getSignedWritableUrl): PUT the file to url, then pass url, unsignedUrl "
                             "or key as createEntityIdentifier's input.url.")
class WritableUrlInfo:
    bucket: str = strawberry.field(description="The storage bucket ID.")
    key: str = strawberry.field(description="The storage object key.")
    expires_in_seconds: int = strawberry.field(description="Seconds after which this URL is expired and no longer valid.")
    expires_at_date_time: DateTime = strawberry.field(description="Absolute time at which this URL expires.")
    url: str = strawberry.field(description="The signed URL to upload to with an HTTP PUT (a POST fails).")
    unsigned_url: str | None = strawberry.field(description="The unsigned, base URL to the object.")

    @strawberry.field(description="A signed URL that can be used with HTTP GET to retrieve the new resource.")
    async def get_url(self, info: Info) -> str:
        # Signed only when asked for: bulk clients ask for url alone, and signing is most of issuing a URL.
        return await direct.get_url(info.context.resources, self.key)

    @classmethod
    def of(cls, w: direct.WritableUrl) -> WritableUrlInfo:
        return cls(bucket=w.bucket, key=w.key, expires_in_seconds=w.expires_in_seconds, expires_at_date_time=w.expires_at,
                   url=w.url, unsigned_url=w.unsigned_url)


# Per request, by the identity of its context (which is not hashable), gone with the context.
_READ_AHEAD: dict[int, direct.ReadAhead] = {}


def read_ahead(info: Info) -> direct.ReadAhead:
    """The request's ReadAhead (made on first use): the direct-upload keys of every createEntityIdentifier field of
    the operation, in document order, from their ``input.url`` as the request gives it (a literal or a variable)."""
    found = _READ_AHEAD.get(id(info.context))
    if found is None:
        raw = info._raw_info
        variables = raw.variable_values
        keys = []
        for node in raw.operation.selection_set.selections:
            if isinstance(node, FieldNode) and node.name.value == raw.field_name:
                key = direct.key_of(info.context.resources.blobs.bucket, _input_url(node, variables))
                if key is not None:
                    keys.append(key)
        found = _READ_AHEAD[id(info.context)] = direct.ReadAhead(info.context.resources, info.context.principal, keys)
        weakref.finalize(info.context, _READ_AHEAD.pop, id(info.context), None)
    return found


def _input_url(node: FieldNode, variables: Any) -> str | None:
    """A field's ``input.url`` when it is a string (what the field itself does with it is its own business)."""
    def value(v: ValueNode | None) -> Any:
        if isinstance(v, VariableNode):
            return variables.get(v.name.value) if hasattr(variables, "get") else None
        if isinstance(v, StringValueNode):
            return v.value
        if isinstance(v, ObjectValueNode):
            return {f.name.value: value(f.value) for f in v.fields}
        return None

    given = next((value(a.value) for a in node.arguments or () if a.name.value == "input"), None)
    url = given.get("url") if isinstance(given, dict) else None
    return url if isinstance(url, str) else None


@strawberry.type
class UploadQuery:
    @strawberry.field(
        description="A signed writable S3 URL: PUT the file to it without further authorization, then create an identifier "
                    "with it. key: an optional file name; a UUID is inserted before its extension (or appended). Valid for "
                    "ENGINESHED_DIRECT_UPLOAD_TTL_SECONDS; the object is deleted unless it becomes an identifier."
    )
    async def get_signed_writable_url(self, info: Info, key: str | None = None) -> WritableUrlInfo | None:
        found = await direct.issue(info.context.resources, info.context.principal, 1, key)
        return WritableUrlInfo.of(found[0])

    @strawberry.field(description="Writable URLs in bulk, at most 1000 in one call (see getSignedWritableUrl).")
    async def get_signed_writable_urls(self, info: Info, number: int) -> list[WritableUrlInfo]:
        return [WritableUrlInfo.of(w) for w in await direct.issue(info.context.resources, info.context.principal, number)]
