"""Direct uploads: writable URLs, a PUT straight to storage, and identifiers made from the uploaded objects.

The files never pass through the gateway: ``getSignedWritableUrls`` hands out presigned PUT URLs, the bytes go to
storage, and aliased ``createEntityIdentifier(input: {url})`` mutations (up to :data:`BATCH` in one request) make
the identifiers, which point at the uploaded objects. An object that never becomes an identifier is deleted by
the server once its URL's window has passed.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from engineshed.client.errors import ApiError, InternalError, error_from
from engineshed.client.operations.base import OperationsBase, graphql, op
from engineshed.client.operations.fields import IDENTIFIER_FIELDS
from engineshed.client.transport import Call, Operation, Upload
from engineshed.client.types import Identifier

BATCH = 30  # aliases in one request: the server's default ENGINESHED_MAX_QUERY_ALIASES
MAX_URLS = 1000  # getSignedWritableUrls' bound
URL_FIELDS = "key url unsignedUrl expiresInSeconds expiresAtDateTime"


class UploadOperations(OperationsBase):
    """Writable URLs and identifiers from uploaded objects."""

    @op
    def writable_urls(self, number: int) -> Operation[list[dict[str, Any]]]:
        """``getSignedWritableUrls``: ``number`` presigned PUT URLs (``{key, url, unsignedUrl, …}``), at most 1000."""
        data = yield graphql(f"query($n: Int!) {{ getSignedWritableUrls(number: $n) {{ {URL_FIELDS} }} }}",
                             idempotent=True, n=number)
        return data["getSignedWritableUrls"]

    @op
    def put_file(self, url: str, file: str | Path | bytes | Upload, *, content_type: str | None = None) -> Operation[None]:
        """PUT a file (streamed from disk) to a writable URL; retried like an idempotent call (it is one)."""
        yield Call(put_url=url, uploads={"body": Upload.of(file, content_type=content_type)}, idempotent=True)

    @op
    def create_identifiers_from_urls(self, inputs: Sequence[Mapping[str, Any]]) -> Operation[list[Identifier | ApiError]]:
        """Aliased ``createEntityIdentifier`` mutations in one request, one per ``CreateEntityIdentifier`` input
        (``{entityId, identifierTypeId, url, …}``, ``url`` a writable URL a file was PUT to): each identifier, or
        the :class:`ApiError` its input got, in order. At most :data:`BATCH` inputs."""
        if not inputs:
            return []
        declared = ", ".join(f"$i{n}: CreateEntityIdentifier!" for n in range(len(inputs)))
        fields = " ".join(f"a{n}: createEntityIdentifier(input: $i{n}) {{ {IDENTIFIER_FIELDS} }}" for n in range(len(inputs)))
        variables = {f"i{n}": {k: v for k, v in given.items() if v is not None} for n, given in enumerate(inputs)}
        body = yield Call(query=f"mutation({declared}) {{ {fields} }}", variables=variables, partial=True)
        data = body.get("data") or {}
        errors = {str((e.get("path") or [""])[0]): e for e in body.get("errors") or []}
        out: list[Identifier | ApiError] = []
        for n in range(len(inputs)):
            made = data.get(f"a{n}")
            if made is not None:
                out.append(made)
            elif f"a{n}" in errors:
                out.append(error_from(errors[f"a{n}"]))
            else:
                out.append(InternalError("the server answered neither an identifier nor an error"))
        return out

    @op
    def upload_identifiers_multipart(self, files: Sequence[Mapping[str, Any]]) -> Operation[list[Identifier | ApiError]]:
        """Several files as identifiers, one multipart ``createEntityIdentifier`` each, one after another (the path
        through the gateway; ``Client.upload_identifiers`` takes the direct one by default). Each file is
        ``{"file": path or bytes, "entityId", "identifierTypeId", …}`` (other keys: CreateEntityIdentifier's fields,
        ``filename``); each identifier, or the error its file got, in order."""
        out: list[Identifier | ApiError] = []
        for given in files:
            fields = {k: v for k, v in given.items() if k not in ("file", "filename")}
            upload = Upload.of(given["file"], filename=given.get("filename"), content_type=given.get("contentType"))
            try:
                made = yield from _multipart_one(fields, upload)
                out.append(made)
            except ApiError as exc:
                out.append(exc)
        return out

    @op
    def named_writable_urls(self, names: Sequence[str]) -> Operation[list[dict[str, Any]]]:
        """Aliased ``getSignedWritableUrl(key: name)`` in one request (at most :data:`BATCH`): a writable URL per file
        name, whose identifier then takes that name as its default ``uniqueName``, as a multipart upload's would."""
        if not names:
            return []
        declared = ", ".join(f"$k{n}: String" for n in range(len(names)))
        fields = " ".join(f"u{n}: getSignedWritableUrl(key: $k{n}) {{ {URL_FIELDS} }}" for n in range(len(names)))
        data = yield graphql(f"query({declared}) {{ {fields} }}", idempotent=True,
                             **{f"k{n}": name for n, name in enumerate(names)})
        return [data[f"u{n}"] for n in range(len(names))]


def direct_input(given: Mapping[str, Any], url: str) -> dict[str, Any]:
    """The CreateEntityIdentifier input for a file PUT to ``url``: the given fields with that url."""
    fields = {k: v for k, v in given.items() if k not in ("file", "filename")}
    fields["url"] = url
    return fields


def _multipart_one(fields: dict[str, Any], upload: Upload) -> Operation[Identifier]:
    fields = dict(fields, file=None)
    data = yield graphql(f"mutation($i: CreateEntityIdentifier!) {{ createEntityIdentifier(input: $i) {{ {IDENTIFIER_FIELDS} }} }}",
                         idempotent=False, uploads={"i.file": upload}, i=fields)
    return data["createEntityIdentifier"]
