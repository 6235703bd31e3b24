"""The /v3/graphql HTTP endpoint: JSON POST, GET queries, both multipart styles, GraphiQL for browsers.

Parsing and error shaping live here so every request style behaves the same:
- ``application/json``: ``{query, variables, operationName}`` (``variables`` may be a JSON string);
- the GraphQL multipart request spec: ``operations`` + ``map`` + file parts (the ``Upload`` scalar);
- a plain form, the way ``curl -F`` users send it: a ``query`` part, an optional ``variables`` part and
  ONE ``file`` part, which the upload mutations take as ``input.file`` (and a declared ``$file: Upload``
  variable is); hand-typed bodies (``curl -d``: bare LF, no blank line after part headers) are repaired
  as they stream (``multipart_repair.py``).
The body limit is the mount's ``BodyLimitMiddleware`` (``body_limit``: multipart bodies may carry an upload);
the caller is authenticated (``auth.py``) once the operation has been read, just before it runs.
WebSockets (graphql-transport-ws) are served by Strawberry's own view, see ``subscriptions.py``.
"""

from __future__ import annotations

import json
import logging
import re
import time
from typing import Any

from graphql import GraphQLError, parse, print_ast
from graphql.language import ListTypeNode, NamedTypeNode, NonNullTypeNode, OperationDefinitionNode, TypeNode
from starlette.datastructures import Headers, UploadFile
from starlette.requests import ClientDisconnect, Request
from starlette.responses import JSONResponse, Response
from starlette.types import Receive, Scope, Send
from strawberry.schema.exceptions import CannotGetOperationTypeError, InvalidOperationTypeError
from strawberry.types.graphql import OperationType

from gateway.errors import ApiError, PayloadTooLarge, ServiceUnavailable, unstorable
from gateway.observability import metrics, tracing
from gateway.observability.operations import UNKNOWN, OperationNames, refusal_code
from gateway.schema.context import Context
from gateway.settings import Settings
from gateway.web import auth
from gateway.web.errors import DATABASE_UNAVAILABLE, error_entry, error_response, graphql_error
from gateway.web.graphiql import graphiql_response
from gateway.web.multipart_repair import boundary_of, repaired
from storage.db import CONNECTION_LOST, sql_counter

log = logging.getLogger("engineshed.graphql")

# Bytes a multipart body may carry beside its file (query text, variables, part headers).
FORM_OVERHEAD = 1024 * 1024


class BadRequest(Exception):
    def __init__(self, message: str, status: int = 400) -> None:
        super().__init__(message)
        self.status = status


def body_limit(headers: Headers, settings: Settings) -> int:
    """Only multipart bodies carry files; any other body is parsed whole, so it gets a small limit."""
    if headers.get("content-type", "").lower().startswith("multipart/"):
        return settings.max_upload_bytes + FORM_OVERHEAD
    return settings.max_body_bytes


def _refusal(status: int, code: str, message: str) -> JSONResponse:
    return error_response(status, code, message, shape=graphql_error)


def upload_fields(schema: Any) -> frozenset[str]:
    """The root fields with an ``Upload`` anywhere in their arguments (input objects followed): the only ones a
    plain form's file part can be meant for."""
    from graphql import GraphQLInputObjectType, get_named_type

    def takes_upload(type_: Any, seen: set[str]) -> bool:
        named = get_named_type(type_)
        if named.name == "Upload":
            return True
        if isinstance(named, GraphQLInputObjectType) and named.name not in seen:
            seen.add(named.name)
            return any(takes_upload(field.type, seen) for field in named.fields.values())
        return False

    core = schema._schema
    return frozenset(
        name for root in (core.query_type, core.mutation_type) if root is not None
        for name, field in root.fields.items() if any(takes_upload(arg.type, set()) for arg in field.args.values())
    )


