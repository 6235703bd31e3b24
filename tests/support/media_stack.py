"""What the media-task tests share: a loopback file server, a trained test-media model, library-run jobs by URL,
the media services called in-process on the test stack, and direct looks at the stored segments."""

from __future__ import annotations

import asyncio
import threading
import uuid
from collections.abc import Awaitable, Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, TypeVar

from gateway.resources import Resources, open_resources
from gateway.services.access.principal import Principal
from gateway.settings import Settings
from tests.conftest import TEST_ENGINES, Org
from tests.support.db import Database
from tests.support.media_engine import ENGINE_ID, SPEC
from tests.support.waits import JOB_FIELDS, wait_job, wait_model

T = TypeVar("T")

# A worker that runs the test media engine and may fetch from the loopback file server.
WORKER_ENV = {"ENGINESHED_EXTRA_ENGINES": f"{TEST_ENGINES},{SPEC}", "ENGINESHED_FETCH_ALLOWED_HOSTS": "127.0.0.1/32"}


@dataclass
class FileServer:
    """Files served over HTTP on 127.0.0.1, as a customer's media host would."""

    base_url: str = ""
    files: dict[str, tuple[bytes, str]] = field(default_factory=dict)

    def add(self, path: str, data: bytes, content_type: str = "video/mp4") -> str:
        self.files[path] = (data, content_type)
        return self.base_url + path


@contextmanager
def file_server() -> Iterator[FileServer]:
    state = FileServer()

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            entry = state.files.get(self.path)
            if entry is None:
                self.send_response(404)
                self.send_header("Content-Length", "0")
                self.end_headers()
                return
            data, content_type = entry
            self.send_response(200)
            self.send_header("Content-Type", content_type)
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def log_message(self, *args: Any) -> None:
            pass

    httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    state.base_url = f"http://127.0.0.1:{httpd.server_address[1]}"
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    try:
        yield state
    finally:
        httpd.shutdown()
        httpd.server_close()


def people_library(org: Org, people: tuple[str, ...] = ("ada", "bob")) -> tuple[str, dict[str, str]]:
    """A people library with one face identifier per person: (library id, entity id by name)."""
    from tests.reliability.conftest import png

    library_id = org.create_library("media", "people")
    entities = {}
    for i, name in enumerate(people):
        entities[name] = org.create_entity(library_id, name)
        org.add_identifier(entities[name], png(i))
    return library_id, entities


def train_media_model(org: Org, library_id: str, engine_id: str = ENGINE_ID) -> str:
    """A complete model of the test media engine (a worker must be running it); its id."""
    model_id = org.client.query(
        "mutation($e: ID!, $l: ID!) { createLibraryEngineModel(input: {engineId: $e, libraryId: $l}) { id } }",
        e=engine_id, l=library_id,
    ).ok()["createLibraryEngineModel"]["id"]
    run_job(org, {"mode": "library-train", "libraryId": library_id, "libraryEngineModelId": model_id}, engine_id)
    model = wait_model(org, model_id, timeout=120)
    assert model["trainStatus"] == "complete", model
    return model_id


def run_job(org: Org, payload: dict[str, Any], engine_id: str = ENGINE_ID) -> dict[str, Any]:
    """createJob with one task, the upstream way; the job with its task."""
    return org.client.query(
        f"mutation($t: [CreateTask!]) {{ createJob(input: {{tasks: $t}}) {{ {JOB_FIELDS} }} }}",
        t=[{"engineId": engine_id, "payload": payload}],
    ).ok()["createJob"]


def finished(org: Org, job_id: str, timeout: float = 120) -> dict[str, Any]:
    """The job's one task once the job is over."""
    return wait_job(org, job_id, timeout=timeout)["tasks"]["records"][0]


def settings(env: dict[str, str], **extra: str) -> Settings:
    return Settings.from_env({**env, **WORKER_ENV, **extra})


def call(env: dict[str, str], work: Callable[[Resources], Awaitable[T]], **extra: str) -> T:
    """Run ``work`` against in-process Resources on the test stack (engines loaded, test media engine too)."""

    async def go() -> T:
        async with open_resources(settings(env, **extra), role="test", run_migrations=False) as res:
            return await work(res)

    return asyncio.run(go())


def admin(org: Org) -> Principal:
    return Principal(org_id=org.id, scope="admin")


def segment_rows(db: Database, task_id: str) -> list[Any]:
    """Every stored row of the task, whichever attempt wrote it, in time order."""
    return db.fetch("SELECT * FROM media_segments WHERE task_id = $1 ORDER BY start_s, seq", uuid.UUID(task_id))


class ClientGone(Exception):
    """The client went away mid-upload (Starlette raises its ClientDisconnect)."""


class Upload:
    """A file part as the HTTP layer hands it over (Starlette's UploadFile fits the same protocol); ``cut_at``:
    the client goes away after that many bytes."""

    def __init__(self, data: bytes, content_type: str = "video/mp4", cut_at: int | None = None) -> None:
        self.data, self.content_type, self.filename, self.cut_at, self.pos = data, content_type, "clip.mp4", cut_at, 0

    async def read(self, size: int = -1) -> bytes:
        if self.cut_at is not None and self.pos >= self.cut_at:
            raise ClientGone("the client went away")
        end = len(self.data) if size < 0 else self.pos + size
        if self.cut_at is not None:
            end = min(end, self.cut_at)
        chunk = self.data[self.pos:end]
        self.pos = end
        return chunk
