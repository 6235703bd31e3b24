"""Helpers for the engine kit's tests: external engines registered through the public API, libraries of real
handwritten digits (a held-out fifth kept apart), and train jobs created as the established flow creates them."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from dataclasses import dataclass

import pytest

from sampledata.digits import Digits
from tests.conftest import Org, Stack
from tests.worker.conftest import create_model, create_train_job, job, model  # noqa: F401  (re-exported for the tests)


@dataclass(frozen=True)
class DigitLibrary:
    id: str
    entity_ids: dict[str, str]  # sample entity id ("digit-3") -> library entity id
    held_out: list[tuple[bytes, str]]  # (png, library entity id)


def create_engine(org: Org, types: tuple[str, ...] = ("image",), modes: tuple[str, ...] = ("library-train",)) -> str:
    engine_id = f"kit-{uuid.uuid4().hex[:10]}"
    org.client.query(
        "mutation($id: ID!, $t: [ID!]!, $m: [String!]) { createEngine(input: {id: $id, identifierTypeIds: $t, modes: $m}) { id } }",
        id=engine_id, t=list(types), m=list(modes),
    ).ok()
    return engine_id


def build_digit_library(org: Org, digits: Digits, digits_wanted: int = 4, per_entity: int = 7) -> DigitLibrary:
    library_id = org.create_library("digits", "objects")
    wanted = [f"digit-{d}" for d in range(digits_wanted)]
    entity_ids = {name: org.create_entity(library_id, name) for name in wanted}
    for name in wanted:
        for entry in [e for e in digits.train if e.entity_id == name][:per_entity]:
            org.add_identifier(entity_ids[name], entry.data, type_id="image")
    held_out = [(image, entity_ids[name]) for image, name in zip(digits.test_images, digits.test_entity_ids) if name in entity_ids]
    return DigitLibrary(library_id, entity_ids, held_out)


def train_job(org: Org, library_id: str, engine_id: str) -> tuple[str, str, str]:
    """(job id, task id, model id) of a new library-train job for ``engine_id``."""
    model_id = create_model(org, library_id, engine_id)
    created = create_train_job(org, library_id, model_id, engine_id)
    return created["id"], created["tasks"]["records"][0]["id"], model_id


@pytest.fixture(autouse=True)
def quiet_queue_after(stack: Stack) -> Iterator[None]:
    """Work a test leaves queued or running must not reach the next test's engines."""
    yield
    stack.db.execute(
        """UPDATE tasks SET status = 'cancelled', lease_owner = NULL, lease_expires_at = NULL, completed_at = now()
        WHERE status IN ('queued', 'pending', 'running')"""
    )
