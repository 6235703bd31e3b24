"""The model registry's GraphQL surface: RegisteredModel, models/model, registerModel, updateModel,
setModelAlias, deleteModelVersion. Mixed into root.py's Query and Mutation."""

from __future__ import annotations

from enum import Enum
from typing import Optional

import strawberry
from strawberry import UNSET
from strawberry.file_uploads import Upload

from gateway.schema.common import DeletePayload, Paginated
from gateway.schema.context import Info
from gateway.schema.enums import OrderDirection
from gateway.schema.scalars import DateTime, JSONData
from gateway.services.models import registry as model_service
from storage import rows


@strawberry.enum
class ModelApplication(Enum):
    embedding = "embedding"
    auto_tagging = "auto_tagging"
    auto_annotation = "auto_annotation"


@strawberry.enum
class ModelStatus(Enum):
    validating = "validating"
    ready = "ready"
    failed = "failed"


@strawberry.enum
class ModelOrderBy(Enum):
    name = "name"
    version = "version"
    createdDateTime = "createdDateTime"
    modifiedDateTime = "modifiedDateTime"
    throughput = "throughput"


@strawberry.type(description="One version of a registered model.")
class RegisteredModel:
    id: strawberry.ID
    name: str
    version: int
    ref: str = strawberry.field(description="name@version, as engines' config.modelId takes it")
    application: ModelApplication
    system: bool = strawberry.field(description="A system model: visible to every organization, read-only")
    status: ModelStatus
    error: Optional[str] = strawberry.field(description="Why the version failed validation or its trial inference")
    description: str
    labels: JSONData = strawberry.field(description="The key/value labels given at registration or by updateModel")
    class_labels: Optional[list[str]] = strawberry.field(description="The ordered class labels (auto_tagging)")
    dimension: Optional[int] = strawberry.field(description="The embedding size, or the class count")
    aliases: list[str]
    manifest: JSONData
    sha256: str = strawberry.field(description="The digest of the stored ONNX file")
    size_bytes: float
    source: JSONData = strawberry.field(description="Where the model came from: file and checksum, or package, version, licence")
    throughput: Optional[float] = strawberry.field(description="Images per second at throughputBatch, measured by the trial")
    throughput_batch: Optional[int]
    provider: Optional[str] = strawberry.field(description="The execution provider the trial ran on")
    validation: JSONData
    created_date_time: DateTime
    modified_date_time: DateTime

    @classmethod
    def from_row(cls, row: rows.ModelVersion) -> RegisteredModel:
        return cls(
            id=strawberry.ID(str(row.id)),
            name=row.name,
            version=row.version,
            ref=row.ref,
            application=ModelApplication(row.application),
            system=row.organization_id is None,
            status=ModelStatus(row.status),
            error=row.error,
            description=row.description,
            labels=row.tags or {},
            class_labels=row.labels,
            dimension=row.dimension,
            aliases=list(row.aliases),
            manifest=row.manifest,
            sha256=row.sha256,
            size_bytes=float(row.size_bytes),
            source=row.source or {},
            throughput=row.throughput,
            throughput_batch=row.throughput_batch,
            provider=row.provider,
            validation=row.validation or {},
            created_date_time=row.created_at,
            modified_date_time=row.modified_at,
        )


@strawberry.type(name="RegisteredModelList")
class RegisteredModelList(Paginated[RegisteredModel]):
    pass


@strawberry.input
class RegisterModel:
    name: str = strawberry.field(description="The model's name (the client's model_id), unique in the organization")
    application: ModelApplication
    description: Optional[str] = None
    labels: Optional[JSONData] = strawberry.field(default=None, description="Key/value labels, e.g. {team: \"vision\"}")
    aliases: Optional[list[str]] = None
    manifest: Optional[JSONData] = strawberry.field(
        default=None, description="Input (layout, size, channels, color_order, range or mean/std) and output; a "
        "bare .onnx file needs it, an archive may carry its own")
    file: Optional[Upload] = strawberry.field(default=None, description="The package (or the plain form's file part)")
    url: Optional[str] = strawberry.field(default=None, description="Or where to fetch the package")


@strawberry.input
class ModelAliasPointer:
    alias: str
    version: int


@strawberry.input
class UpdateModel:
    name: str
    description: Optional[str] = UNSET
    labels: Optional[JSONData] = UNSET
    aliases: Optional[list[ModelAliasPointer]] = UNSET


@strawberry.type
class ModelQuery:
    @strawberry.field(description="Registered model versions visible to the organization (its own and the system's).")
    async def models(
        self,
        info: Info,
        application: Optional[ModelApplication] = None,
        name: Optional[str] = None,
        labels: Optional[JSONData] = None,
        status: Optional[ModelStatus] = None,
        system: Optional[bool] = None,
        alias: Optional[str] = None,
        offset: Optional[int] = 0,
        limit: Optional[int] = 30,
        order_by: Optional[ModelOrderBy] = None,
        order_direction: Optional[OrderDirection] = None,
    ) -> RegisteredModelList:
        page = await model_service.list_page(
            info.context.resources, info.context.principal,
            application=application.value if application else None, name=name, tags=labels,
            status=status.value if status else None, system=system, alias=alias,
            order_by=(order_by or ModelOrderBy.createdDateTime).value,
            descending=order_direction != OrderDirection.asc, offset=offset, limit=limit,
        )
        return RegisteredModelList.of(page, [RegisteredModel.from_row(r) for r in page.records])

    @strawberry.field(description="One model version: by number, by alias, or the default.")
    async def model(
        self, info: Info, name: str, version: Optional[int] = None, alias: Optional[str] = None
    ) -> Optional[RegisteredModel]:
        row = await model_service.get(info.context.resources, info.context.principal, name, version, alias)
        return RegisteredModel.from_row(row)


@strawberry.type
class ModelMutation:
    @strawberry.mutation(description="Register a model package (file or url) as the next version of `name`.")
    async def register_model(self, info: Info, input: RegisterModel) -> RegisteredModel:
        row = await model_service.register(
            info.context.resources, info.context.principal, name=input.name, application=input.application.value,
            description=input.description, tags=input.labels, aliases=input.aliases, manifest=input.manifest,
            file=input.file or info.context.form_file, url=input.url,
        )
        return RegisteredModel.from_row(row)

    @strawberry.mutation(description="Change a model's description and labels, and move aliases.")
    async def update_model(self, info: Info, input: UpdateModel) -> RegisteredModel:
        aliases = [(a.alias, a.version) for a in input.aliases or []] if input.aliases is not UNSET else []
        row = await model_service.update(
            info.context.resources, info.context.principal, input.name,
            description=input.description if input.description is not UNSET else None,
            tags=input.labels if input.labels is not UNSET else None, aliases=aliases,
        )
        return RegisteredModel.from_row(row)

    @strawberry.mutation(description="Point an alias (`default` among them) at a version.")
    async def set_model_alias(self, info: Info, name: str, version: int, alias: str) -> RegisteredModel:
        row = await model_service.set_alias(info.context.resources, info.context.principal, name, version, alias)
        return RegisteredModel.from_row(row)

    @strawberry.mutation(description="Delete a version nothing uses (no alias, library engine model or job).")
    async def delete_model_version(self, info: Info, name: str, version: int) -> DeletePayload:
        row = await model_service.delete_version(info.context.resources, info.context.principal, name, version)
        return DeletePayload(id=strawberry.ID(str(row.id)), message=f"model {row.ref} deleted")


__all__ = ["ModelMutation", "ModelQuery", "RegisteredModel", "RegisteredModelList"]
