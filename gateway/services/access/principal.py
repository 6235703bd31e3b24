"""Who is calling: the organization and what the token allows."""

from __future__ import annotations

from dataclasses import dataclass
from uuid import UUID

from gateway.errors import NotAllowed, NotFound


@dataclass(frozen=True, slots=True)
class Principal:
    org_id: UUID
    scope: str  # admin | read | engine | task
    token_id: UUID | None = None
    engine_id: str | None = None  # engine tokens: the external engine they act for
    task_id: UUID | None = None  # task tokens: the claimed task
    library_id: UUID | None = None  # task tokens: the only library they may read
    model_id: UUID | None = None  # task tokens: the only model they may update
    job_id: UUID | None = None  # task tokens: the only job they may read
    lease_owner: str | None = None  # task tokens: the claim they act for

    @property
    def actor(self) -> str | None:
        """Who makes a change, as createdBy/modifiedBy record it: the token's ID."""
        return str(self.token_id) if self.token_id else None

    @property
    def is_task(self) -> bool:
        return self.scope == "task"

    def require_read(self) -> None:
        """Any valid token may read (what it may see is filtered by the services)."""

    def require_write(self) -> None:
        """Mutations of library data: admin tokens (task tokens only through the checks below)."""
        if self.scope not in ("admin",):
            raise NotAllowed(f"{_article(self.scope)} {self.scope} token may not change data")

    def require_admin(self) -> None:
        if self.scope != "admin":
            raise NotAllowed(f"this operation needs an admin token, not a {self.scope} token")

    def check_library(self, library_id: UUID) -> None:
        """Task tokens see one library: any other is reported as not found, like another tenant's."""
        if self.scope == "task" and library_id != self.library_id:
            raise NotFound()

    def check_model_write(self, model_id: UUID) -> None:
        if self.scope == "admin":
            return
        if self.scope == "task" and model_id == self.model_id:
            return
        if self.scope == "task":
            raise NotFound()
        raise NotAllowed(f"{_article(self.scope)} {self.scope} token may not change library engine models")

    def can_list_everything(self) -> bool:
        return self.scope in ("admin", "read")


def _article(word: str) -> str:
    return "an" if word[:1] in "aeiou" else "a"
