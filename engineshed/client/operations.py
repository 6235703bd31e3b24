"""Every client operation, written once for the sync and the async client.

An operation is a generator: it yields the :class:`~engineshed.client.transport.Call` objects it needs and
receives their data (or, thrown into it, their exception). ``Client`` runs them with blocking I/O, and
``AsyncClient`` with asyncio; the methods below therefore return the documented value from ``Client`` and an
awaitable of it from ``AsyncClient``.

Names follow the seeds where users already know them (LayerNext's ``register_model``, ``auto_tag_collection``,
``generate_embeddings_…``, ``insert_image_embeddings…``, ``get_embedding_vector``; ModelArts' intelligent tasks),
and the GraphQL operation they map onto is named in each docstring.
"""

from __future__ import annotations

import functools
import math
import numbers
import time
from collections.abc import Callable, Mapping, Sequence
from datetime import date, datetime, timedelta, timezone
from datetime import time as dtime
from pathlib import Path
from typing import Any, Literal, ParamSpec, TypeVar, cast

from engineshed.client import packing
from engineshed.client.errors import ApiError, InvalidInputError, NotAllowedError, NotFoundError
from engineshed.client.transport import Call, Operation, Upload
from engineshed.client.types import Identifier, Job, Library, LibraryEngineModel, Model, Page, RecognitionResult

T = TypeVar("T")
P = ParamSpec("P")

MODEL_FIELDS = ("id name version ref application system status error description labels classLabels dimension aliases "
                "sha256 sizeBytes throughput provider createdDateTime modifiedDateTime")
LIBRARY_FIELDS = "id name description libraryTypeId version organizationId createdDateTime modifiedDateTime"
ENTITY_FIELDS = "id name libraryId isPublished jsondata createdDateTime"
IDENTIFIER_FIELDS = "id entityId identifierTypeId title contentType contentSha256 contentLength createdDateTime"
TASK_FIELDS = ("id engineId status progress progressMessage attempts failureReason failureMessage "
               "startedDateTime completedDateTime")
JOB_FIELDS = f"id name status libraryId createdDateTime modifiedDateTime tasks {{ records {{ {TASK_FIELDS} }} }}"
ENGINE_MODEL_FIELDS = ("id engineId libraryId libraryVersion trainJobId trainStatus accuracy embeddingModel "
                       "createdDateTime modifiedDateTime")
MATCH_FIELDS = "libraryId entityId entityName entityIdentifierId score"
RECOGNITION_FIELDS = (f"libraryEngineModelId libraryId engineId modelId threshold matches {{ {MATCH_FIELDS} }} "
                      "labels { label score } windows { startSeconds endSeconds } "
                      f"faces {{ box {{ left top width height }} landmarks {{ x y }} detectionScore matches {{ {MATCH_FIELDS} }} }}")

# The largest page the API serves by default (ENGINESHED_MAX_PAGE_SIZE), and the largest batch the seed allows.
PAGE = 1000
EMBEDDING_BATCH = 99  # insert_image_embeddings_batch: "length of embedding_list must be less than 100"
NAMES_PER_LOOKUP = 1000  # embeddingVectors' limit on names per call

# The Vertex / LayerNext seeds accept these for compatibility; engineshed runs everything on its own workers.
INFERENCE_PLATFORMS = ("use_env", "aws", "local")
CONTENT_TYPES = {"image": "image", "video": "video"}  # LayerNext's content_type -> our identifierTypeId


def op(fn: Callable[P, Operation[T]]) -> Callable[P, T]:
    """Turn an operation (a generator method) into a method the client runs with its transport.

    Typed as the sync client sees it (the parameters kept, the operation's result returned); the async client's
    methods return an awaitable of that result.
    """

    @functools.wraps(fn)
    def method(self: Operations, *args: Any, **kwargs: Any) -> Any:
        return self._run(fn(self, *args, **kwargs))  # type: ignore[arg-type]

    return cast(Callable[P, T], method)


def _q(query: str, *, idempotent: bool, uploads: Mapping[str, Upload] | None = None, **variables: Any) -> Call:
    return Call(query=query, variables={k: v for k, v in variables.items()}, uploads=dict(uploads or {}), idempotent=idempotent)


def _embedding_records(embedding_list: Any, vector_dimension: Any) -> tuple[list[dict[str, Any]], list[int]]:
    """The seed's ``[{"uniqueName", "embeddings"}]`` records checked and made plain (InvalidInputError naming the
    record otherwise), and ``vector_dimension`` (``[2048]`` or ``2048``) as a list."""
    if isinstance(vector_dimension, bool):
        raise InvalidInputError("vector_dimension must be a number or a list of one number, such as [2048]")
    if isinstance(vector_dimension, numbers.Integral):  # numpy's integers too
        dims = [int(vector_dimension)]
    elif isinstance(vector_dimension, Sequence) and not isinstance(vector_dimension, str) and all(
            isinstance(d, numbers.Integral) and not isinstance(d, bool) for d in vector_dimension):
        dims = [int(d) for d in vector_dimension]
    else:
        raise InvalidInputError(f"vector_dimension must be a number or a list of one number, such as [2048], not {vector_dimension!r}")
    if isinstance(embedding_list, (str, bytes, Mapping)) or not isinstance(embedding_list, Sequence):
        raise InvalidInputError('embedding_list must be a list of {"uniqueName": ..., "embeddings": [...]} records')
    records: list[dict[str, Any]] = []
    seen: set[str] = set()
    for position, record in enumerate(embedding_list):
        where = f"embedding_list[{position}]"
        if not isinstance(record, Mapping):
            raise InvalidInputError(f'{where} must be a {{"uniqueName": ..., "embeddings": [...]}} record')
        name, values = record.get("uniqueName"), record.get("embeddings")
        if not isinstance(name, str) or not name.strip():
            raise InvalidInputError(f"{where} needs a uniqueName (a non-empty string)")
        if name in seen:
            raise InvalidInputError(f"{where}: uniqueName {name!r} is given more than once")
        seen.add(name)
        if isinstance(values, (str, bytes)) or not isinstance(values, Sequence) and not hasattr(values, "tolist"):
            raise InvalidInputError(f"{where} ({name}): embeddings must be a list of numbers")
        vector = values.tolist() if hasattr(values, "tolist") else list(values)
        if not all(isinstance(x, numbers.Real) and not isinstance(x, bool) and math.isfinite(x) for x in vector):
            raise InvalidInputError(f"{where} ({name}): embeddings must be finite numbers (no NaN, infinity or text)")
        records.append({"uniqueName": name, "embeddings": [float(x) for x in vector]})
    return records, dims


