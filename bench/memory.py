"""Peak resident memory of a process and of its descendants, sampled in a background thread."""

from __future__ import annotations

import contextlib
import threading
from dataclasses import dataclass
from typing import Any

import psutil

MiB = 1024 * 1024


class RssSampler:
    """Samples every ``interval`` seconds; :meth:`window` starts a new peak measurement."""

    def __init__(self, pid: int, interval: float = 0.1) -> None:
        self.process = psutil.Process(pid)
        self.interval = interval
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="rss-sampler", daemon=True)
        self._reset()

    def _reset(self) -> None:
        self.samples = 0
        self.peak_self = 0
        self.peak_total = 0
        self.peak_children = 0
        self.max_children = 0

    def __enter__(self) -> RssSampler:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(5)

    def sample(self) -> tuple[int, int, int]:
        """(own RSS, sum of descendants' RSS, number of descendants) right now."""
        own = self.process.memory_info().rss
        children_rss = 0
        children = 0
        for child in self.process.children(recursive=True):
            with contextlib.suppress(psutil.Error):
                children_rss += child.memory_info().rss
                children += 1
        return own, children_rss, children

    def _loop(self) -> None:
        while not self._stop.is_set():
            with contextlib.suppress(psutil.Error):
                own, children_rss, children = self.sample()
                with self._lock:
                    self.samples += 1
                    self.peak_self = max(self.peak_self, own)
                    self.peak_children = max(self.peak_children, children_rss)
                    self.peak_total = max(self.peak_total, own + children_rss)
                    self.max_children = max(self.max_children, children)
            self._stop.wait(self.interval)

    def window(self) -> None:
        """Forget the peaks so far."""
        with self._lock:
            self._reset()

    def result(self) -> dict[str, float]:
        with self._lock:
            return {
                "peak_worker_rss_mib": round(self.peak_self / MiB, 1),
                "peak_children_rss_mib": round(self.peak_children / MiB, 1),
                "peak_worker_plus_children_rss_mib": round(self.peak_total / MiB, 1),
                "children_seen": self.max_children,
                "samples": self.samples,
            }


# --------------------------------------------------------------------------- a newcomer's session, in rounds

def tree_rss(pid: int) -> dict[str, float]:
    """RSS of a process and of its descendants (decode processes, a uvicorn child), in MiB."""
    process = psutil.Process(pid)
    own = process.memory_info().rss
    children = 0
    for child in process.children(recursive=True):
        with contextlib.suppress(psutil.Error):
            children += child.memory_info().rss
    return {"rss_mib": round(own / MiB, 1), "children_rss_mib": round(children / MiB, 1),
            "total_rss_mib": round((own + children) / MiB, 1)}


def growth(rounds: list[dict[str, Any]], process: str) -> dict[str, Any]:
    """RSS after the last round over RSS after the first, for the process alone and with its descendants."""
    first, last = rounds[0][process], rounds[-1][process]
    return {
        "after_first_mib": first["rss_mib"], "after_last_mib": last["rss_mib"],
        "last_over_first": round(last["rss_mib"] / first["rss_mib"], 3),
        "total_after_first_mib": first["total_rss_mib"], "total_after_last_mib": last["total_rss_mib"],
        "total_last_over_first": round(last["total_rss_mib"] / first["total_rss_mib"], 3),
    }


GALLERY, CLASSIFIER, FACE = "engineshed-gallery", "engineshed-classifier", "engineshed-face"
REGISTER = "mutation($n: String!, $m: JSONData) { registerModel(input: {name: $n, application: embedding, manifest: $m}) { id } }"
MODEL_STATUS = "query($n: String!) { model(name: $n) { status } }"
OBJECTS = 'mutation($n: String!) { createLibrary(input: {name: $n, libraryTypeId: "objects"}) { id } }'
JOB_TASK = "query($id: ID!) { job(id: $id) { tasks { records { id } } } }"
GENERATE = "mutation($l: ID, $m: String) { generateEmbeddings(libraryId: $l, modelId: $m) { id } }"
AUTOTAG = ("mutation($l: ID!, $m: ID) { autoTag(input: {libraryId: $l, libraryEngineModelId: $m, "
           "filter: {annotationTypes: [raw]}}) { id } }")
AUTOGROUP = "mutation($l: ID!, $n: Int) { autoGroup(input: {libraryId: $l, nClusters: $n}) { id } }"


@dataclass
class SessionSizes:
    """One round's work; every round repeats it on new libraries, new models and new images."""

    entities: int = 8  # people library: entities × per_entity 64×64 images
    per_entity: int = 5
    digits: int = 100  # labeled digits for the classifier, and a third as many unassigned for autoTag
    recognize_calls: int = 10  # per model trained this round; every earlier model is asked once more
    reads: int = 20  # GetIdentifiers pages