class GraphQLEndpoint:
    def __init__(self, schema: Any) -> None:
        self.schema = schema
        self._upload_fields: frozenset[str] | None = None  # read from the schema when a plain form first needs them
        self._names: OperationNames | None = None  # what metrics and traces call a request, made on first use

    @property
    def upload_fields(self) -> frozenset[str]:
        if self._upload_fields is None:
            self._upload_fields = upload_fields(self.schema)
            # A whole-word match: createEntityIdentifierType must not pass for createEntityIdentifier.
            self._upload_field_call = re.compile(
                r"(?<![A-Za-z0-9_])(?:" + "|".join(sorted(map(re.escape, self._upload_fields))) + r")(?![A-Za-z0-9_])")
        return self._upload_fields

    def _calls_upload_field(self, query: str) -> bool:
        return not self.upload_fields or self._upload_field_call.search(query) is not None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        started = time.perf_counter()
        resources = scope["app"].state.resources
        content_type = Headers(scope=scope).get("content-type", "")
        watch = _CloseDelimiterWatch(receive, scope)
        boundary = boundary_of(content_type) if content_type.lower().startswith("multipart/") else None
        # Hand-typed bodies (bare LF, no blank line after a part's headers) are made canonical as they stream.
        request = Request(scope, repaired(watch, boundary) if boundary else watch)
        try:
            response = await self.handle(request, resources, watch)
        except PayloadTooLarge:
            raise  # the body limit answers it, once the rest of the body is drained
        except BadRequest as exc:
            response = _refusal(exc.status, "invalid_input", str(exc))
        except ClientDisconnect:
            return
        except Exception:
            # Whatever slipped through still gets a GraphQL-shaped reply; the details stay in the log.
            log.exception("unexpected error serving %s %s", scope.get("method"), scope.get("path"))
            response = _refusal(500, "internal_error", "An internal error occurred")
        await response(scope, receive, send)
        # Requests refused before they ran are named "unknown" and carry the refusal's code.
        operation, code = scope.get("engineshed.graphql", (UNKNOWN, None))
        if code is None:
            code = "ok" if response.status_code < 400 else refusal_code(getattr(response, "body", b""))
        metrics.request_done(operation.field, code, time.perf_counter() - started)

    async def handle(self, request: Request, resources: Any, watch: _CloseDelimiterWatch | None = None) -> Response:
        if request.method == "GET":
            if "query" not in request.query_params:
                if "text/html" in request.headers.get("accept", ""):
                    return graphiql_response()
                raise BadRequest("a GET request needs a query parameter")
            operation = {
                "query": request.query_params.get("query"),
                "variables": request.query_params.get("variables"),
                "operationName": request.query_params.get("operationName"),
            }
            return await self.execute(request, resources, operation, None, get=True)
        if request.method != "POST":
            return _refusal(405, "invalid_input", "use POST (or GET for queries)")
        content_type = request.headers.get("content-type", "").split(";")[0].strip().lower()
        form_file = None
        if content_type == "multipart/form-data":
            operation, form_file = await self.parse_multipart(request, resources, watch)
        elif content_type in ("application/json", "application/graphql+json", "") or content_type.endswith("+json"):
            body = await request.body()
            try:
                operation = json.loads(body) if body else None
            except RecursionError as exc:
                raise BadRequest("the body is JSON nested too deeply") from exc
            except ValueError as exc:
                raise BadRequest(f"the body is not valid JSON: {exc}") from exc
        elif content_type == "application/graphql":
            operation = {"query": (await request.body()).decode("utf-8", "replace")}
        elif content_type == "application/x-www-form-urlencoded":
            form = await request.form()
            operation = {k: form.get(k) for k in ("query", "variables", "operationName")}
        else:
            raise BadRequest(f"unsupported Content-Type {content_type!r}; send JSON or multipart/form-data", 415)
        if isinstance(operation, list):
            raise BadRequest("batched operations are not supported; send one operation per request")
        if not isinstance(operation, dict):
            raise BadRequest("the body must be a JSON object with a query")
        try:
            return await self.execute(request, resources, operation, form_file, get=False)
        finally:
            if form_file is not None:
                await form_file.close()

    async def parse_multipart(self, request: Request, resources: Any, watch: _CloseDelimiterWatch | None = None) -> tuple[dict[str, Any], Any]:
        parts = resources.settings.multipart_max_parts
        try:
            form = await request.form(max_files=parts, max_fields=parts, max_part_size=FORM_OVERHEAD)
        except PayloadTooLarge:
            raise
        except Exception as exc:  # python-multipart / Starlette parse errors: malformed body
            detail = getattr(exc, "detail", None) or str(exc) or exc.__class__.__name__
            raise BadRequest(f"the multipart body could not be parsed: {detail}") from exc
        if watch is not None and not watch.closed:
            # The parser silently drops a part cut off by the end of the body: never run without it.
            await form.close()
            raise BadRequest("the multipart body is truncated: it ends before its closing boundary")
        if "operations" in form:  # the GraphQL multipart request spec
            operation = _json_field(form.get("operations"), "operations")
            mapping = _json_field(form.get("map") or "{}", "map")
            if not isinstance(operation, dict):
                raise BadRequest("batched operations are not supported")
            if not isinstance(mapping, dict):
                raise BadRequest("map must be a JSON object")
            for key, paths in mapping.items():
                upload = form.get(key)
                if not isinstance(upload, UploadFile):
                    raise BadRequest(f"map names the file part {key!r}, which the form does not have")
                if not isinstance(paths, list):
                    raise BadRequest("each map entry must be a list of paths")
                for path in paths:
                    _place(operation, str(path), upload)
            return operation, None
        if "query" in form:  # the plain form: query [+ variables] + one `file` part
            files = [v for _, v in form.multi_items() if isinstance(v, UploadFile)]
            file_parts = [k for k, v in form.multi_items() if isinstance(v, UploadFile)]
            if any(k != "file" for k in file_parts) or len(files) > 1:
                raise BadRequest("a plain multipart form takes exactly one file part, named 'file'")
            query = form.get("query")
            if isinstance(query, UploadFile):
                query = (await query.read()).decode("utf-8", "replace")
            operation = {"query": query, "variables": form.get("variables"), "operationName": form.get("operationName")}
            if files and isinstance(query, str) and not self._calls_upload_field(query):
                # Without this the file would be dropped in silence and the operation answer as if all went well.
                raise BadRequest("the form has a file part, but its query calls no field that takes a file "
                                 f"({', '.join(sorted(self.upload_fields))})")
            if files:
                _bind_file_variable(operation, files[0])
            return operation, (files[0] if files else None)
        raise BadRequest("a multipart request needs an 'operations' part (GraphQL multipart spec) or a 'query' part")

    async def execute(self, request: Request, resources: Any, operation: dict[str, Any], form_file: Any, *, get: bool) -> Response:
        query = operation.get("query")
        if not isinstance(query, str) or not query.strip():
            raise BadRequest("the request has no query")
        variables = operation.get("variables")
        if isinstance(variables, str):
            variables = _json_field(variables, "variables") if variables.strip() else None
        if variables is not None and not isinstance(variables, dict):
            raise BadRequest("variables must be a JSON object")
        operation_name = operation.get("operationName") or None
        if operation_name is not None and not isinstance(operation_name, str):
            raise BadRequest("operationName must be a string")

        try:
            principal = await auth.authenticate(request)
        except auth.FAILURES as exc:
            return auth.refusal(exc, graphql_error)

        if self._names is None:
            self._names = OperationNames(self.schema, resources.settings.max_query_tokens)
        named = self._names.of(query, operation_name)
        request.scope["engineshed.graphql"] = (named, None)  # the code: the refusal's, unless it runs
        with tracing.request_span(named.kind, named.field) as span:
            response, code = await self._run(request, resources, query, variables, operation_name, principal,
                                             form_file, get=get)
            if code is not None:
                request.scope["engineshed.graphql"] = (named, code)
                tracing.outcome(span, code, ok=code == "ok")
        return response

    async def _run(
        self, request: Request, resources: Any, query: str, variables: dict[str, Any] | None, operation_name: str | None,
        principal: Any, form_file: Any, *, get: bool,
    ) -> tuple[Response, str | None]:
        """The reply, and the outcome code of an operation that ran (ok, or its first error's); None if refused."""
        counter = [0]
        token = sql_counter.set(counter)
        try:
            context = Context(
                resources=resources, request=request, principal_=principal, form_file=form_file,
                operation_name_sent=operation_name is not None,
            )
            allowed = {OperationType.QUERY} if get else {OperationType.QUERY, OperationType.MUTATION}
            result = await self.schema.execute(
                query,
                variable_values=variables,
                context_value=context,
                operation_name=operation_name,
                allowed_operation_types=allowed,
            )
        except CannotGetOperationTypeError:
            return _refusal(400, "invalid_input", f"operationName {operation_name!r} names no operation in the document"), None
        except InvalidOperationTypeError as exc:
            if get:
                return _refusal(405, "not_allowed", "only queries may be sent with GET; use POST for mutations"), None
            return _refusal(400, "invalid_input", f"{exc.operation_type.value} operations are served over WebSocket (graphql-transport-ws)"), None
        finally:
            sql_counter.reset(token)
        body: dict[str, Any] = {"data": result.data}
        status = 200
        code = "ok"
        if result.errors:
            body["errors"] = [self.format_error(e) for e in result.errors]
            code = body["errors"][0]["extensions"]["code"]
            if result.data is None and all(e.original_error is None or e.path is None for e in result.errors):
                status = 400  # the document did not parse or validate, or its variables did not coerce: nothing ran
            if any((e.extensions or {}).get("code") == "authentication_error" for e in result.errors):
                status = 401
            if any(_code_of(e) == "invalid_input" and isinstance(e.original_error, PayloadTooLarge) for e in result.errors):
                status = 413
        if resources.settings.expose_sql_count:
            body["extensions"] = {"sqlStatements": counter[0]}
        return JSONResponse(body, status_code=status), code

    def format_error(self, error: GraphQLError) -> dict[str, Any]:
        original = error.original_error
        while isinstance(original, GraphQLError) and original.original_error is not None:
            original = original.original_error
        extra: dict[str, Any] = {}
        if error.locations:
            extra["locations"] = [{"line": loc.line, "column": loc.column} for loc in error.locations]
        if error.path:
            extra["path"] = list(error.path)
        if isinstance(original, ApiError):
            entry = error_entry(original.code, original.message, **extra)
            if original.data:
                entry["extensions"]["data"] = original.data
                entry["data"] = original.data
            error.extensions = entry["extensions"]
            return entry
        if isinstance(original, CONNECTION_LOST):  # in a resolver, or in an extension hook (no path)
            return error_entry(ServiceUnavailable.code, DATABASE_UNAVAILABLE, **extra)
        if original is None or error.path is None:
            # Parse, validation and variable-coercion errors come before execution (no path): the
            # request is wrong, and graphql-core's message says how.
            return error_entry("invalid_input", error.message, **extra)
        refusal = unstorable(original)
        if refusal is not None:  # a value PostgreSQL cannot store (a NUL character, say): the input's fault
            return error_entry(refusal.code, refusal.message, **extra)
        return error_entry("internal_error", "An internal error occurred", **extra)