def _insert_embeddings(records: list[dict[str, Any]], model_name: str, dims: list[int], library_id: str | None) -> Operation[int]:
    data = yield _q("mutation($m: String!, $d: [Int!]!, $e: [EmbeddingRecord!]!, $l: ID) { insertEmbeddings(modelId: $m, "
                    "vectorDimension: $d, embeddings: $e, libraryId: $l) { inserted } }",
                    idempotent=True, m=model_name, d=dims, e=records, l=library_id)
    return data["insertEmbeddings"]["inserted"]


def with_new_model(engine_id: str, library_id: str, start: Callable[[str], Operation[T]]) -> Operation[T]:
    """``createLibraryEngineModel``, then ``start(model_id)`` (the ``createJob`` that trains it).

    Upstream needs the model before the job, so the two cannot be one request. When the server refuses the job
    (bad config, unknown model, a name too long...), the model just made would stay behind as a pending model
    no job trains: it is deleted again before the refusal is raised, so a refused training leaves nothing.
    """
    data = yield _q("mutation($i: CreateLibraryEngineModel!) { createLibraryEngineModel(input: $i) { id } }",
                    idempotent=False, i={"engineId": engine_id, "libraryId": library_id})
    model_id = data["createLibraryEngineModel"]["id"]
    try:
        return (yield from start(model_id))
    except (InvalidInputError, NotFoundError, NotAllowedError):
        # Only a refusal means no job was made. After service_unavailable, an internal error or a proxy's 5xx the
        # job may exist (committed before the answer was lost): deleting its model then would fail that training.
        try:
            yield _q("mutation($id: ID!) { deleteLibraryEngineModel(id: $id) { id } }", idempotent=True, id=model_id)
        except ApiError:
            pass  # the refusal is what the caller needs to see; the model is visible as pending
        raise


def _epoch(value: Any, *, end_of_day: bool = False) -> int | None:
    """A seed filter date ("2022-08-02", an ISO date-time, a datetime/date or epoch seconds) as epoch seconds.

    A bare date as ``to_date`` means the whole of that day (UTC), as a person writing it means it.
    """
    if value is None or value == "":
        return None
    if isinstance(value, (int, float)):
        return int(value)
    if isinstance(value, datetime):
        moment = value if value.tzinfo else value.replace(tzinfo=timezone.utc)
        return int(moment.timestamp())
    if isinstance(value, date):
        day = value
    else:
        text = str(value).strip()
        try:
            day = date.fromisoformat(text)
        except ValueError:
            try:
                moment = datetime.fromisoformat(text.replace("Z", "+00:00"))
            except ValueError:
                raise InvalidInputError(f"filter date {value!r} is not a date (YYYY-MM-DD) or an ISO date-time") from None
            return _epoch(moment)
    start = datetime.combine(day, dtime.min, tzinfo=timezone.utc)
    if end_of_day:
        start += timedelta(days=1, seconds=-1)
    return int(start.timestamp())


def identifier_filter(filter: Mapping[str, Any] | None) -> dict[str, Any] | None:
    """The seed's filter ``{"annotation_types": [...], "from_date": ..., "to_date": ...}`` as ``IdentifierFilter``.

    camelCase keys (``annotationTypes``, ``fromDateTime``, ``toDateTime``) pass through; unknown keys are refused
    rather than silently ignored.
    """
    if not filter:
        return None
    known = {"annotation_types", "annotationTypes", "from_date", "fromDateTime", "to_date", "toDateTime"}
    unknown = set(filter) - known
    if unknown:
        raise InvalidInputError(f"unknown filter keys: {', '.join(sorted(unknown))} (known: annotation_types, from_date, to_date)")
    out: dict[str, Any] = {}
    types = filter.get("annotation_types", filter.get("annotationTypes"))
    if types is not None:
        out["annotationTypes"] = [str(t) for t in types]
    start = filter.get("from_date", filter.get("fromDateTime"))
    end = filter.get("to_date", filter.get("toDateTime"))
    for key, value, end_of_day in (("fromDateTime", start, False), ("toDateTime", end, True)):
        if value is None:
            continue
        try:
            out[key] = _epoch(value, end_of_day=end_of_day)
        except InvalidInputError as exc:
            seed_name = "from_date" if key == "fromDateTime" else "to_date"
            raise InvalidInputError(f"filter {seed_name}: {exc.message}") from None
    return out or None


def _platform(inference_platform: str | None) -> None:
    """Accepted for the seed's signatures; everything runs on engineshed's own workers, so it changes nothing."""
    if inference_platform is not None and inference_platform not in INFERENCE_PLATFORMS:
        raise InvalidInputError(f"inference_platform must be one of {', '.join(INFERENCE_PLATFORMS)} (it is ignored here)")


def _content_type(content_type: str) -> str:
    try:
        return CONTENT_TYPES[content_type]
    except KeyError:
        raise InvalidInputError(f"content_type must be 'image' or 'video', not {content_type!r}") from None


def _model_name(model_id: str | None, model_name: str | None, *, required: bool = False) -> str | None:
    """The model the call names: ``model_id`` (the seeds' parameter tables) or ``model_name`` (their signature
    lines), not two different ones."""
    if model_id is not None and model_name is not None and model_id != model_name:
        raise InvalidInputError(f"model_id {model_id!r} and model_name {model_name!r} name different models; give one")
    name = model_id if model_id is not None else model_name
    if name is not None and (not isinstance(name, str) or not name.strip()):
        raise InvalidInputError(f"the model name must be a non-empty string, not {name!r}")
    if required and name is None:
        raise InvalidInputError("name the model: model_id (or model_name)")
    return name