async def _job_done(client: Any, job_id: str, timeout: float) -> None:
    from bench.scenarios import TASK_FULL, wait_task
    from bench.stack import BenchError

    task_id = (await client.data(JOB_TASK, id=job_id))["job"]["tasks"]["records"][0]["id"]
    status, _ = await wait_task(client, task_id, interval=0.1, timeout=timeout)
    if status != "complete":
        task = (await client.data(TASK_FULL, id=task_id))["task"]
        raise BenchError(f"task {task_id} ended {status}: {task.get('failureMessage')}")


async def _trained(client: Any, library: str, engine: str, config: dict[str, Any] | None, timeout: float) -> str:
    from bench.scenarios import TASK_FULL, start_training, wait_task
    from bench.stack import BenchError

    model_id, task_id, _ = await start_training(client, library, config, engine=engine)
    status, _ = await wait_task(client, task_id, interval=0.1, timeout=timeout)
    if status != "complete":
        task = (await client.data(TASK_FULL, id=task_id))["task"]
        raise BenchError(f"{engine} training ended {status}: {task.get('failureMessage')}")
    return model_id


async def _register(client: Any, name: str, seed: int, timeout: float) -> None:
    """``registerModel`` with the plain form (query, variables, file), then wait for the worker's trial."""
    import asyncio
    import json
    import time

    from bench.stack import BenchError
    from sampledata.onnx_models import conv_net, normalised_manifest

    response = await client.http.post(client.url, data={
        "query": REGISTER, "variables": json.dumps({"n": name, "m": normalised_manifest()}),
    }, files={"file": (f"{name}.onnx", conv_net(dimension=32, seed=seed), "application/octet-stream")})
    client._reply(response).ok()
    deadline = time.monotonic() + timeout
    while (status := (await client.data(MODEL_STATUS, n=name))["model"]["status"]) == "validating":
        if time.monotonic() > deadline:
            raise BenchError(f"model {name} still validating after {timeout:.0f} s")
        await asyncio.sleep(0.2)
    if status != "ready":
        raise BenchError(f"model {name} is {status} after its trial")


async def _upload(client: Any, target: str, data: bytes, content_type: str, kind: str, unassigned: bool = False) -> None:
    where = f'libraryId: "{target}"' if unassigned else f'entityId: "{target}"'
    (await client.upload_form(
        f'mutation {{ createEntityIdentifier(input: {{{where}, identifierTypeId: "{kind}"}}) {{ id }} }}',
        data, content_type, filename="x.jpg" if content_type == "image/jpeg" else "x.png",
    )).ok()


async def _recognize(client: Any, model_id: str, data: bytes, content_type: str, faces: bool = False) -> None:
    fields = "faces { matches { entityName score } }" if faces else "matches { entityId score }"
    (await client.upload_form(f'query {{ recognize(libraryEngineModelId: "{model_id}", topK: 3) {{ {fields} }} }}',
                              data, content_type, filename="q.jpg" if content_type == "image/jpeg" else "q.png")).ok()


