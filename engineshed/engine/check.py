"""The engine contract check: train an engine on a small generated library through the public API, exactly as a
published library's training would reach it, and report what the established flow requires of it.

It needs an admin token (it creates a throwaway library, the engine when missing, and an engine token, and removes
the library and the token afterwards). Each item of the report says what was expected and what happened.
"""

from __future__ import annotations

import asyncio
import dataclasses
import io
import json
import math
import random
import struct
import uuid
import wave
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

import httpx

from engineshed.client.errors import NotFoundError
from engineshed.engine.api import Api, Session
from engineshed.engine.loader import LoadedEngine, is_async
from engineshed.engine.runner import Runner
from engineshed.engine.task import TrainedModel, in_thread

MODEL_FIELDS = "id trainStatus dataUrl contentType jsondata"


@dataclass(frozen=True, slots=True)
class Item:
    name: str
    ok: bool
    detail: str


@dataclass(slots=True)
class Report:
    engine_id: str
    items: list[Item] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return all(item.ok for item in self.items)

    def add(self, name: str, ok: bool, detail: str) -> None:
        self.items.append(Item(name, ok, detail))

    def as_dict(self) -> dict[str, Any]:
        return {"engineId": self.engine_id, "ok": self.ok, "items": [dataclasses.asdict(i) for i in self.items]}


@dataclass(frozen=True, slots=True)
class Sample:
    """One generated file: an entity's identifier, or a held-out one recognize is asked about."""

    entity: int
    data: bytes
    content_type: str


def _image(entity: int, rng: random.Random) -> bytes:
    """A 48×48 PNG: each entity its own colour and shape position, with noise (no two files alike)."""
    from PIL import Image, ImageDraw

    hue = [(220, 40, 40), (40, 160, 60), (40, 70, 220), (200, 180, 30), (150, 40, 170), (30, 170, 170)][entity % 6]
    image = Image.new("RGB", (48, 48), tuple(int(c * 0.25) for c in hue))
    draw = ImageDraw.Draw(image)
    x, y = 6 + (entity * 9) % 24, 6 + (entity * 13) % 24
    draw.ellipse((x, y, x + 18 + rng.randint(-2, 2), y + 18 + rng.randint(-2, 2)), fill=hue)
    for _ in range(40):
        image.putpixel((rng.randrange(48), rng.randrange(48)), tuple(rng.randrange(256) for _ in range(3)))
    out = io.BytesIO()
    image.save(out, "PNG")
    return out.getvalue()


