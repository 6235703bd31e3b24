"""One claimed task, the established way: with the task's own token, set the model ``running``, read the library
page by page, train while heartbeats carry progress and bring back a cancellation, store the artifact with the
documented multipart ``updateLibraryEngineModel``, then ``completeTask`` — or ``failed`` with the error in the
model's ``jsondata`` and ``failTask``. A ``library-run`` task recognizes its media with the trained model."""

from __future__ import annotations

import asyncio
import logging
import threading
import traceback
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from engineshed.client.errors import ApiError, ConnectionFailed, ServiceUnavailableError
from engineshed.engine.api import Api, Session
from engineshed.engine.library import (
    Artifact,
    Cancelled,
    Entity,
    Identifier,
    Library,
    Model,
    TrainingFailed,
    _Bridge,
)
from engineshed.engine.loader import LoadedEngine, is_async

log = logging.getLogger("engineshed.engine")

IDENTIFIER_FIELDS = "id entityId identifierTypeId url contentType title jsondata"
LIBRARY_PAGE = f"""query($id: ID!, $t: ID, $offset: Int, $limit: Int) {{ library(id: $id) {{ id name version
    entities(identifierTypeId: $t, offset: $offset, limit: $limit) {{ count totalCount records {{ id name jsondata
        identifiers(identifierTypeId: $t, limit: $limit) {{ count records {{ {IDENTIFIER_FIELDS} }} }} }} }} }} }}"""
IDENTIFIER_PAGE = f"""query($id: ID!, $t: ID, $offset: Int, $limit: Int) {{ entity(id: $id) {{
    identifiers(identifierTypeId: $t, offset: $offset, limit: $limit) {{ count records {{ {IDENTIFIER_FIELDS} }} }} }} }}"""
UPDATE_MODEL = """mutation($input: UpdateLibraryEngineModel!) { updateLibraryEngineModel(input: $input) {
    id trainStatus dataUrl contentType jsondata } }"""
HEARTBEAT = """mutation($id: ID!, $p: Float, $m: String) { heartbeatTask(id: $id, progress: $p, message: $m) {
    cancelRequested } }"""
COMPLETE = "mutation($id: ID!, $o: JSONData) { completeTask(id: $id, output: $o) { id status } }"
FAIL = """mutation($id: ID!, $r: String, $m: String, $retry: Boolean) { failTask(id: $id, failureReason: $r,
    failureMessage: $m, retry: $retry) { id status } }"""
RELEASE = "mutation($id: ID!) { releaseTask(id: $id) { id status } }"
MODEL = "query($id: ID!) { libraryEngineModel(id: $id) { id libraryId dataUrl contentType jsondata } }"
NEWEST_MODEL = """query($id: ID!, $e: ID) { library(id: $id) { engineModels(engineId: $e, trainStatus: complete, limit: 1) {
    records { id libraryId dataUrl contentType jsondata } } } }"""
STOPPED = "stopped on request: the job was cancelled"
MAX_HEARTBEAT_SECONDS = 5.0


@dataclass(frozen=True, slots=True)
class Outcome:
    """How a task ended for this engine: complete, failed, retry (back to the queue), cancelled, released, lost."""

    task_id: str
    model_id: str | None
    status: str
    error: str | None = None


@dataclass(frozen=True, slots=True)
class TrainedModel:
    """What ``recognize`` receives: a trained model's jsondata and its file (None when it stored none)."""

    id: str
    library_id: str
    jsondata: dict[str, Any]
    data: bytes | None
    content_type: str | None


def heartbeat_interval(lease_expires: str | None, most: float = MAX_HEARTBEAT_SECONDS) -> float:
    """A third of the lease (as the server counts it), and at most ``most`` so a cancellation is seen promptly."""
    try:
        expires = datetime.fromisoformat(str(lease_expires).replace("Z", "+00:00"))
        lease = (expires - datetime.now(UTC)).total_seconds()
    except ValueError:
        lease = 30.0
    return max(0.5, min(most, lease / 3 if lease > 0 else most))


