"""The model registry: register, list, alias and delete model versions (LayerNext 7.1), and a library's
default trained model."""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from engineshed.client import packing
from engineshed.client.errors import InvalidInputError, NotFoundError
from engineshed.client.operations.arguments import named_model
from engineshed.client.operations.base import OperationsBase, graphql, op
from engineshed.client.operations.fields import ENGINE_MODEL_FIELDS, MODEL_FIELDS
from engineshed.client.transport import Call, Operation
from engineshed.client.types import LibraryEngineModel, Model, Page


class ModelOperations(OperationsBase):
    """Registered models and their versions."""

    @op
    def register_model(self, path: str | Path, model_id: str | None = None, application: str | None = None, *,
                       description: str | None = None, labels: Mapping[str, str] | None = None,
                       aliases: Sequence[str] | None = None, manifest: Mapping[str, Any] | None = None,
                       model_name: str | None = None, wait: bool = True, timeout: float = 600.0) -> Operation[Model]:
        """``registerModel``: register a model package as the next version of ``model_id`` (LayerNext's name; its
        signature line calls it ``model_name``, which is taken too).

        The server checks the package at once and then runs it on a worker (the trial) before it may be used;
        with ``wait`` (the default) this returns once the trial is over, so the model is usable as LayerNext documents,
        and a failed trial raises :class:`InvalidInputError` with its reason. ``wait=False`` returns the version
        while it is still ``validating``. TimeoutError after ``timeout`` seconds (no worker running, say).

        ``path`` is a package file (.onnx, .tar.gz, .zip …) streamed as it is, or a directory, packed here as a
        .tar.gz first. ``application``: ``embedding``, ``auto_tagging`` or ``auto_annotation`` (LayerNext's
        ``autotagging`` and ``auto tagging`` spellings are accepted). The server validates the package and
        answers why it refuses one (e.g. LayerNext's ``code/inference.py`` + ``.pt`` layout: uploads are data,
        never code); that message arrives as :class:`InvalidInputError`.
        """
        name = named_model(model_id, model_name, required=True)
        if application is None:
            raise InvalidInputError("application is required: embedding, auto_tagging or auto_annotation")
        app = packing.application(application)
        if manifest is not None and not isinstance(manifest, Mapping):
            raise InvalidInputError("manifest must be a mapping (a dict of the manifest's fields)")
        with packing.package(path) as upload:
            data = yield graphql(
                "mutation($n: String!, $a: ModelApplication!, $d: String, $lb: JSONData, $al: [String!], $m: JSONData, $f: Upload) "
                "{ registerModel(input: {name: $n, application: $a, description: $d, labels: $lb, aliases: $al, manifest: $m, file: $f}) "
                f"{{ {MODEL_FIELDS} }} }}",
                idempotent=False, uploads={"f": upload}, n=name, a=app, d=description, lb=dict(labels) if labels else None,
                al=list(aliases) if aliases else None, m=dict(manifest) if manifest else None,
            )
        model = data["registerModel"]
        if not wait:
            return model
        deadline = time.monotonic() + timeout
        interval = 0.25
        while model["status"] == "validating":
            if time.monotonic() >= deadline:
                raise TimeoutError(f"model {model['ref']} is still validating after {timeout}s (is a worker running?)")
            yield Call(sleep=interval)
            interval = min(2.0, interval * 2)
            model = yield from ModelOperations.model.__wrapped__(self, model["name"], model["version"])  # type: ignore[attr-defined]
        if model["status"] == "failed":
            raise InvalidInputError(f"model {model['ref']} failed its trial run: {model.get('error') or 'no reason given'}",
                                    data={"reason": "trial", "model": model["ref"]})
        return model

    @op
    def models(self, application: str | None = None, name: str | None = None, labels: Mapping[str, str] | None = None,
               status: str | None = None, system: bool | None = None, alias: str | None = None,
               offset: int = 0, limit: int = 30) -> Operation[Page[Model]]:
        """``models``: registered model versions visible to the organization (its own and the system's)."""
        data = yield graphql(
            "query($a: ModelApplication, $n: String, $lb: JSONData, $s: ModelStatus, $sy: Boolean, $al: String, $o: Int, $l: Int) "
            f"{{ models(application: $a, name: $n, labels: $lb, status: $s, system: $sy, alias: $al, offset: $o, limit: $l) "
            f"{{ offset limit count totalCount records {{ {MODEL_FIELDS} }} }} }}",
            idempotent=True, a=packing.application(application) if application else None, n=name,
            lb=dict(labels) if labels else None, s=status, sy=system, al=alias, o=offset, l=limit,
        )
        return data["models"]

    @op
    def model(self, name: str, version: int | None = None, alias: str | None = None) -> Operation[Model]:
        """``model``: one version by number, by alias, or the default; :class:`NotFoundError` when there is none."""
        data = yield graphql(f"query($n: String!, $v: Int, $a: String) {{ model(name: $n, version: $v, alias: $a) {{ {MODEL_FIELDS} }} }}",
                             idempotent=True, n=name, v=version, a=alias)
        if data["model"] is None:
            raise NotFoundError(f"no model {name}" + (f"@{version}" if version else f"@{alias}" if alias else ""))
        return data["model"]

    @op
    def update_model(self, name: str, description: str | None = None, labels: Mapping[str, str] | None = None,
                     aliases: Mapping[str, int] | None = None) -> Operation[Model]:
        """``updateModel``: a model's description and labels, and ``aliases`` as ``{alias: version}`` to move."""
        pointers = [{"alias": a, "version": v} for a, v in (aliases or {}).items()] or None
        data = yield graphql(f"mutation($i: UpdateModel!) {{ updateModel(input: $i) {{ {MODEL_FIELDS} }} }}", idempotent=True,
                             i={"name": name, "description": description, "labels": dict(labels) if labels else None, "aliases": pointers})
        return data["updateModel"]

    @op
    def set_model_alias(self, name: str, version: int, alias: str) -> Operation[Model]:
        """``setModelAlias``: point ``alias`` (``default`` too) at ``version``."""
        data = yield graphql(f"mutation($n: String!, $v: Int!, $a: String!) {{ setModelAlias(name: $n, version: $v, alias: $a) "
                             f"{{ {MODEL_FIELDS} }} }}", idempotent=True, n=name, v=version, a=alias)
        return data["setModelAlias"]

    @op
    def delete_model_version(self, name: str, version: int) -> Operation[dict[str, Any]]:
        """``deleteModelVersion``: :class:`NotAllowedError` while an alias, a trained model or a job uses it."""
        data = yield graphql("mutation($n: String!, $v: Int!) { deleteModelVersion(name: $n, version: $v) { id message } }",
                             idempotent=False, n=name, v=version)
        return data["deleteModelVersion"]

    @op
    def set_default_model(self, library_engine_model_id: str) -> Operation[LibraryEngineModel]:
        """``setDefaultModel``: make a trained model its library's default for its engine (a rollback, say)."""
        data = yield graphql(f"mutation($id: ID!) {{ setDefaultModel(libraryEngineModelId: $id) {{ {ENGINE_MODEL_FIELDS} }} }}",
                             idempotent=True, id=library_engine_model_id)
        return data["setDefaultModel"]
