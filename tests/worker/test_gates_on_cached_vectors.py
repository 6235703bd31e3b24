"""The quality gates hold for identifiers whose vector is not computed by the training: read from
identifier_embeddings (a registered model) or from the content cache (the built-in backbone). A retrain with a
stricter gate skips what it should, with its reason, from the measures kept per content, fetching nothing; what
was never measured (sharpness, by a run without that gate) is fetched and measured once."""

from __future__ import annotations

import io
from collections.abc import Iterator
from typing import Any

import pytest
from PIL import Image

from sampledata.onnx_models import conv_net, normalised_manifest
from tests.conftest import Gateway, Org, Process, Stack, make_org
from tests.engines import api_helpers as api
from tests.engines import registered
from tests.support.waits import wait_task


@pytest.fixture(scope="module")
def gate_org(stack: Stack, gateway: Gateway) -> Iterator[Org]:
    org = make_org(stack, gateway, "gates-on-cache")
    registered.register_org_model(org, "gate-net", "embedding", conv_net(dimension=16, seed=4), normalised_manifest())
    yield org
    org.close()


@pytest.fixture(scope="module")
def worker(stack: Stack, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Process]:
    process = api.start_worker_process(stack, tmp_path_factory.mktemp("gates-on-cache"), "gates-on-cache-worker")
    yield process
    process.stop()


def flat(side: int, level: int) -> bytes:
    """A uniform grey image: sharpness 0, so blurry under any sharpness gate."""
    out = io.BytesIO()
    Image.new("L", (side, side), level).save(out, "PNG")
    return out.getvalue()


def mixed_library(org: Org, name: str, seed: int) -> tuple[str, set[str], set[str]]:
    """Two entities of three 32 px noise images each, plus two 16 px noise images and two flat 32 px ones."""
    library = api.create_library(org, name)
    entities = [org.create_entity(library, f"{name}-{e}") for e in range(2)]
    api.add_identifiers(org, [(entities[e], api.png(32, seed + 10 * e + n)) for e in range(2) for n in range(3)])
    small = set(api.add_identifiers(org, [(entities[n], api.png(16, seed + 500 + n)) for n in range(2)]))
    # Distinct per library: measures are kept per content, so a flat image already measured elsewhere is known.
    blurry = set(api.add_identifiers(org, [(entities[n], flat(32, 40 + 100 * n + seed // 1000)) for n in range(2)]))
    return library, small, blurry


def skipped(model: dict[str, Any]) -> dict[str, str]:
    return {s["identifierId"]: s["reason"] for s in model["jsondata"].get("skipped") or []}


@pytest.mark.parametrize("config", [{"modelId": "gate-net"}, {}], ids=["stored-vectors", "embedding-cache"])
def test_a_stricter_retrain_skips_small_and_blurry_images_it_did_not_fetch(
    gate_org: Org, worker: Process, config: dict[str, Any],
) -> None:
    library, small, blurry = mixed_library(gate_org, "gates-" + ("stored" if config else "cache"), seed=len(config) * 1000)
    first, task = api.trained(gate_org, api.GALLERY, library, config, worker=worker)
    assert first["trainStatus"] == "complete" and skipped(first) == {}, first["jsondata"]
    assert task["output"]["fetches"] == 10

    stricter, task = api.trained(gate_org, api.GALLERY, library, {**config, "minSize": 24}, worker=worker)
    assert stricter["trainStatus"] == "complete", stricter["jsondata"]
    assert skipped(stricter) == {i: "too-small" for i in small}
    assert stricter["jsondata"]["identifiers"] == 8
    assert task["output"]["fetches"] == 0  # the sizes were kept when the first training decoded the images
    details = [s["detail"] for s in stricter["jsondata"]["skipped"]]
    assert details == ["shorter side 16 px is under minSize 24"] * 2

    # Sharpness was not measured by a run without that gate: those images are fetched and measured once ...
    sharp, task = api.trained(gate_org, api.GALLERY, library, {**config, "minSize": 24, "sharpnessThreshold": 5.0}, worker=worker)
    assert skipped(sharp) == {**{i: "too-small" for i in small}, **{i: "blurry" for i in blurry}}
    assert task["output"]["fetches"] == 8  # the 16 px ones are decided by their size alone
    # ... and a fourth training needs no byte at all.
    again, task = api.trained(gate_org, api.GALLERY, library, {**config, "minSize": 24, "sharpnessThreshold": 5.0}, worker=worker)
    assert skipped(again) == skipped(sharp) and task["output"]["fetches"] == 0
    assert again["jsondata"]["identifiers"] == 6


def test_vectors_made_at_ingest_carry_the_sizes_a_gated_training_reads(gate_org: Org, worker: Process) -> None:
    library, small, _ = mixed_library(gate_org, "gates-ingest", seed=7000)
    job_id = gate_org.client.query(
        "mutation($l: ID, $m: String) { generateEmbeddings(libraryId: $l, modelId: $m) { id } }", l=library, m="gate-net",
    ).ok()["generateEmbeddings"]["id"]
    job = wait_task(gate_org, job_id, timeout=120)
    assert job["output"]["embedded"] == 10, job
    trained, task = api.trained(gate_org, api.GALLERY, library, {"modelId": "gate-net", "minSize": 24}, worker=worker)
    assert trained["trainStatus"] == "complete", trained["jsondata"]
    assert skipped(trained) == {i: "too-small" for i in small}
    assert task["output"]["fetches"] == 0 and task["output"]["storedEmbeddings"] == 10