def in_thread(function: Callable[..., Any], *args: Any) -> asyncio.Future[Any]:
    """``function(*args)`` in a daemon thread of its own: a blocking train that ignores a cancellation cannot hold
    the process (or the default executor) at exit."""
    loop = asyncio.get_running_loop()
    future: asyncio.Future[Any] = loop.create_future()

    def settle(method: str, value: Any) -> None:
        if not future.done():
            getattr(future, method)(value)

    def target() -> None:
        try:
            result = function(*args)
        except BaseException as exc:  # handed to the awaiting task, which decides
            outcome = ("set_exception", exc)
        else:
            outcome = ("set_result", result)
        try:
            loop.call_soon_threadsafe(settle, *outcome)
        except RuntimeError:  # the loop is gone: the runner stopped without waiting for this train
            pass

    threading.Thread(target=target, name=f"engine-{getattr(function, '__name__', 'train')}", daemon=True).start()
    return future


class TaskRun:
    """One claimed task, from its claim to its report."""

    def __init__(self, engine: LoadedEngine, session: Session, claimed: dict[str, Any], *, max_heartbeat: float) -> None:
        self.engine = engine
        self.session = session
        task = claimed["task"]
        self.task_id: str = task["id"]
        self.payload: dict[str, Any] = task.get("payload") or {}
        self.api: Api = session.api(claimed["token"])
        self.interval = heartbeat_interval(claimed.get("leaseExpiresDateTime"), max_heartbeat)
        self.cancelled = threading.Event()
        self.cancel_seen = asyncio.Event()
        self.lost = False
        self.model = Model(id=str(self.payload.get("libraryEngineModelId") or ""), library_id=str(self.payload.get("libraryId") or ""),
                           engine_id=task.get("engineId") or "", task_id=self.task_id, job_id=task.get("jobId") or "",
                           config=dict(self.payload.get("config") or {}), cancelled=self.cancelled)

    # -- the whole task ---------------------------------------------------------------------------------------------

    async def run(self) -> Outcome:
        beating = asyncio.create_task(self._heartbeats())
        try:
            if self.payload.get("mode") == "library-run":
                output = await self._recognize()
                await self.api.query(COMPLETE, id=self.task_id, o=output)
                return Outcome(self.task_id, None, "complete")
            return await self._train()
        except asyncio.CancelledError:
            # The runner is stopping (Ctrl-C, SIGTERM): hand the task back so another claim takes it at once.
            self.cancelled.set()
            await self._release()
            raise
        except Cancelled:
            return await self._report_cancelled()
        except TrainingFailed as exc:
            return await self._fail(exc.message, retry=exc.retry)
        except (ServiceUnavailableError, ConnectionFailed) as exc:
            return await self._fail(str(exc), retry=True)
        except Exception as exc:
            if self.lost:
                return Outcome(self.task_id, self.model.id, "lost", "the lease was lost")
            log.error("task %s failed:\n%s", self.task_id, traceback.format_exc())
            return await self._fail(f"{exc.__class__.__name__}: {exc}", retry=False)
        finally:
            beating.cancel()

    async def _train(self) -> Outcome:
        if not self.model.id or not self.model.library_id:
            raise TrainingFailed("the task's payload names no libraryId and libraryEngineModelId (mode library-train)")
        await self.api.query(UPDATE_MODEL, input={"id": self.model.id, "trainStatus": "running"})
        library = await self.read_library()
        log.info("task %s: training model %s on %d entities, %d identifiers", self.task_id, self.model.id,
                 len(library.entities), len(library.identifiers()))
        artifact = Artifact.of(await self._call(self.engine.train, library, self.model))
        self.model.check()
        saved = await self._save(artifact)
        await self.api.query(COMPLETE, id=self.task_id, o={"libraryEngineModelId": self.model.id, "entities": len(library.entities),
                                                          "identifiers": len(library.identifiers())})
        log.info("task %s: model %s complete (%s)", self.task_id, self.model.id, saved.get("contentType") or "jsondata only")
        return Outcome(self.task_id, self.model.id, "complete")

    async def _call(self, function: Callable[..., Any], *args: Any) -> Any:
        """The engine's function, awaited or in its thread, abandoned at once when the job is cancelled."""
        work = asyncio.ensure_future(function(*args)) if is_async(function) else in_thread(function, *args)
        cancel = asyncio.ensure_future(self.cancel_seen.wait())
        try:
            await asyncio.wait({work, cancel}, return_when=asyncio.FIRST_COMPLETED)
        except asyncio.CancelledError:
            work.cancel()
            raise
        finally:
            cancel.cancel()
        if not work.done():
            work.cancel()  # an async train stops here; a thread sees Cancelled at its next read or progress report
            raise Cancelled(STOPPED)
        return work.result()

    # -- reading the library ----------------------------------------------------------------------------------------

    async def read_library(self) -> Library:
        bridge = _Bridge(asyncio.get_running_loop(), self.session, self.cancelled)
        types = self.engine.identifier_types
        wanted = types[0] if len(types) == 1 else None
        size = self.session.limits.page_size
        first = await self._page(LIBRARY_PAGE, self.model.library_id, wanted, 0, size)
        if first["library"] is None:
            raise TrainingFailed(f"library {self.model.library_id} was not found")
        head = first["library"]
        total = head["entities"].get("totalCount")
        records = list(head["entities"]["records"])
        if total is not None:
            offsets = range(size, total, size)
            pages = await asyncio.gather(*(self._page(LIBRARY_PAGE, self.model.library_id, wanted, o, size) for o in offsets))
            for page in pages:
                records.extend(page["library"]["entities"]["records"])
        else:  # a server without totalCount: page until a short page, as the established docs say
            offset = size
            while len(records) == offset:
                page = await self._page(LIBRARY_PAGE, self.model.library_id, wanted, offset, size)
                records.extend(page["library"]["entities"]["records"])
                offset += size
        entities = await asyncio.gather(*(self._entity(record, wanted, size, bridge) for record in records))
        return Library(id=head["id"], name=head["name"], version=head.get("version"), identifier_type_ids=types,
                       entities=tuple(e for e in entities if e.identifiers), _bridge=bridge, _model=self.model)

    async def _page(self, query: str, object_id: str, wanted: str | None, offset: int, limit: int) -> Any:
        self.model.check()
        async with self.session.slots:
            return await self.api.query(query, id=object_id, t=wanted, offset=offset, limit=limit)

    async def _entity(self, record: dict[str, Any], wanted: str | None, size: int, bridge: _Bridge) -> Entity:
        found = list(record["identifiers"]["records"])
        offset = size
        while len(found) == offset:  # a full page: there may be more
            page = await self._page(IDENTIFIER_PAGE, record["id"], wanted, offset, size)
            found.extend(page["entity"]["identifiers"]["records"])
            offset += size
        types = self.engine.identifier_types
        identifiers = tuple(
            Identifier(id=i["id"], entity_id=i.get("entityId") or record["id"], identifier_type_id=i["identifierTypeId"],
                       url=i.get("url"), content_type=i.get("contentType"), title=i.get("title"), jsondata=i.get("jsondata"),
                       _bridge=bridge)
            for i in found if i["identifierTypeId"] in types)
        return Entity(id=record["id"], name=record["name"], jsondata=record.get("jsondata"), identifiers=identifiers)

    # -- reporting --------------------------------------------------------------------------------------------------

    async def _save(self, artifact: Artifact) -> dict[str, Any]:
        fields: dict[str, Any] = {"id": self.model.id, "trainStatus": "complete", "jsondata": artifact.jsondata}
        if artifact.accuracy is not None:
            fields["accuracy"] = artifact.accuracy
        if artifact.data is None:
            data = await self.api.query(UPDATE_MODEL, input=fields)
        else:
            fields["contentType"] = artifact.content_type
            data = await self.api.upload(UPDATE_MODEL, {"input": fields}, artifact.data, artifact.filename, artifact.content_type)
        return data["updateLibraryEngineModel"]

    async def _heartbeats(self) -> None:
        while True:
            await asyncio.sleep(self.interval)
            reported = self.model.take_progress()
            try:
                beat = await self.api.query(HEARTBEAT, id=self.task_id, p=reported[0] if reported else None,
                                            m=reported[1] if reported else None)
            except ConnectionFailed as exc:
                log.warning("task %s: heartbeat failed (%s); trying again", self.task_id, exc)
                continue
            except ApiError as exc:
                log.error("task %s: the server refused the heartbeat (%s): stopping", self.task_id, exc)
                self.lost = True
                self._stop()
                return
            if beat["heartbeatTask"]["cancelRequested"]:
                log.info("task %s: cancellation requested: stopping", self.task_id)
                self._stop()
                return

    def _stop(self) -> None:
        self.cancelled.set()
        self.cancel_seen.set()

    async def _report_cancelled(self) -> Outcome:
        if self.lost:
            return Outcome(self.task_id, self.model.id, "lost", "the lease was lost")
        # Failing a task whose cancel was requested records it as cancelled (and its model as failed).
        await self._send(FAIL, id=self.task_id, r="other", m=STOPPED, retry=False)
        return Outcome(self.task_id, self.model.id, "cancelled", STOPPED)

    async def _fail(self, message: str, *, retry: bool) -> Outcome:
        log.warning("task %s: %s%s", self.task_id, message, " (will be retried)" if retry else "")
        if self.lost:
            return Outcome(self.task_id, self.model.id, "lost", message)
        if not retry and self.model.id and self.payload.get("mode") != "library-run":
            await self._send(UPDATE_MODEL, input={"id": self.model.id, "trainStatus": "failed", "jsondata": {"error": message}})
        await self._send(FAIL, id=self.task_id, r="other", m=message, retry=retry)
        return Outcome(self.task_id, self.model.id, "retry" if retry else "failed", message)

    async def _release(self) -> None:
        try:
            await self.api.query(RELEASE, id=self.task_id)
        except (ApiError, ConnectionFailed) as exc:
            log.warning("task %s: releasing it failed (%s); it is claimable again when its lease ends", self.task_id, exc)
            return
        log.info("task %s: released", self.task_id)

    async def _send(self, query: str, **variables: Any) -> None:
        try:
            await self.api.query(query, **variables)
        except (ApiError, ConnectionFailed) as exc:
            log.error("task %s: reporting to the server failed: %s", self.task_id, exc)

    # -- recognition ------------------------------------------------------------------------------------------------

    async def _recognize(self) -> dict[str, Any]:
        if self.engine.recognize is None:
            raise TrainingFailed(f"{self.engine.spec} has no recognize(model, media): it cannot run library-run tasks")
        model = await self._trained_model()
        urls = [self.payload["url"]] if self.payload.get("url") else list(self.payload.get("urls") or [])
        results = []
        for url in urls:
            async with self.session.slots:
                media = await self.session.read(url)
            matches = list(await self._call(self.engine.recognize, model, media) or [])
            results.append({"url": url, "matches": [{"libraryId": model.library_id, **m} for m in matches]})
        return {"libraryEngineModelId": model.id, "results": results}

    async def _trained_model(self) -> TrainedModel:
        model_id = self.payload.get("libraryEngineModelId")
        if model_id:
            record = (await self.api.query(MODEL, id=model_id))["libraryEngineModel"]
        else:
            found = await self.api.query(NEWEST_MODEL, id=self.payload.get("libraryId"), e=self.model.engine_id)
            records = ((found.get("library") or {}).get("engineModels") or {}).get("records") or []
            record = records[0] if records else None
        if record is None:
            raise TrainingFailed("engine has not been trained: no complete model for this library")
        data = await self.session.read(record["dataUrl"]) if record.get("dataUrl") else None
        return TrainedModel(id=record["id"], library_id=record["libraryId"], jsondata=record.get("jsondata") or {},
                            data=data, content_type=record.get("contentType"))