def _code_of(error: GraphQLError) -> str | None:
    return (error.extensions or {}).get("code")


def _json_field(raw: Any, name: str) -> Any:
    if isinstance(raw, UploadFile):
        raise BadRequest(f"{name} must be a form field, not a file")
    try:
        return json.loads(raw)
    except RecursionError as exc:
        raise BadRequest(f"{name} is JSON nested too deeply") from exc
    except (TypeError, ValueError) as exc:
        raise BadRequest(f"{name} is not valid JSON: {exc}") from exc


def _bind_file_variable(operation: dict[str, Any], upload: UploadFile) -> None:
    """A plain form's ``file`` part is also the value of a ``$file: Upload`` variable the query declares.

    (``-F 'query=mutation($file: Upload!) {… file: $file …}' -F file=@x.jpg``.) The mutations still find it
    as ``input.file`` when the query names no file, as before.
    """
    query = operation.get("query")
    if not isinstance(query, str) or "$file" not in query:
        return
    try:
        document = parse(query)
    except GraphQLError:
        return  # execution reports the syntax error, with its location
    wanted = operation.get("operationName")
    declared = [
        definition.type
        for node in document.definitions
        if isinstance(node, OperationDefinitionNode) and (not wanted or (node.name and node.name.value == wanted))
        for definition in node.variable_definitions or ()
        if definition.variable.name.value == "file"
    ]
    if not declared:
        return
    variables = operation.get("variables")
    if isinstance(variables, UploadFile) or (isinstance(variables, str) and variables.strip()):
        variables = _json_field(variables, "variables")
    if variables is None or isinstance(variables, str):
        variables = {}
    if not isinstance(variables, dict):
        raise BadRequest("variables must be a JSON object")
    uploads = [t for t in declared if _named_type(t) == "Upload" and not isinstance(_unwrap_non_null(t), ListTypeNode)]
    if not uploads:
        if "file" in variables:
            return  # $file is some other value the variables give; the file part is input.file
        raise BadRequest(f"the query declares $file as {print_ast(declared[0])}; the file part can only be given to a $file of type Upload")
    if variables.get("file") is not None:
        raise BadRequest("both the file part and variables.file give $file; send one of them")
    variables["file"] = upload
    operation["variables"] = variables