async def newcomer_session(
    client: Any, gateway_pid: int, worker_pid: int, rounds: int, sizes: SessionSizes, *,
    face_photos: tuple[list[tuple[str, bytes]], list[bytes]] | None, face_per_person: int = 1, concurrency: int,
    timeout: float,
    log: Any = print,
) -> dict[str, Any]:
    """``rounds`` times what a newcomer does in an hour, each round on new libraries, models and images: a
    people library trained with the gallery (built-in backbone, and a model registered that round), a digits
    library trained with the classifier, a face library with the face engine (``face_photos``), recognize with
    every model of the round and once with each earlier one, autoTag, autoGroup, generateEmbeddings and
    GetIdentifiers pages. RSS of the gateway and the worker (with their descendants) after each round."""
    import time

    import numpy as np

    from bench.images import make_image
    from bench.scenarios import CREATE_ENTITY, CREATE_LIBRARY, bounded
    from sampledata.digits import NAMES, load, png
    from sampledata.published import published_operation
    from sklearn.datasets import load_digits

    digits = load().train
    pool = [png(row) for row in load_digits().data]  # unassigned digits and recognize queries
    earlier: list[tuple[str, str]] = []  # (model id, kind) from earlier rounds
    out: list[dict[str, Any]] = []
    steps: list[dict[str, Any]] = []

    def mark(step: str) -> None:  # where in a round each process grew (MiB, the process alone)
        steps.append({"round": r + 1, "step": step, "gateway_mib": tree_rss(gateway_pid)["rss_mib"],
                      "worker_mib": tree_rss(worker_pid)["rss_mib"]})

    r = -1
    mark("start")
    for r in range(rounds):
        started = time.perf_counter()
        models: list[tuple[str, str]] = []  # (model id, what it recognizes: people, digits or faces)
        # People: the gallery on the built-in backbone, then on an embedding model registered this round.
        people = (await client.data(CREATE_LIBRARY, n=f"session-people-{r}"))["createLibrary"]["id"]
        seeds = [7_000_000 + 1000 * r + e for e in range(sizes.entities)]
        ids = [(await client.data(CREATE_ENTITY, l=people, n=f"p{r}-{e}"))["createEntity"]["id"] for e in range(sizes.entities)]
        work = [(ids[e], *make_image(seeds[e], k)) for e in range(sizes.entities) for k in range(sizes.per_entity)]
        await bounded(work, concurrency, lambda w: _upload(client, w[0], w[1], w[2], "face"))
        models.append((await _trained(client, people, GALLERY, None, timeout), "people"))
        mark("gallery")
        net = f"session-net-{r}"
        await _register(client, net, seed=100 + r, timeout=timeout)
        models.append((await _trained(client, people, GALLERY, {"modelId": net}, timeout), "people"))
        mark("registered model + gallery")
        # Digits: the classifier, then autoTag and autoGroup on unassigned ones.
        objects = (await client.data(OBJECTS, n=f"session-digits-{r}"))["createLibrary"]["id"]
        entity = {f"digit-{d}": (await client.data(CREATE_ENTITY, l=objects, n=NAMES[d]))["createEntity"]["id"] for d in range(10)}
        chosen = [digits[(r * sizes.digits + i) % len(digits)] for i in range(sizes.digits)]
        await bounded(chosen, concurrency, lambda d: _upload(client, entity[d.entity_id], d.data, "image/png", "image"))
        classifier = await _trained(client, objects, CLASSIFIER, None, timeout)
        models.append((classifier, "digits"))
        mark("classifier")
        extra = [pool[(r * 37 + i) % len(pool)] for i in range(max(10, sizes.digits // 3))]
        await bounded(extra, concurrency, lambda b: _upload(client, objects, b, "image/png", "image", unassigned=True))
        await _job_done(client, (await client.data(AUTOTAG, l=objects, m=classifier))["autoTag"]["id"], timeout)
        await _job_done(client, (await client.data(AUTOGROUP, l=objects, n=10))["autoGroup"]["id"], timeout)
        mark("autoTag + autoGroup")
        await _job_done(client, (await client.data(GENERATE, l=people, m=net))["generateEmbeddings"]["id"], timeout)
        mark("generateEmbeddings")
        # Faces: the face engine on the pulled models, one new photo per person every round.
        if face_photos is not None:
            train, _ = face_photos
            faces = (await client.data(CREATE_LIBRARY, n=f"session-faces-{r}"))["createLibrary"]["id"]
            fid = {p: (await client.data(CREATE_ENTITY, l=faces, n=p))["createEntity"]["id"] for p in sorted({p for p, _ in train})}
            photos = train[r % face_per_person :: face_per_person]
            await bounded(photos, concurrency, lambda item: _upload(client, fid[item[0]], item[1], "image/jpeg", "face"))
            models.append((await _trained(client, faces, FACE, {"batchSize": 32}, timeout), "faces"))
            mark("face engine")
        rng = np.random.default_rng(r)

        def query(kind: str) -> tuple[bytes, str]:
            if kind == "people":
                return make_image(seeds[int(rng.integers(len(seeds)))], int(rng.integers(10_000, 20_000)))
            if kind == "digits":
                return pool[int(rng.integers(len(pool)))], "image/png"
            assert face_photos is not None
            return face_photos[1][int(rng.integers(len(face_photos[1])))], "image/jpeg"

        # Recognize: every model of this round many times (a face photo costs more: fewer), every earlier one once.
        for model_id, kind in models:
            for _ in range(sizes.recognize_calls if kind != "faces" else max(2, sizes.recognize_calls // 4)):
                await _recognize(client, model_id, *query(kind), kind == "faces")
        mark("recognize, this round's models")
        for model_id, kind in earlier:
            await _recognize(client, model_id, *query(kind), kind == "faces")
        mark("recognize, earlier models")
        earlier.extend(models)
        operation = published_operation(people)
        for _ in range(sizes.reads):
            (await client.query(operation, identifierTypeId="face", limit=30)).ok()
        sample = {"round": r + 1, "seconds": round(time.perf_counter() - started, 1), "models": len(earlier),
                  "gateway": tree_rss(gateway_pid), "worker": tree_rss(worker_pid)}
        log(f"round {r + 1}/{rounds} in {sample['seconds']} s: gateway {sample['gateway']}, worker {sample['worker']}")
        out.append(sample)
    return {"rounds": out, "steps": steps, "gateway": growth(out, "gateway"), "worker": growth(out, "worker")}


def rows(s: dict[str, Any], fmt: Any) -> list[str]:
    """Figure 17: RSS after the last round over RSS after the first (growth shows as > 1)."""
    n, faces = len(s["rounds"]), "with" if s.get("faces") else "without"
    lines = []
    for name in ("gateway", "worker"):
        g = s[name]
        lines.append(
            f"| 17 | {name} RSS after {n} newcomer rounds ({faces} the face engine) / after the first | "
            f"**{fmt(g['last_over_first'], 3)}** ({fmt(g['after_last_mib'])} / {fmt(g['after_first_mib'])} MiB; with its "
            f"descendants {fmt(g['total_after_last_mib'])} / {fmt(g['total_after_first_mib'])} MiB) |")
    return lines
