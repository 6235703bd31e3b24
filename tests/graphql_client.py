"""A GraphQL client for tests that sends queries the ways real clients do: JSON, spec multipart, plain form."""

from __future__ import annotations

import json
import weakref
from dataclasses import dataclass
from typing import Any

import httpx


@dataclass
class Reply:
    status: int
    body: dict[str, Any]

    @property
    def data(self) -> Any:
        return self.body.get("data")

    @property
    def errors(self) -> list[dict[str, Any]]:
        return self.body.get("errors") or []

    @property
    def error_code(self) -> str | None:
        return self.errors[0]["extensions"]["code"] if self.errors else None

    @property
    def error_message(self) -> str | None:
        return self.errors[0]["message"] if self.errors else None

    @property
    def sql_statements(self) -> int | None:
        return (self.body.get("extensions") or {}).get("sqlStatements")

    def ok(self) -> Any:
        """The data, after asserting there were no errors."""
        assert not self.errors, f"unexpected errors: {self.errors}"
        assert self.status == 200, self.status
        return self.data


class GraphQLClient:
    def __init__(self, base_url: str, token: str | None, *, timeout: float = 60) -> None:
        self.base_url = base_url.rstrip("/")
        self.url = self.base_url + "/v3/graphql"
        self.token = token
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        self.http = httpx.Client(headers=headers, timeout=timeout)
        # A client a test drops without closing closes its connections when collected, not at interpreter exit
        # with a ResourceWarning (which the suite treats as an error) in whichever test happens to run then.
        self._closer = weakref.finalize(self, self.http.close)

    def close(self) -> None:
        self._closer()

    def with_token(self, token: str | None) -> GraphQLClient:
        return GraphQLClient(self.base_url, token)

    @staticmethod
    def _reply(response: httpx.Response) -> Reply:
        try:
            body = response.json()
        except ValueError:
            body = {"_text": response.text}
        return Reply(response.status_code, body)

    def query(self, query: str, **variables: Any) -> Reply:
        return self._reply(self.http.post(self.url, json={"query": query, "variables": variables or None}))

    def get(self, query: str, **variables: Any) -> Reply:
        params = {"query": query}
        if variables:
            params["variables"] = json.dumps(variables)
        return self._reply(self.http.get(self.url, params=params))

    def upload_form(self, query: str, data: bytes, content_type: str, *, filename: str = "file.bin", variables: dict | None = None) -> Reply:
        """The plain form curl users send: -F query=... -F "file=@x;type=..." (the query names no file)."""
        fields: dict[str, Any] = {"query": query}
        if variables:
            fields["variables"] = json.dumps(variables)
        return self._reply(self.http.post(self.url, data=fields, files={"file": (filename, data, content_type)}))

    def upload_spec(self, query: str, variables: dict[str, Any], files: dict[str, tuple[bytes, str]], *, filename: str = "file.bin") -> Reply:
        """The GraphQL multipart request spec: operations + map + numbered file parts.

        ``files`` maps a dotted variables path (e.g. "input.file") to (bytes, content type); the placeholder
        at that path is set to null here, as spec clients do.
        """
        operations = {"query": query, "variables": json.loads(json.dumps(variables))}
        mapping: dict[str, list[str]] = {}
        parts: dict[str, Any] = {}
        for index, (path, (data, content_type)) in enumerate(files.items()):
            node = operations["variables"]
            keys = path.split(".")
            for key in keys[:-1]:
                node = node.setdefault(key, {})
            node[keys[-1]] = None
            mapping[str(index)] = [f"variables.{path}"]
            parts[str(index)] = (filename, data, content_type)
        return self._reply(
            self.http.post(self.url, data={"operations": json.dumps(operations), "map": json.dumps(mapping)}, files=parts)
        )
