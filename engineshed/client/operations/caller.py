"""The caller and its organization's API tokens."""

from __future__ import annotations

from typing import Any, Literal

from engineshed.client.operations.base import OperationsBase, graphql, op
from engineshed.client.transport import Operation


class CallerOperations(OperationsBase):
    """``me`` and the token operations."""

    @op
    def me(self) -> Operation[dict[str, Any]]:
        """``me``: the token (id, name, scope in jsondata) and its organization (``organizationId``)."""
        data = yield graphql("{ me { id name organizationId jsondata organization { id name } } }", idempotent=True)
        return data["me"]

    @op
    def tokens(self, offset: int = 0, limit: int = 100) -> Operation[list[dict[str, Any]]]:
        """``tokens``: the organization's API tokens, never their secrets (admin tokens only)."""
        data = yield graphql("query($o: Int, $l: Int) { tokens(offset: $o, limit: $l) { id label scope engineId createdDateTime revoked } }",
                             idempotent=True, o=offset, l=limit)
        return data["tokens"]

    @op
    def create_token(self, scope: Literal["admin", "read", "engine"], label: str | None = None,
                     engine_id: str | None = None) -> Operation[dict[str, Any]]:
        """``createToken``: a new token of the caller's organization; ``token`` in the answer is shown only once."""
        data = yield graphql("mutation($i: CreateToken!) { createToken(input: $i) { id label scope engineId token createdDateTime } }",
                             idempotent=False, i={"scope": scope, "label": label, "engineId": engine_id})
        return data["createToken"]

    @op
    def revoke_token(self, token_id: str) -> Operation[dict[str, Any]]:
        """``revokeToken``: revoke at once, in every gateway."""
        data = yield graphql("mutation($id: ID!) { revokeToken(id: $id) { id revoked revokedDateTime } }", idempotent=True, id=token_id)
        return data["revokeToken"]
