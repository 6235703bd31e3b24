"""Driving the built-in engines through the public API, as a user would: HTTP in, HTTP out.

Small builders over :class:`tests.conftest.Org` (libraries, concurrent identifier uploads, models,
training jobs, recognition) and a reader that runs a downloaded artifact with plain onnxruntime and
the artifact's own metadata, without any engineshed code.
"""

from __future__ import annotations

import io
import json
import sys
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime
from pathlib import Path
from typing import Any

import numpy as np
import onnxruntime as ort
import pytest
from PIL import Image

from tests.conftest import Org, Process, Stack
from tests.graphql_client import GraphQLClient, Reply
from tests.support.waits import wait_model, wait_task

GALLERY = "engineshed-gallery"
CLASSIFIER = "engineshed-classifier"
SLEEPER = "test-sleeper"
UPLOAD_THREADS = 8

MODEL_FIELDS = "id engineId libraryId trainStatus trainJobId jsondata accuracy dataUrl contentType"
TASK_FIELDS = "id status output startedDateTime completedDateTime failureReason failureMessage"
MATCH_FIELDS = "libraryEngineModelId libraryId engineId threshold matches { libraryId entityId entityName entityIdentifierId score }"

RECOGNIZE = f"""query($m: ID!, $k: Int, $t: Float, $u: String) {{
  recognize(libraryEngineModelId: $m, topK: $k, threshold: $t, url: $u) {{ {MATCH_FIELDS} }}
}}"""


# -- the worker ------------------------------------------------------------------------------------


def start_worker_process(stack: Stack, log_dir: Path, name: str, **extra_env: str) -> Process:
    """A worker subprocess that outlives one test (the conftest fixture is per test)."""
    env = dict(stack.env)
    env.update(extra_env)
    return Process([sys.executable, "-m", "gateway.cli", "worker", "--id", name], env, log_dir / f"{name}.log")


# -- building a library ----------------------------------------------------------------------------


def png(side: int, seed: int) -> bytes:
    """A grey side×side PNG of noise; distinct seeds give distinct content (and sha256)."""
    pixels = np.random.default_rng(seed).integers(0, 256, (side, side), dtype=np.uint8)
    out = io.BytesIO()
    Image.fromarray(pixels, "L").save(out, "PNG")
    return out.getvalue()


def create_library(org: Org, name: str) -> str:
    return org.create_library(name, "objects")


def add_identifier(client: GraphQLClient, entity_id: str, data: bytes, content_type: str = "image/png") -> str:
    reply = client.upload_form(
        'mutation($e: ID!) { createEntityIdentifier(input: {entityId: $e, identifierTypeId: "image"}) { id } }',
        data, content_type, filename="x.png", variables={"e": entity_id},
    )
    return reply.ok()["createEntityIdentifier"]["id"]


def add_identifiers(org: Org, items: Sequence[tuple[str, bytes]], threads: int = UPLOAD_THREADS) -> list[str]:
    """Upload (entity id, PNG bytes) pairs concurrently; identifier ids in the order given."""
    with ThreadPoolExecutor(threads) as pool:
        return list(pool.map(lambda item: add_identifier(org.client, item[0], item[1]), items))


def add_reference_identifier(org: Org, entity_id: str, url: str) -> str:
    data = org.client.query(
        """mutation($e: ID!, $u: String!) { createEntityIdentifier(input: {
             entityId: $e, identifierTypeId: "image", contentType: "image/png", url: $u, storeReference: true}) { id } }""",
        e=entity_id, u=url,
    ).ok()
    return data["createEntityIdentifier"]["id"]


def small_library(org: Org, name: str, entities: int = 2, per_entity: int = 5, seed: int = 0) -> tuple[str, list[str]]:
    """A library of noise images, ``per_entity`` of them in each of ``entities`` entities."""
    library_id = create_library(org, name)
    entity_ids = [org.create_entity(library_id, f"{name}-{e}") for e in range(entities)]
    add_identifiers(org, [(e, png(32, seed * 10_000 + i * 100 + n)) for i, e in enumerate(entity_ids) for n in range(per_entity)])
    return library_id, entity_ids


# -- models, jobs and their outcome -----------------------------------------------------------------


def create_model(org: Org, engine_id: str, library_id: str) -> str:
    data = org.client.query(
        "mutation($e: ID!, $l: ID!) { createLibraryEngineModel(input: {engineId: $e, libraryId: $l}) { id trainStatus } }",
        e=engine_id, l=library_id,
    ).ok()
    assert data["createLibraryEngineModel"]["trainStatus"] == "pending"
    return data["createLibraryEngineModel"]["id"]