def _tone(entity: int, rng: random.Random) -> bytes:
    """Half a second of a 16 kHz WAV tone, each entity its own pitch."""
    rate, pitch = 16000, 220.0 * (1 + entity * 0.5)
    frames = b"".join(struct.pack("<h", int(12000 * math.sin(2 * math.pi * pitch * i / rate) + rng.randint(-300, 300)))
                      for i in range(rate // 2))
    out = io.BytesIO()
    with wave.open(out, "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(rate)
        w.writeframes(frames)
    return out.getvalue()


def generate(data_type: str, entities: int, per_entity: int, seed: int = 0) -> tuple[list[Sample], list[Sample]]:
    """Training samples and one held-out sample per entity, for an identifier type's data type."""
    rng = random.Random(seed)
    if data_type == "image":
        make, content_type = _image, "image/png"
    elif data_type == "audio":
        make, content_type = _tone, "audio/wav"
    else:
        raise ValueError(f"the check generates images and audio; identifiers of data type {data_type!r} are not generated")
    train = [Sample(e, make(e, rng), content_type) for e in range(entities) for _ in range(per_entity)]
    held_out = [Sample(e, make(e, rng), content_type) for e in range(entities)]
    return train, held_out


async def ensure_engine(admin: Api, engine: LoadedEngine, engine_id: str) -> bool:
    """Whether the engine had to be created (as an external engine with the identifier types it declares)."""
    try:
        found = (await admin.query("query($id: ID!) { engine(id: $id) { id } }", id=engine_id))["engine"]
    except NotFoundError:
        found = None
    if found is not None:
        return False
    await admin.query(
        "mutation($id: ID!, $t: [ID!]!, $m: [String!]) { createEngine(input: {id: $id, identifierTypeIds: $t, modes: $m}) { id } }",
        id=engine_id, t=list(engine.identifier_types), m=engine.modes)
    return True


async def _library_type(admin: Api, identifier_type: str) -> tuple[str, str]:
    """A library type whose identifiers include ``identifier_type``, and that type's data type."""
    types = (await admin.query("query { libraryTypes(limit: 100) { records { id entityIdentifierTypes { id dataType } } } }"))
    for library_type in types["libraryTypes"]["records"]:
        for kind in library_type["entityIdentifierTypes"]:
            if kind["id"] == identifier_type:
                return library_type["id"], kind["dataType"]
    raise ValueError(f"no library type takes identifiers of type {identifier_type!r}")


async def _upload(session: Session, admin_token: str, entity_id: str, identifier_type: str, sample: Sample) -> str:
    query = ("mutation($input: CreateEntityIdentifier!) { createEntityIdentifier(input: $input) { id } }")
    data = await session.api(admin_token).upload(
        query, {"input": {"entityId": entity_id, "identifierTypeId": identifier_type, "contentType": sample.content_type}},
        sample.data, "sample.png" if sample.content_type == "image/png" else "sample.wav", sample.content_type)
    return data["createEntityIdentifier"]["id"]


def _watching(engine: LoadedEngine, admin: Api, model_id: str, seen: list[str]) -> LoadedEngine:
    """The engine, with its train preceded by a look at the model's status (the flow sets it running first)."""
    original = engine.train

    async def train(library: Any, model: Any) -> Any:
        if model.id == model_id:
            seen.append((await admin.query(f"query($id: ID!) {{ libraryEngineModel(id: $id) {{ {MODEL_FIELDS} }} }}",
                                           id=model_id))["libraryEngineModel"]["trainStatus"])
        if is_async(original):
            return await original(library, model)
        return await in_thread(original, library, model)

    return dataclasses.replace(engine, train=train)


async def check_engine(engine: LoadedEngine, *, url: str, admin_token: str, engine_id: str | None = None,
                       entities: int = 3, per_entity: int = 3, timeout: float = 300.0,
                       transport: httpx.AsyncBaseTransport | None = None) -> Report:
    """Train ``engine`` on a generated library of ``entities`` × ``per_entity`` files and report on the flow."""
    engine_id = engine_id or f"{engine.id or engine.name.lower()}-check"
    report = Report(engine_id)
    session = Session(url, transport=transport)
    admin = session.api(admin_token)
    library_id = token_id = None
    try:
        created = await ensure_engine(admin, engine, engine_id)
        report.add("the engine is registered", True, f"{engine_id} ({'created' if created else 'exists'}; "
                                                     f"identifier types {', '.join(engine.identifier_types)})")
        library_type, data_type = await _library_type(admin, engine.identifier_types[0])
        train_samples, held_out = generate(data_type, entities, per_entity)
        library_id = (await admin.query("mutation($n: String!, $t: ID!) { createLibrary(input: {name: $n, libraryTypeId: $t}) { id } }",
                                        n=f"engine-check-{uuid.uuid4().hex[:8]}", t=library_type))["createLibrary"]["id"]
        entity_ids = [(await admin.query("mutation($l: ID!, $n: String!) { createEntity(input: {libraryId: $l, name: $n}) { id } }",
                                         l=library_id, n=f"entity {e}"))["createEntity"]["id"] for e in range(entities)]
        identifier_ids = {entity_id: [] for entity_id in entity_ids}
        for sample in train_samples:
            entity_id = entity_ids[sample.entity]
            identifier_ids[entity_id].append(await _upload(session, admin_token, entity_id, engine.identifier_types[0], sample))
        model_id = (await admin.query("mutation($e: ID!, $l: ID!) { createLibraryEngineModel(input: {engineId: $e, libraryId: $l}) { id } }",
                                      e=engine_id, l=library_id))["createLibraryEngineModel"]["id"]
        job = (await admin.query(
            "mutation($t: [CreateTask!]) { createJob(input: {tasks: $t}) { id tasks { records { id } } } }",
            t=[{"engineId": engine_id, "payload": {"mode": "library-train", "libraryId": library_id, "libraryEngineModelId": model_id}}],
        ))["createJob"]
        task_id = job["tasks"]["records"][0]["id"]
        minted = (await admin.query("mutation($e: ID!) { createToken(input: {scope: engine, engineId: $e, label: \"engineshed engine check\"}) { id token } }",
                                    e=engine_id))["createToken"]
        token_id = minted["id"]

        seen: list[str] = []
        runner = Runner(_watching(engine, admin, model_id, seen), url=url, token=minted["token"], engine_id=engine_id,
                        transport=transport)
        outcome = await _run_until(runner, task_id, timeout)
        model = (await admin.query(f"query($id: ID!) {{ libraryEngineModel(id: $id) {{ {MODEL_FIELDS} }} }}", id=model_id))["libraryEngineModel"]
        job_status = (await admin.query("query($id: ID!) { job(id: $id) { status } }", id=job["id"]))["job"]["status"]
        report.add("the engine claimed the task and reported on it", outcome is not None,
                   f"it ended {outcome.status}" if outcome else f"it was not run within {timeout:.0f}s")
        report.add("the model was running while it trained", seen == ["running"],
                   f"status when train began: {seen[0] if seen else 'train was never called'}")
        error = (model["jsondata"] or {}).get("error") if isinstance(model["jsondata"], dict) else None
        report.add("the model ended complete", model["trainStatus"] == "complete",
                   f"trainStatus {model['trainStatus']}" + (f"; jsondata.error: {error}" if error else ""))
        report.add("the task and its job completed", job_status == "complete", f"job status {job_status}")
        artifact = await _artifact_item(session, model, report)
        _mapping_item(report, model, artifact, identifier_ids)
        if engine.recognize is not None and model["trainStatus"] == "complete":
            await _recognize_item(report, engine, model, library_id, artifact, held_out, entity_ids)
    finally:
        if library_id is not None:
            await _quietly(admin.query("mutation($id: ID!) { deleteLibrary(id: $id) { id } }", id=library_id))
        if token_id is not None:
            await _quietly(admin.query("mutation($id: ID!) { revokeToken(id: $id) { id } }", id=token_id))
        await session.close()
    return report


async def _run_until(runner: Runner, task_id: str, timeout: float) -> Any:
    """Run the engine until it has dealt with ``task_id`` (an earlier check's leftover may come first)."""

    async def go() -> Any:
        while True:
            for outcome in await runner.run(max_tasks=1):
                if outcome.task_id == task_id:
                    return outcome

    try:
        return await asyncio.wait_for(go(), timeout)
    except TimeoutError:
        return None


async def _quietly(call: Awaitable[Any]) -> None:
    try:
        await call
    except Exception:  # cleanup after the report: what failed here changes nothing the report says
        pass


async def _artifact_item(session: Session, model: dict[str, Any], report: Report) -> bytes | None:
    jsondata = model["jsondata"]
    report.add("jsondata is a JSON object", isinstance(jsondata, dict), f"jsondata: {json.dumps(jsondata)[:200]}")
    if model["dataUrl"]:
        data = await session.read(model["dataUrl"])
        recorded = isinstance(jsondata, dict) and jsondata.get("contentType") == model["contentType"]
        report.add("the model file is stored with its content type", bool(data) and bool(model["contentType"]) and recorded,
                   f"{len(data)} bytes, contentType {model['contentType']}, jsondata.contentType "
                   f"{jsondata.get('contentType') if isinstance(jsondata, dict) else None}")
        return data
    has_metadata = isinstance(jsondata, dict) and bool(set(jsondata) - {"contentType", "error"})
    report.add("the model is stored (a file, or jsondata naming it)", has_metadata and model["trainStatus"] == "complete",
               "no file; jsondata alone (as web-API engines store a collection ID)" if has_metadata
               else "no file and no jsondata: nothing of the trained model was saved")
    return None


def _mapping_item(report: Report, model: dict[str, Any], artifact: bytes | None, identifier_ids: dict[str, list[str]]) -> None:
    text = (artifact or b"") + json.dumps(model["jsondata"] or {}).encode()
    mapped = [e for e, ids in identifier_ids.items() if e.encode() in text or any(i.encode() in text for i in ids)]
    report.add("the model maps back to the library's entity or identifier IDs", len(mapped) == len(identifier_ids),
               f"{len(mapped)} of {len(identifier_ids)} entities named by their entity ID or an identifier ID "
               "in the model file or jsondata")


async def _recognize_item(report: Report, engine: LoadedEngine, model: dict[str, Any], library_id: str, artifact: bytes | None,
                          held_out: list[Sample], entity_ids: list[str]) -> None:
    trained = TrainedModel(id=model["id"], library_id=library_id, jsondata=model["jsondata"] or {}, data=artifact,
                           content_type=model["contentType"])
    call: Callable[..., Any] = engine.recognize  # type: ignore[assignment]
    right = 0
    unknown: list[str] = []
    try:
        for sample in held_out:
            matches = (await call(trained, sample.data)) if is_async(call) else await asyncio.to_thread(call, trained, sample.data)
            named = [m.get("entityId") for m in (matches or []) if isinstance(m, dict)]
            unknown += [str(n) for n in named if n not in entity_ids]
            right += bool(named) and named[0] == entity_ids[sample.entity]
    except Exception as exc:
        report.add("recognize answers with the library's entity IDs", False, f"recognize raised {exc.__class__.__name__}: {exc}")
        return
    report.add("recognize answers with the library's entity IDs", not unknown,
               f"{right} of {len(held_out)} held-out files named their entity first"
               + (f"; unknown IDs: {', '.join(unknown[:3])}" if unknown else ""))
