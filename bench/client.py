"""An asynchronous GraphQL client over HTTP (httpx), as API users call the gateway."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

import httpx

from bench.stack import BenchError


@dataclass
class Reply:
    status: int
    body: dict[str, Any]

    @property
    def sql_statements(self) -> int | None:
        return (self.body.get("extensions") or {}).get("sqlStatements")

    def ok(self) -> Any:
        if self.status != 200 or self.body.get("errors"):
            raise BenchError(f"GraphQL request failed (HTTP {self.status}): {json.dumps(self.body)[:1500]}")
        return self.body.get("data")


class Client:
    def __init__(self, base_url: str, token: str, *, connections: int = 64, timeout: float = 120.0) -> None:
        self.url = base_url.rstrip("/") + "/v3/graphql"
        self.http = httpx.AsyncClient(
            headers={"Authorization": f"Bearer {token}"},
            timeout=timeout,
            limits=httpx.Limits(max_connections=connections, max_keepalive_connections=connections),
        )

    async def aclose(self) -> None:
        await self.http.aclose()

    @staticmethod
    def _reply(response: httpx.Response) -> Reply:
        try:
            body = response.json()
        except ValueError:
            body = {"_text": response.text[:2000]}
        return Reply(response.status_code, body)

    async def query(self, query: str, **variables: Any) -> Reply:
        response = await self.http.post(self.url, json={"query": query, "variables": variables or None})
        return self._reply(response)

    async def data(self, query: str, **variables: Any) -> Any:
        return (await self.query(query, **variables)).ok()

    async def upload_form(self, query: str, data: bytes, content_type: str, filename: str = "image") -> Reply:
        """The plain form curl users send: a ``query`` part and one ``file`` part."""
        response = await self.http.post(self.url, data={"query": query}, files={"file": (filename, data, content_type)})
        return self._reply(response)
