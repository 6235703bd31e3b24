"""Libraries, their entities and their identifiers (the files)."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from engineshed.client.errors import InvalidInputError, NotFoundError
from engineshed.client.operations.base import OperationsBase, graphql, op
from engineshed.client.operations.fields import ENTITY_FIELDS, IDENTIFIER_FIELDS, LIBRARY_FIELDS
from engineshed.client.transport import Operation, Upload
from engineshed.client.types import Identifier, Library, Page


class LibraryOperations(OperationsBase):
    """Libraries, entities and identifiers."""

    @op
    def libraries(self, name: str | None = None, offset: int = 0, limit: int = 30) -> Operation[Page[Library]]:
        """``libraries``: the organization's libraries (``name``: a case-insensitive substring)."""
        data = yield graphql(f"query($n: String, $o: Int, $l: Int) {{ libraries(name: $n, offset: $o, limit: $l) "
                             f"{{ offset limit count totalCount records {{ {LIBRARY_FIELDS} }} }} }}", idempotent=True, n=name, o=offset, l=limit)
        return data["libraries"]

    @op
    def library(self, library_id: str) -> Operation[Library]:
        """``library``: one library; :class:`NotFoundError` when the organization has none by that id."""
        data = yield graphql(f"query($id: ID!) {{ library(id: $id) {{ {LIBRARY_FIELDS} }} }}", idempotent=True, id=library_id)
        if data["library"] is None:
            raise NotFoundError(f"no library {library_id}")
        return data["library"]

    @op
    def find_library(self, name: str) -> Operation[Library | None]:
        """The library named exactly ``name`` (the API's name filter is a substring match), or None."""
        offset = 0
        while True:
            data = yield graphql(f"query($n: String, $o: Int) {{ libraries(name: $n, offset: $o, limit: 100) "
                                 f"{{ count records {{ {LIBRARY_FIELDS} }} }} }}", idempotent=True, n=name, o=offset)
            page = data["libraries"]
            for record in page["records"]:
                if record["name"] == name:
                    return record
            if page["count"] < 100:
                return None
            offset += page["count"]

    @op
    def create_library(self, name: str, library_type_id: str = "people", description: str | None = None) -> Operation[Library]:
        """``createLibrary``."""
        data = yield graphql(f"mutation($i: CreateLibrary) {{ createLibrary(input: $i) {{ {LIBRARY_FIELDS} }} }}", idempotent=False,
                             i={"name": name, "libraryTypeId": library_type_id, "description": description})
        return data["createLibrary"]

    @op
    def publish_library(self, library_id: str) -> Operation[Library]:
        """``publishLibrary``: publish the library's entities and bump its version."""
        data = yield graphql(f"mutation($id: ID!) {{ publishLibrary(id: $id) {{ {LIBRARY_FIELDS} }} }}", idempotent=False, id=library_id)
        return data["publishLibrary"]

    @op
    def delete_library(self, library_id: str) -> Operation[dict[str, Any]]:
        """``deleteLibrary``."""
        data = yield graphql("mutation($id: ID!) { deleteLibrary(id: $id) { id message } }", idempotent=True, id=library_id)
        return data["deleteLibrary"]

    @op
    def entities(self, library_id: str, name: str | None = None, offset: int = 0, limit: int = 30) -> Operation[Page[dict[str, Any]]]:
        """``entities(libraryIds: [library_id])``."""
        data = yield graphql(f"query($l: [ID!], $n: String, $o: Int, $lim: Int) {{ entities(libraryIds: $l, name: $n, offset: $o, limit: $lim) "
                             f"{{ offset limit count totalCount records {{ {ENTITY_FIELDS} }} }} }}",
                             idempotent=True, l=[library_id], n=name, o=offset, lim=limit)
        return data["entities"]

    @op
    def create_entity(self, library_id: str, name: str, jsondata: Mapping[str, Any] | None = None,
                      description: str | None = None) -> Operation[dict[str, Any]]:
        """``createEntity``."""
        data = yield graphql(f"mutation($i: CreateEntity!) {{ createEntity(input: $i) {{ {ENTITY_FIELDS} }} }}", idempotent=False,
                             i={"libraryId": library_id, "name": name, "jsondata": dict(jsondata) if jsondata else None, "description": description})
        return data["createEntity"]

    @op
    def create_entity_identifier(self, entity_id: str | None, file: str | Path | bytes | Upload | None = None, *,
                                 identifier_type_id: str = "face", url: str | None = None, filename: str | None = None,
                                 content_type: str | None = None, title: str | None = None,
                                 jsondata: Mapping[str, Any] | None = None, profile_update_mode: str = "none",
                                 library_id: str | None = None, unique_name: str | None = None) -> Operation[Identifier]:
        """``createEntityIdentifier``: a file (streamed from disk as a multipart part) or a URL to copy.

        The file's name is sent as the part's filename (the identifier's ``uniqueName`` by default, unique in the
        library: ``engineshed import`` sends the path relative to the imported folder); ``unique_name`` sets it.
        ``entity_id`` None with ``library_id``: an unassigned identifier of the library (to label later).
        """
        if (file is None) == (url is None):
            raise InvalidInputError("give exactly one of file or url")
        if entity_id is None and library_id is None:
            raise InvalidInputError("give entity_id, or library_id for an unassigned identifier")
        given = {"entityId": entity_id, "libraryId": library_id, "identifierTypeId": identifier_type_id, "url": url,
                 "contentType": content_type, "title": title, "jsondata": dict(jsondata) if jsondata else None,
                 "uniqueName": unique_name, "profileUpdateMode": None if profile_update_mode == "none" else profile_update_mode}
        # Only what was given: a field the server does not know yet (libraryId, uniqueName) is sent only when used.
        fields = {key: value for key, value in given.items() if value is not None}
        uploads = {}
        if file is not None:
            fields["file"] = None
            uploads["i.file"] = Upload.of(file, filename=filename, content_type=content_type)
        data = yield graphql(f"mutation($i: CreateEntityIdentifier!) {{ createEntityIdentifier(input: $i) {{ {IDENTIFIER_FIELDS} }} }}",
                             idempotent=False, uploads=uploads, i=fields)
        return data["createEntityIdentifier"]

    @op
    def library_contents(self, library_id: str) -> Operation[dict[str, dict[str, Any]]]:
        """Every entity of the library by name: ``{name: {"id", "sha256": set of identifiers' contentSha256}}``.

        What ``engineshed import`` compares a folder against to skip what was uploaded before. Paged so that one
        request stays within the API's query cost (entities × identifiers).
        """
        out: dict[str, dict[str, Any]] = {}
        offset = 0
        while True:
            data = yield graphql(
                "query($l: [ID!], $o: Int) { entities(libraryIds: $l, offset: $o, limit: 200, orderBy: createdDateTime, orderDirection: asc) "
                "{ count records { id name identifiers(limit: 200) { totalCount records { contentSha256 } } } } }",
                idempotent=True, l=[library_id], o=offset,
            )
            page = data["entities"]
            for entity in page["records"]:
                hashes = {r["contentSha256"] for r in entity["identifiers"]["records"] if r["contentSha256"]}
                seen = len(entity["identifiers"]["records"])
                while seen < entity["identifiers"]["totalCount"]:
                    more = yield graphql("query($id: ID!, $o: Int) { entity(id: $id) { identifiers(offset: $o, limit: 1000) "
                                         "{ count records { contentSha256 } } } }", idempotent=True, id=entity["id"], o=seen)
                    chunk = more["entity"]["identifiers"] if more["entity"] else {"count": 0, "records": []}
                    if not chunk["count"]:
                        break
                    hashes.update(r["contentSha256"] for r in chunk["records"] if r["contentSha256"])
                    seen += chunk["count"]
                known = out.setdefault(entity["name"], {"id": entity["id"], "sha256": set()})
                known["sha256"] |= hashes
            if page["count"] < 200:
                return out
            offset += page["count"]