def create_train_job(org: Org, engine_id: str, library_id: str, model_id: str, config: dict[str, Any] | None = None) -> dict[str, Any]:
    payload: dict[str, Any] = {"mode": "library-train", "libraryId": library_id, "libraryEngineModelId": model_id}
    if config is not None:
        payload["config"] = config
    data = org.client.query(
        f"mutation($e: ID!, $p: JSONData) {{ createJob(input: {{tasks: [{{engineId: $e, payload: $p}}]}}) {{ id status tasks {{ records {{ {TASK_FIELDS} }} }} }} }}",
        e=engine_id, p=payload,
    ).ok()
    return data["createJob"]


def train(org: Org, engine_id: str, library_id: str, config: dict[str, Any] | None = None) -> tuple[str, str]:
    """A new model of ``engine_id`` for the library and its library-train job: (model id, job id)."""
    model_id = create_model(org, engine_id, library_id)
    job = create_train_job(org, engine_id, library_id, model_id, config)
    return model_id, job["id"]


def get_model(org: Org, model_id: str) -> dict[str, Any]:
    return org.client.query(f"query($id: ID!) {{ libraryEngineModel(id: $id) {{ {MODEL_FIELDS} }} }}", id=model_id).ok()["libraryEngineModel"]


def trained(org: Org, engine_id: str, library_id: str, config: dict[str, Any] | None = None, *, worker: Process | None = None, timeout: float = 120) -> tuple[dict[str, Any], dict[str, Any]]:
    """Train and wait: (the finished model, its finished task)."""
    model_id, job_id = train(org, engine_id, library_id, config)
    model = wait_model(org, model_id, timeout=timeout, worker=worker)
    return model, wait_task(org, job_id)


def task_seconds(task: dict[str, Any]) -> float:
    """completedDateTime − startedDateTime of a task, in seconds."""

    def parse(value: str) -> datetime:
        return datetime.fromisoformat(value.replace("Z", "+00:00"))

    return (parse(task["completedDateTime"]) - parse(task["startedDateTime"])).total_seconds()


# -- recognition -----------------------------------------------------------------------------------


def recognize(client: GraphQLClient, model_id: str, image: bytes, *, top_k: int | None = 5, threshold: float | None = -1.0) -> Reply:
    """The recognize query with the image as the plain form's ``file`` part."""
    return client.upload_form(RECOGNIZE, image, "image/png", filename="query.png", variables={"m": model_id, "k": top_k, "t": threshold})


def recognize_all(client: GraphQLClient, model_id: str, images: Sequence[bytes], threads: int = UPLOAD_THREADS, **kwargs: Any) -> list[dict[str, Any]]:
    with ThreadPoolExecutor(threads) as pool:
        return list(pool.map(lambda image: recognize(client, model_id, image, **kwargs).ok()["recognize"], images))


def assert_error(reply: Reply, code: str, *fragments: str) -> str:
    """The reply is one clean field error with ``code`` whose message holds each fragment; the message."""
    assert reply.status == 200, (reply.status, reply.body)
    # A query's non-null field nulls the whole reply; upstream's nullable mutation results are null on their own.
    assert reply.data is None or not any(reply.data.values()), reply.body
    assert reply.error_code == code, reply.errors
    error = reply.errors[0]
    assert error.get("name", code) == code, error
    message = reply.error_message or ""
    for fragment in fragments:
        assert fragment in message, (fragment, message)
    text = json.dumps(reply.body)
    assert "Traceback" not in text and "stacktrace" not in text.lower(), text
    return message


# -- the downloaded artifact, read without engineshed ---------------------------------------------------


def run_artifact_plainly(data: bytes, images: Sequence[bytes]) -> tuple[list[list[str]], np.ndarray]:
    """Entity ids and scores per image from the artifact with onnxruntime and its metadata alone.

    The preprocessing is the documented one: grey (1 channel) or RGB, size×size bilinear, uint8 NHWC.
    """
    session = ort.InferenceSession(data, providers=["CPUExecutionProvider"])
    meta = session.get_modelmeta().custom_metadata_map
    size, channels = int(meta["engineshed.imageSize"]), int(meta["engineshed.channels"])
    labels = {int(x["index"]): x["entityId"] for x in json.loads(meta["engineshed.labels"])}
    mode = "L" if channels == 1 else "RGB"
    batch = np.stack([
        np.asarray(Image.open(io.BytesIO(b)).convert(mode).resize((size, size), Image.Resampling.BILINEAR), np.uint8)
        .reshape(size, size, channels)
        for b in images
    ])  # fmt: skip
    scores, indices = session.run(["scores", "indices"], {session.get_inputs()[0].name: batch})
    return [[labels[int(i)] for i in row] for row in indices], scores


def top1(results: Sequence[dict[str, Any]], expected: Sequence[str]) -> float:
    """Share of recognize results whose best match is the expected entity id."""
    hits = [bool(r["matches"]) and r["matches"][0]["entityId"] == e for r, e in zip(results, expected, strict=True)]
    return float(np.mean(hits))


def say(capsys: pytest.CaptureFixture[str], line: str) -> None:
    """Print past pytest's capture, so a measurement shows in a plain run."""
    with capsys.disabled():
        print(line)

