"""The reference schema's Task fields beyond the core. Tasks here form no trees (no parent, child or
standby tasks) and have no target media object, which these fields say plainly."""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated, Optional
from uuid import UUID

import strawberry

from gateway.schema.context import Info
from storage import rows

if TYPE_CHECKING:
    from gateway.schema.jobs import Job, Task

# A task ID filter that matches nothing (no task has the nil UUID).
NO_SUCH_TASK = UUID(int=0)


@strawberry.type
class TaskReferenceFields:
    """Mixed into Task: each resolver reads the task row (`_row`)."""

    _row: strawberry.Private[rows.Task]

    @strawberry.field
    async def job(self, info: Info) -> Optional[Annotated[Job, strawberry.lazy("gateway.schema.jobs")]]:
        from gateway.schema.jobs import Job

        row = await info.context.loaders.job.load(self._row.job_id)
        return Job.from_row(row) if row else None

    @strawberry.field(description="The ID of the API token that created its job.")
    async def created_by(self, info: Info) -> Optional[str]:
        row = await info.context.loaders.job.load(self._row.job_id)
        return row.created_by if row else None

    @strawberry.field(description="Here each organization is its own application: the organization's ID.")
    def application_id(self) -> str:
        return str(self._row.org_id)

    @strawberry.field(description="As createJob's CreateTask.testTask set it.")
    def test_task(self) -> bool:
        return self._row.test_task

    @strawberry.field(description="Always false: there is no target media object to clone.")
    def is_clone(self) -> bool:
        return False

    @strawberry.field(description="Always null: tasks here have no target media object (TDO).")
    def target_id(self) -> Optional[strawberry.ID]:
        return None

    @strawberry.field(description="Always null: tasks here form no trees.")
    def parent_task_id(self) -> Optional[strawberry.ID]:
        return None

    @strawberry.field(description="Always null: tasks here form no trees.")
    def parent_task(self) -> Optional[Annotated[Task, strawberry.lazy("gateway.schema.jobs")]]:
        return None

    @strawberry.field(description="Always empty: tasks here form no trees.")
    def child_task_ids(self) -> list[strawberry.ID]:
        return []

    @strawberry.field(description="Always empty: tasks here form no trees.")
    def child_tasks(self) -> list[Annotated[Task, strawberry.lazy("gateway.schema.jobs")]]:
        return []