def _model(model_id: str | None) -> str | None:
    """The seeds give ``model_id`` the default value ``'default'``: the system default model, as no model at all."""
    return None if model_id is None or model_id.strip().lower() == "default" else model_id


class Operations:
    """The API, operation by operation. Use :class:`engineshed.client.Client` or :class:`~engineshed.client.AsyncClient`."""

    def _run(self, operation: Operation[Any]) -> Any:  # pragma: no cover - each client defines it
        raise NotImplementedError

    # -- the caller ---------------------------------------------------------------------------------------------

    @op
    def me(self) -> Operation[dict[str, Any]]:
        """``me``: the token (id, name, scope in jsondata) and its organization (``organizationId``)."""
        data = yield _q("{ me { id name organizationId jsondata organization { id name } } }", idempotent=True)
        return data["me"]

    @op
    def tokens(self, offset: int = 0, limit: int = 100) -> Operation[list[dict[str, Any]]]:
        """``tokens``: the organization's API tokens, never their secrets (admin tokens only)."""
        data = yield _q("query($o: Int, $l: Int) { tokens(offset: $o, limit: $l) { id label scope engineId createdDateTime revoked } }",
                        idempotent=True, o=offset, l=limit)
        return data["tokens"]

    @op
    def create_token(self, scope: Literal["admin", "read", "engine"], label: str | None = None,
                     engine_id: str | None = None) -> Operation[dict[str, Any]]:
        """``createToken``: a new token of the caller's organization; ``token`` in the answer is shown only once."""
        data = yield _q("mutation($i: CreateToken!) { createToken(input: $i) { id label scope engineId token createdDateTime } }",
                        idempotent=False, i={"scope": scope, "label": label, "engineId": engine_id})
        return data["createToken"]

    @op
    def revoke_token(self, token_id: str) -> Operation[dict[str, Any]]:
        """``revokeToken``: revoke at once, in every gateway."""
        data = yield _q("mutation($id: ID!) { revokeToken(id: $id) { id revoked revokedDateTime } }", idempotent=True, id=token_id)
        return data["revokeToken"]

    # -- the model registry (LayerNext 7.1) ------------------------------------------------------------------------

    @op
    def register_model(self, path: str | Path, model_id: str | None = None, application: str | None = None, *,
                       description: str | None = None, labels: Mapping[str, str] | None = None,
                       aliases: Sequence[str] | None = None, manifest: Mapping[str, Any] | None = None,
                       model_name: str | None = None, wait: bool = True, timeout: float = 600.0) -> Operation[Model]:
        """``registerModel``: register a model package as the next version of ``model_id`` (the seed's name; its
        signature line calls it ``model_name``, which is taken too).

        The server checks the package at once and then runs it on a worker (the trial) before it may be used;
        with ``wait`` (the default) this returns once the trial is over, so the model is usable as the seed says,
        and a failed trial raises :class:`InvalidInputError` with its reason. ``wait=False`` returns the version
        while it is still ``validating``. TimeoutError after ``timeout`` seconds (no worker running, say).

        ``path`` is a package file (.onnx, .tar.gz, .zip …) streamed as it is, or a directory, packed here as a
        .tar.gz first. ``application``: ``embedding``, ``auto_tagging`` or ``auto_annotation`` (the seed's
        ``autotagging`` and ``auto tagging`` spellings are accepted). The server validates the package and
        answers why it refuses one (e.g. the seed's ``code/inference.py`` + ``.pt`` layout: uploads are data,
        never code); that message arrives as :class:`InvalidInputError`.
        """
        name = _model_name(model_id, model_name, required=True)
        if application is None:
            raise InvalidInputError("application is required: embedding, auto_tagging or auto_annotation")
        app = packing.application(application)
        if manifest is not None and not isinstance(manifest, Mapping):
            raise InvalidInputError("manifest must be a mapping (a dict of the manifest's fields)")
        with packing.package(path) as upload:
            data = yield _q(
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
            model = yield from Operations.model.__wrapped__(self, model["name"], model["version"])  # type: ignore[attr-defined]
        if model["status"] == "failed":
            raise InvalidInputError(f"model {model['ref']} failed its trial run: {model.get('error') or 'no reason given'}",
                                    data={"reason": "trial", "model": model["ref"]})
        return model

    @op
    def models(self, application: str | None = None, name: str | None = None, labels: Mapping[str, str] | None = None,
               status: str | None = None, system: bool | None = None, alias: str | None = None,
               offset: int = 0, limit: int = 30) -> Operation[Page[Model]]:
        """``models``: registered model versions visible to the organization (its own and the system's)."""
        data = yield _q(
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
        data = yield _q(f"query($n: String!, $v: Int, $a: String) {{ model(name: $n, version: $v, alias: $a) {{ {MODEL_FIELDS} }} }}",
                        idempotent=True, n=name, v=version, a=alias)
        if data["model"] is None:
            raise NotFoundError(f"no model {name}" + (f"@{version}" if version else f"@{alias}" if alias else ""))
        return data["model"]

    @op
    def update_model(self, name: str, description: str | None = None, labels: Mapping[str, str] | None = None,
                     aliases: Mapping[str, int] | None = None) -> Operation[Model]:
        """``updateModel``: a model's description and labels, and ``aliases`` as ``{alias: version}`` to move."""
        pointers = [{"alias": a, "version": v} for a, v in (aliases or {}).items()] or None
        data = yield _q(f"mutation($i: UpdateModel!) {{ updateModel(input: $i) {{ {MODEL_FIELDS} }} }}", idempotent=True,
                        i={"name": name, "description": description, "labels": dict(labels) if labels else None, "aliases": pointers})
        return data["updateModel"]

    @op
    def set_model_alias(self, name: str, version: int, alias: str) -> Operation[Model]:
        """``setModelAlias``: point ``alias`` (``default`` too) at ``version``."""
        data = yield _q(f"mutation($n: String!, $v: Int!, $a: String!) {{ setModelAlias(name: $n, version: $v, alias: $a) "
                        f"{{ {MODEL_FIELDS} }} }}", idempotent=True, n=name, v=version, a=alias)
        return data["setModelAlias"]

    @op
    def delete_model_version(self, name: str, version: int) -> Operation[dict[str, Any]]:
        """``deleteModelVersion``: :class:`NotAllowedError` while an alias, a trained model or a job uses it."""
        data = yield _q("mutation($n: String!, $v: Int!) { deleteModelVersion(name: $n, version: $v) { id message } }",
                        idempotent=False, n=name, v=version)
        return data["deleteModelVersion"]

    @op
    def set_default_model(self, library_engine_model_id: str) -> Operation[LibraryEngineModel]:
        """``setDefaultModel``: make a trained model its library's default for its engine (a rollback, say)."""
        data = yield _q(f"mutation($id: ID!) {{ setDefaultModel(libraryEngineModelId: $id) {{ {ENGINE_MODEL_FIELDS} }} }}",
                        idempotent=True, id=library_engine_model_id)
        return data["setDefaultModel"]

    # -- libraries, entities, identifiers ---------------------------------------------------------------------------

    @op
    def libraries(self, name: str | None = None, offset: int = 0, limit: int = 30) -> Operation[Page[Library]]:
        """``libraries``: the organization's libraries (``name``: a case-insensitive substring)."""
        data = yield _q(f"query($n: String, $o: Int, $l: Int) {{ libraries(name: $n, offset: $o, limit: $l) "
                        f"{{ offset limit count totalCount records {{ {LIBRARY_FIELDS} }} }} }}", idempotent=True, n=name, o=offset, l=limit)
        return data["libraries"]

    @op
    def library(self, library_id: str) -> Operation[Library]:
        """``library``: one library; :class:`NotFoundError` when the organization has none by that id."""
        data = yield _q(f"query($id: ID!) {{ library(id: $id) {{ {LIBRARY_FIELDS} }} }}", idempotent=True, id=library_id)
        if data["library"] is None:
            raise NotFoundError(f"no library {library_id}")
        return data["library"]

    @op
    def find_library(self, name: str) -> Operation[Library | None]:
        """The library named exactly ``name`` (the API's name filter is a substring match), or None."""
        offset = 0
        while True:
            data = yield _q(f"query($n: String, $o: Int) {{ libraries(name: $n, offset: $o, limit: 100) "
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
        data = yield _q(f"mutation($i: CreateLibrary) {{ createLibrary(input: $i) {{ {LIBRARY_FIELDS} }} }}", idempotent=False,
                        i={"name": name, "libraryTypeId": library_type_id, "description": description})
        return data["createLibrary"]

    @op
    def publish_library(self, library_id: str) -> Operation[Library]:
        """``publishLibrary``: publish the library's entities and bump its version."""
        data = yield _q(f"mutation($id: ID!) {{ publishLibrary(id: $id) {{ {LIBRARY_FIELDS} }} }}", idempotent=False, id=library_id)
        return data["publishLibrary"]

    @op
    def delete_library(self, library_id: str) -> Operation[dict[str, Any]]:
        """``deleteLibrary``."""
        data = yield _q("mutation($id: ID!) { deleteLibrary(id: $id) { id message } }", idempotent=True, id=library_id)
        return data["deleteLibrary"]

    @op
    def entities(self, library_id: str, name: str | None = None, offset: int = 0, limit: int = 30) -> Operation[Page[dict[str, Any]]]:
        """``entities(libraryIds: [library_id])``."""
        data = yield _q(f"query($l: [ID!], $n: String, $o: Int, $lim: Int) {{ entities(libraryIds: $l, name: $n, offset: $o, limit: $lim) "
                        f"{{ offset limit count totalCount records {{ {ENTITY_FIELDS} }} }} }}",
                        idempotent=True, l=[library_id], n=name, o=offset, lim=limit)
        return data["entities"]

    @op
    def create_entity(self, library_id: str, name: str, jsondata: Mapping[str, Any] | None = None,
                      description: str | None = None) -> Operation[dict[str, Any]]:
        """``createEntity``."""
        data = yield _q(f"mutation($i: CreateEntity!) {{ createEntity(input: $i) {{ {ENTITY_FIELDS} }} }}", idempotent=False,
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
        data = yield _q(f"mutation($i: CreateEntityIdentifier!) {{ createEntityIdentifier(input: $i) {{ {IDENTIFIER_FIELDS} }} }}",
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
            data = yield _q(
                "query($l: [ID!], $o: Int) { entities(libraryIds: $l, offset: $o, limit: 200, orderBy: createdDateTime, orderDirection: asc) "
                "{ count records { id name identifiers(limit: 200) { totalCount records { contentSha256 } } } } }",
                idempotent=True, l=[library_id], o=offset,
            )
            page = data["entities"]
            for entity in page["records"]:
                hashes = {r["contentSha256"] for r in entity["identifiers"]["records"] if r["contentSha256"]}
                seen = len(entity["identifiers"]["records"])
                while seen < entity["identifiers"]["totalCount"]:
                    more = yield _q("query($id: ID!, $o: Int) { entity(id: $id) { identifiers(offset: $o, limit: 1000) "
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

    # -- jobs and training ----------------------------------------------------------------------------------------

    @op
    def jobs(self, status: Sequence[str] | None = None, library_id: str | None = None, engine_ids: Sequence[str] | None = None,
             order_by: Sequence[Mapping[str, str]] | None = None, offset: int = 0, limit: int = 30,
             labels: Mapping[str, str] | None = None) -> Operation[Page[Job]]:
        """``jobs``: the organization's jobs, newest first unless ``order_by`` says otherwise; ``labels``: only
        jobs carrying every given pair."""
        data = yield _q(
            "query($s: [JobStatusFilter!], $l: ID, $e: [ID!], $ob: [JobSortField!], $o: Int, $lim: Int, $lb: JSONData) "
            f"{{ jobs(status: $s, libraryId: $l, engineIds: $e, orderBy: $ob, offset: $o, limit: $lim, labels: $lb) "
            f"{{ offset limit count totalCount records {{ {JOB_FIELDS} }} }} }}",
            idempotent=True, s=list(status) if status else None, l=library_id, e=list(engine_ids) if engine_ids else None,
            ob=[dict(o) for o in order_by] if order_by else None, o=offset, lim=limit, lb=dict(labels) if labels else None,
        )
        return data["jobs"]

    @op
    def job(self, job_id: str) -> Operation[Job]:
        """``job``: one job with its tasks; :class:`NotFoundError` when the organization has none by that id."""
        data = yield _q(f"query($id: ID!) {{ job(id: $id) {{ {JOB_FIELDS} }} }}", idempotent=True, id=job_id)
        if data["job"] is None:
            raise NotFoundError(f"no job {job_id}")
        return data["job"]

    @op
    def create_job(self, tasks: Sequence[Mapping[str, Any]], name: str | None = None) -> Operation[Job]:
        """``createJob``: ``tasks`` as ``CreateTask`` inputs (``{"engineId": …, "payload": {…}}``)."""
        data = yield _q(f"mutation($i: CreateJob) {{ createJob(input: $i) {{ {JOB_FIELDS} }} }}", idempotent=False,
                        i={"tasks": [dict(t) for t in tasks], "name": name})
        return data["createJob"]

    @op
    def cancel_job(self, job_id: str) -> Operation[dict[str, Any]]:
        """``cancelJob``: cancel a queued or running job."""
        data = yield _q("mutation($id: ID!) { cancelJob(id: $id) { id message } }", idempotent=True, id=job_id)
        return data["cancelJob"]

    @op
    def retry_job(self, job_id: str) -> Operation[Job]:
        """``retryJob``: run a failed job's failed tasks again (:class:`NotAllowedError` for a job in any other state)."""
        data = yield _q(f"mutation($id: ID!) {{ retryJob(id: $id) {{ {JOB_FIELDS} }} }}", idempotent=False, id=job_id)
        return data["retryJob"]

    @op
    def delete_job(self, job_id: str) -> Operation[dict[str, Any]]:
        """``deleteJob``."""
        data = yield _q("mutation($id: ID!) { deleteJob(id: $id) { id message } }", idempotent=True, id=job_id)
        return data["deleteJob"]

    @op
    def engines_for(self, identifier_type_id: str) -> Operation[list[dict[str, Any]]]:
        """Engines that train libraries of ``identifier_type_id`` (``engines`` filtered on identifierTypeIds)."""
        data = yield _q("{ engines(limit: 100) { records { id name libraryRequired identifierTypeIds modes } } }", idempotent=True)
        return [e for e in data["engines"]["records"] if identifier_type_id in e["identifierTypeIds"] and "library-train" in e["modes"]]

    @op
    def default_engine(self, library_id: str) -> Operation[str]:
        """The engine ``train`` uses when none is named: a library's identifier type's preferred engine.

        Preference: the face engine for face libraries when installed, then the gallery; the speaker for audio.
        """
        data = yield _q("query($id: ID!) { library(id: $id) { id libraryType { entityIdentifierTypes { id } } } }",
                        idempotent=True, id=library_id)
        if data["library"] is None:
            raise NotFoundError(f"no library {library_id}")
        types = [t["id"] for t in data["library"]["libraryType"]["entityIdentifierTypes"]]
        engines = yield _q("{ engines(limit: 100) { records { id identifierTypeIds modes } } }", idempotent=True)
        trainable = [e for e in engines["engines"]["records"] if "library-train" in e["modes"]]
        preferred = ("engineshed-face", "engineshed-gallery", "engineshed-speaker", "engineshed-classifier")
        for type_id in types:
            candidates = [e["id"] for e in trainable if type_id in e["identifierTypeIds"]]
            for engine_id in preferred:
                if engine_id in candidates:
                    return engine_id
            if candidates:
                return sorted(candidates)[0]
        raise InvalidInputError(f"no installed engine trains {', '.join(types) or 'this library type'}; name one with engine_id")

    @op
    def train(self, library_id: str, engine_id: str | None = None, config: Mapping[str, Any] | None = None,
              name: str | None = None) -> Operation[Job]:
        """Train a new model of the library: ``createLibraryEngineModel`` then a ``library-train`` ``createJob``.

        ``engine_id`` None: :meth:`default_engine`. The job's ``tasks[0].payload.libraryEngineModelId`` names the
        model it trains; follow it with :meth:`watch_job` or :meth:`wait_for_job`.
        """
        if engine_id is None:
            engine_id = yield from Operations.default_engine.__wrapped__(self, library_id)  # type: ignore[attr-defined]
        assert engine_id is not None

        def start(model_id: str) -> Operation[Job]:
            payload: dict[str, Any] = {"mode": "library-train", "libraryId": library_id, "libraryEngineModelId": model_id}
            if config:
                payload["config"] = dict(config)
            job = yield from Operations.create_job.__wrapped__(self, [{"engineId": engine_id, "payload": payload}], name)  # type: ignore[attr-defined]
            job["libraryEngineModelId"] = model_id
            return job

        return (yield from with_new_model(engine_id, library_id, start))

    @op
    def wait_for_job(self, job_id: str, timeout: float | None = None, poll: float = 1.0) -> Operation[Job]:
        """Poll ``job`` until it is complete, failed or cancelled (or ``timeout`` seconds pass: TimeoutError)."""
        deadline = None if timeout is None else time.monotonic() + timeout
        interval = min(poll, 0.25)
        while True:
            job = yield from Operations.job.__wrapped__(self, job_id)  # type: ignore[attr-defined]
            if job["status"] in ("complete", "failed", "cancelled"):
                return job
            if deadline is not None and time.monotonic() >= deadline:
                raise TimeoutError(f"job {job_id} is still {job['status']} after {timeout}s")
            yield Call(sleep=interval)
            interval = min(poll, interval * 2)

    @op
    def library_engine_model(self, library_engine_model_id: str) -> Operation[LibraryEngineModel]:
        """``libraryEngineModel``: a trained (or training) model of a library."""
        data = yield _q(f"query($id: ID!) {{ libraryEngineModel(id: $id) {{ {ENGINE_MODEL_FIELDS} }} }}", idempotent=True,
                        id=library_engine_model_id)
        if data["libraryEngineModel"] is None:
            raise NotFoundError(f"no library engine model {library_engine_model_id}")
        return data["libraryEngineModel"]

    @op
    def latest_model(self, library_id: str, engine_id: str | None = None) -> Operation[LibraryEngineModel | None]:
        """The library's newest complete trained model (of ``engine_id`` if given), or None."""
        data = yield _q(f"query($id: ID!, $e: ID) {{ library(id: $id) {{ engineModels(engineId: $e, trainStatus: complete, limit: 1) "
                        f"{{ records {{ {ENGINE_MODEL_FIELDS} }} }} }} }}", idempotent=True, id=library_id, e=engine_id)
        if data["library"] is None:
            raise NotFoundError(f"no library {library_id}")
        records = data["library"]["engineModels"]["records"]
        return records[0] if records else None

    # -- recognition ----------------------------------------------------------------------------------------------

    @op
    def recognize(self, file: str | Path | bytes | Upload | None = None, *, library_engine_model_id: str | None = None,
                  model_id: str | None = None, library_id: str | None = None, engine_id: str | None = None,
                  url: str | None = None, top_k: int = 5, threshold: float | None = None) -> Operation[RecognitionResult]:
        """``recognize``: a file (streamed) or URL against a trained model, a registered auto_tagging model, or a library.

        With ``library_id`` and neither model argument, the library's default model for ``engine_id`` (else for the
        engine of its newest complete model) answers; a server older than that (no ``recognize(libraryId)``) gets the library's
        newest complete model instead. :class:`NotFoundError` says when the library has no trained model yet.
        """
        uploads = {"f": Upload.of(file)} if file is not None else {}
        fields = f"{{ {RECOGNITION_FIELDS} }} }}"
        common = dict(u=url, k=top_k, t=threshold, f=None)
        if library_engine_model_id is None and model_id is None:
            if library_id is None:
                raise InvalidInputError("give library_engine_model_id, model_id or library_id")
            latest = yield from Operations.latest_model.__wrapped__(self, library_id, engine_id)  # type: ignore[attr-defined]
            if latest is None:
                raise NotFoundError(f"library {library_id} has no trained model yet: train it first")
            try:
                data = yield _q("query($l: ID, $e: ID, $u: String, $k: Int, $t: Float, $f: Upload) { recognize(libraryId: $l, "
                                "engineId: $e, url: $u, topK: $k, threshold: $t, file: $f) " + fields,
                                # the engine last trained (unless named): the library's default engine may be
                                # one it was never trained with
                                idempotent=True, uploads=uploads, l=library_id, e=engine_id or latest["engineId"], **common)
                return data["recognize"]
            except InvalidInputError as exc:
                if "Unknown argument" not in exc.message:
                    raise
            library_engine_model_id = latest["id"]
        data = yield _q(
            "query($m: ID, $mid: String, $u: String, $k: Int, $t: Float, $f: Upload) { recognize(libraryEngineModelId: $m, "
            "modelId: $mid, url: $u, topK: $k, threshold: $t, file: $f) " + fields,
            idempotent=True, uploads=uploads, m=library_engine_model_id, mid=model_id, **common,
        )
        return data["recognize"]

    # -- #13 embeddings (LayerNext 7.4 - 7.8) ----------------------------------------------------------------------

    @op
    def generate_embeddings_for_collection(self, collection_id: str, model_id: str | None = None, query: str | None = None,
                                           filter: Mapping[str, Any] | None = None,
                                           inference_platform: str = "use_env", *, model_name: str | None = None) -> Operation[Job]:
        """``generateEmbeddings(libraryId)``: embed a library's (the seed's collection's) identifiers.

        ``model_id``: a registered embedding model (``name``, ``name@3``, ``name@alias``); None: the system default.
        ``filter``: the seed's ``{"annotation_types", "from_date", "to_date"}``. ``inference_platform`` is accepted
        for the seed's signature and ignored (engineshed's workers run it). Returns the job.
        """
        _platform(inference_platform)
        data = yield _q("mutation($l: ID, $m: String, $f: IdentifierFilter, $q: String) { generateEmbeddings(libraryId: $l, modelId: $m, "
                        f"filter: $f, query: $q) {{ {JOB_FIELDS} }} }}", idempotent=False, l=collection_id,
                        m=_model(_model_name(model_id, model_name)),
                        f=identifier_filter(filter), q=query or None)
        return data["generateEmbeddings"]

    @op
    def generate_embeddings_to_metalake(self, content_type: str, model_id: str | None = None, query: str | None = None,
                                        filter: Mapping[str, Any] | None = None,
                                        inference_platform: str = "use_env", *, model_name: str | None = None) -> Operation[Job]:
        """``generateEmbeddings(identifierTypeId)``: every library of the organization holding ``content_type``
        (``'image'`` or ``'video'``, the identifier type of that id)."""
        _platform(inference_platform)
        data = yield _q("mutation($t: ID, $m: String, $f: IdentifierFilter, $q: String) { generateEmbeddings(identifierTypeId: $t, "
                        f"modelId: $m, filter: $f, query: $q) {{ {JOB_FIELDS} }} }}", idempotent=False, t=_content_type(content_type),
                        m=_model(_model_name(model_id, model_name)), f=identifier_filter(filter), q=query or None)
        return data["generateEmbeddings"]

    @op
    def insert_image_embeddings_batch(self, embedding_list: Sequence[Mapping[str, Any]], model_name: str,
                                      vector_dimension: Sequence[int] | int, session_id: str = "",
                                      library_id: str | None = None) -> Operation[int]:
        """``insertEmbeddings``: fewer than 100 ``{"uniqueName", "embeddings"}`` records in one request, all or
        none; how many went in.

        ``session_id`` is accepted for the seed's signature; there are no MetaLake sessions here, so it must be a
        string and is otherwise unused.
        """
        if not isinstance(session_id, str):
            raise InvalidInputError("session_id must be a string (it is accepted for compatibility and unused)")
        if len(embedding_list) >= 100:
            raise InvalidInputError(f"embedding_list must hold fewer than 100 records, not {len(embedding_list)}; use insert_image_embeddings")
        records, dims = _embedding_records(embedding_list, vector_dimension)
        return (yield from _insert_embeddings(records, model_name, dims, library_id))

    @op
    def insert_image_embeddings(self, embedding_list: Sequence[Mapping[str, Any]], model_name: str,
                                vector_dimension: Sequence[int] | int, library_id: str | None = None) -> Operation[int]:
        """Any number of records, sent in batches under 100 (``insertEmbeddings`` each); how many went in.

        Every record is checked here before the first batch is sent, so a malformed one sends nothing. Each batch
        is all or nothing on the server; when the server refuses a later batch (an unknown uniqueName, say), the
        batches before it are stored: the error's ``data["inserted"]`` says how many, and sending the whole list
        again once it is fixed is safe (an insert replaces the name's vector for that model).
        """
        records, dims = _embedding_records(embedding_list, vector_dimension)
        total = 0
        for start in range(0, len(records), EMBEDDING_BATCH):
            try:
                total += yield from _insert_embeddings(records[start:start + EMBEDDING_BATCH], model_name, dims, library_id)
            except ApiError as exc:
                if total:
                    exc.data = {**exc.data, "inserted": total}
                    exc.message = (f"{exc.message} (in records {start}-{min(start + EMBEDDING_BATCH, len(records)) - 1}; "
                                   f"the {total} records before them were stored)")
                    exc.args = (exc.message,)
                raise
        return total

    @op
    def get_embedding_vector(self, unique_names: Sequence[str], model_name: str | None = None,
                             library_id: str | None = None) -> Operation[list[dict[str, Any]]]:
        """``embeddingVectors``: ``[{"uniqueName", "embeddings", "model", "dimension", …}]`` for the names given
        (a name with no vector for the model is left out); any number of names, asked 1,000 at a time."""
        if isinstance(unique_names, (str, bytes)):
            raise InvalidInputError("unique_names must be a list of strings, such as ['photo.jpg']")
        names = list(unique_names)  # once: a generator would be spent by the check below
        if not all(isinstance(n, str) for n in names):
            raise InvalidInputError("unique_names must be a list of strings, such as ['photo.jpg']")
        found: list[dict[str, Any]] = []
        for start in range(0, len(names), NAMES_PER_LOOKUP):
            data = yield _q("query($n: [String!]!, $m: String, $l: ID) { embeddingVectors(uniqueNames: $n, modelId: $m, libraryId: $l) "
                            "{ uniqueName identifierId libraryId model dimension embeddings } }",
                            idempotent=True, n=names[start:start + NAMES_PER_LOOKUP], m=model_name, l=library_id)
            found += data["embeddingVectors"]
        return found

    @op
    def similar_identifiers(self, *, library_id: str | None = None, identifier_id: str | None = None,
                            file: str | Path | bytes | None = None, vector: Sequence[float] | None = None,
                            model_id: str | None = None, limit: int = 10, threshold: float | None = None) -> Operation[list[dict[str, Any]]]:
        """``similarIdentifiers``: the nearest identifiers to one identifier, a file or a vector."""
        uploads = {"f": Upload.of(file)} if file is not None else {}
        data = yield _q("query($l: ID, $i: ID, $v: [Float!], $m: String, $n: Int, $t: Float, $f: Upload) { similarIdentifiers(libraryId: $l, "
                        "identifierId: $i, vector: $v, modelId: $m, limit: $n, threshold: $t, file: $f) "
                        f"{{ score identifier {{ {IDENTIFIER_FIELDS} }} }} }}", idempotent=True, uploads=uploads,
                        l=library_id, i=identifier_id, v=list(vector) if vector is not None else None, m=model_id, n=limit, t=threshold, f=None)
        return data["similarIdentifiers"]

    # -- #14 labeling (LayerNext 7.2 - 7.3, ModelArts intelligent tasks) --------------------------------------------

    def _auto_tag(self, target: dict[str, Any], model_id: str | None, input_resolution: Sequence[int],
                  confidence_threshold: float, query: str | None, filter: Mapping[str, Any] | None,
                  inference_platform: str) -> Operation[Job]:
        _platform(inference_platform)
        if (isinstance(input_resolution, (str, bytes)) or not isinstance(input_resolution, Sequence) or len(input_resolution) != 2
                or not all(isinstance(v, numbers.Integral) and not isinstance(v, bool) for v in input_resolution)):
            raise InvalidInputError(f"input_resolution must be (width, height) in whole pixels, such as (300, 300), not {input_resolution!r}")
        if isinstance(confidence_threshold, bool) or not isinstance(confidence_threshold, numbers.Real):
            raise InvalidInputError(f"confidence_threshold must be a number between 0 and 1, not {confidence_threshold!r}")
        if query is not None and not isinstance(query, str):
            raise InvalidInputError(f"query must be a string such as 'annotation.label=Bird', not {query!r}")
        data = yield _q(f"mutation($i: AutoTag!) {{ autoTag(input: $i) {{ {JOB_FIELDS} }} }}", idempotent=False, i={
            **target, "modelId": _model(model_id), "inputResolution": [int(v) for v in input_resolution],
            "confidenceThreshold": float(confidence_threshold), "query": query, "filter": identifier_filter(filter)})
        return data["autoTag"]

    @op
    def auto_tag_collection(self, collection_id: str, model_id: str | None = None, input_resolution: Sequence[int] = (300, 300),
                            confidence_threshold: float = 0.5, query: str | None = None, filter: Mapping[str, Any] | None = None,
                            inference_platform: str = "use_env", *, model_name: str | None = None) -> Operation[Job]:
        """``autoTag(libraryId)``: tag a library's identifiers with a registered auto_tagging model (None: the default).

        The tags arrive as suggestions (:meth:`suggestions`) to accept or reject. ``inference_platform`` is accepted
        for the seed's signature and ignored.
        """
        return (yield from self._auto_tag({"libraryId": collection_id}, _model_name(model_id, model_name), input_resolution,
                                          confidence_threshold, query, filter, inference_platform))

    @op
    def generate_auto_tags_to_metalake(self, content_type: str, model_id: str | None = None, input_resolution: Sequence[int] = (300, 300),
                                       confidence_threshold: float = 0.5, query: str | None = None,
                                       filter: Mapping[str, Any] | None = None, inference_platform: str = "use_env", *,
                                       model_name: str | None = None) -> Operation[Job]:
        """``autoTag(identifierTypeId)``: tag every library of the organization holding ``content_type`` ('image' / 'video')."""
        return (yield from self._auto_tag({"identifierTypeId": _content_type(content_type)}, _model_name(model_id, model_name),
                                          input_resolution, confidence_threshold, query, filter, inference_platform))

    @op
    def find_hard_examples(self, library_id: str, library_engine_model_id: str | None = None, model_id: str | None = None,
                           confidence_scope: str = "0.10-0.90", collect_key_sample: bool = False) -> Operation[Job]:
        """``findHardExamples``: mark the identifiers a model is least sure of (``EntityIdentifier.hard``)."""
        data = yield _q(f"mutation($i: FindHardExamples!) {{ findHardExamples(input: $i) {{ {JOB_FIELDS} }} }}", idempotent=False, i={
            "libraryId": library_id, "libraryEngineModelId": library_engine_model_id, "modelId": model_id,
            "confidenceScope": confidence_scope, "collectKeySample": collect_key_sample})
        return data["findHardExamples"]

    @op
    def auto_group(self, library_id: str, n_clusters: int | None = None, similarity_threshold: float | None = None,
                   feature: str = "embedding", model_id: str | None = None) -> Operation[Job]:
        """``autoGroup``: cluster a library's unassigned identifiers (see ``identifierGroups``)."""
        data = yield _q(f"mutation($i: AutoGroup!) {{ autoGroup(input: $i) {{ {JOB_FIELDS} }} }}", idempotent=False, i={
            "libraryId": library_id, "nClusters": n_clusters, "similarityThreshold": similarity_threshold,
            "feature": feature, "modelId": model_id})
        return data["autoGroup"]

    @op
    def suggestions(self, job_id: str | None = None, identifier_id: str | None = None, library_id: str | None = None,
                    status: str | None = None, offset: int = 0, limit: int = 30) -> Operation[Page[dict[str, Any]]]:
        """``suggestions``: labels proposed by auto-tagging, with their confidence and status."""
        data = yield _q("query($j: ID, $i: ID, $l: ID, $s: SuggestionStatus, $o: Int, $lim: Int) { suggestions(jobId: $j, identifierId: $i, "
                        "libraryId: $l, status: $s, offset: $o, limit: $lim) { offset limit count totalCount records "
                        "{ id identifierId jobId entityId label confidence modelVersion status } } }",
                        idempotent=True, j=job_id, i=identifier_id, l=library_id, s=status, o=offset, lim=limit)
        return data["suggestions"]

    @op
    def accept_suggestions(self, ids: Sequence[str]) -> Operation[list[dict[str, Any]]]:
        """``acceptSuggestions``."""
        data = yield _q("mutation($ids: [ID!]!) { acceptSuggestions(ids: $ids) { id status entityId label } }", idempotent=True, ids=list(ids))
        return data["acceptSuggestions"]

    @op
    def reject_suggestions(self, ids: Sequence[str]) -> Operation[list[dict[str, Any]]]:
        """``rejectSuggestions``."""
        data = yield _q("mutation($ids: [ID!]!) { rejectSuggestions(ids: $ids) { id status } }", idempotent=True, ids=list(ids))
        return data["rejectSuggestions"]

    @op
    def start_intelligent_task(self, dataset_id: str, task_type: str = "auto-label", model_id: str | None = None,
                               collect_key_sample: bool | None = None, config: Mapping[str, Any] | None = None,
                               project_id: str | None = None, **body: Any) -> Operation[str]:
        """ModelArts ``POST /v2/{project_id}/datasets/{dataset_id}/tasks``: start an auto-label, pre-label or
        auto-grouping task on a library (the dataset); the task id (the job's id).

        ``project_id`` None: the caller's organization (``me { organizationId }``). Other seed body keys pass
        through as given (``body``).
        """
        if project_id is None:
            project_id = (yield from Operations.me.__wrapped__(self))["organizationId"]  # type: ignore[attr-defined]
        payload: dict[str, Any] = {"task_type": task_type, **body}
        if model_id is not None:
            payload["model_id"] = model_id
        if collect_key_sample is not None:
            payload["collect_key_sample"] = collect_key_sample
        if config is not None:
            payload["config"] = dict(config)
        reply = yield Call(method="POST", path=f"/v2/{project_id}/datasets/{dataset_id}/tasks", json_body=payload)
        return reply["task_id"]

    @op
    def get_intelligent_task(self, dataset_id: str, task_id: str, project_id: str | None = None) -> Operation[dict[str, Any]]:
        """ModelArts ``GET /v2/{project_id}/datasets/{dataset_id}/tasks/{task_id}``: the task's status JSON."""
        if project_id is None:
            project_id = (yield from Operations.me.__wrapped__(self))["organizationId"]  # type: ignore[attr-defined]
        reply = yield Call(method="GET", path=f"/v2/{project_id}/datasets/{dataset_id}/tasks/{task_id}", idempotent=True)
        return reply