def _unwrap_non_null(node: TypeNode) -> TypeNode:
    return node.type if isinstance(node, NonNullTypeNode) else node


def _named_type(node: TypeNode) -> str | None:
    node = _unwrap_non_null(node)
    return node.name.value if isinstance(node, NamedTypeNode) else None


def _place(operation: dict[str, Any], path: str, value: Any) -> None:
    """Put an uploaded file at a dotted path such as ``variables.input.file`` or ``variables.files.0``."""
    keys = path.split(".")
    if not keys or keys[0] != "variables" or len(keys) < 2:
        raise BadRequest(f"map path {path!r} must point into variables")
    node: Any = operation
    for index, key in enumerate(keys):
        last = index == len(keys) - 1
        if isinstance(node, dict):
            if last:
                if key not in node or node[key] is not None:
                    raise BadRequest(f"map path {path!r} must name a null placeholder in the operation")
                node[key] = value
                return
            if node.get(key) is None and key == "variables":
                node[key] = {}
            node = node.get(key)
        elif isinstance(node, list) and key.isdigit() and int(key) < len(node):
            if last:
                if node[int(key)] is not None:
                    raise BadRequest(f"map path {path!r} must name a null placeholder in the operation")
                node[int(key)] = value
                return
            node = node[int(key)]
        else:
            raise BadRequest(f"map path {path!r} does not exist in the operation")
    raise BadRequest(f"map path {path!r} does not exist in the operation")


class _CloseDelimiterWatch:
    """Passes the body through and notes whether a multipart body reached its close delimiter."""

    def __init__(self, receive: Receive, scope: Scope) -> None:
        self._receive = receive
        self._marker: bytes | None = None
        self._tail = b""
        boundary = boundary_of(Headers(scope=scope).get("content-type", ""))
        if boundary:
            self._marker = b"--" + boundary + b"--"
        self.closed = self._marker is None

    async def __call__(self) -> dict[str, Any]:
        message = await self._receive()
        if not self.closed and self._marker is not None and message["type"] == "http.request":
            seen = self._tail + message.get("body", b"")
            self.closed = self._marker in seen
            self._tail = seen[-(len(self._marker) - 1) :]
        return message
