"""The client commands' bodies: each takes the parsed arguments and returns the exit status."""

from __future__ import annotations

import argparse
import json
import re
import time
from collections.abc import Callable, Iterator
from typing import Any

from rich.progress import BarColumn, MofNCompleteColumn, Progress, TaskProgressColumn, TextColumn, TimeElapsedColumn, TimeRemainingColumn

from engineshed.cli import media, output, training
from engineshed.cli.importer import LIBRARY_TYPE_FOR, Importer, scan
from engineshed.client import Client
from engineshed.client.connection import resolve
from engineshed.client.errors import (
    ApiError,
    AuthenticationError,
    ConnectionFailed,
    EngineshedError,
    InvalidInputError,
    NotFoundError,
)

UUID = re.compile(r"^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$")


def _client(args: argparse.Namespace) -> Client:
    found = resolve(args.url, args.token, data_dir=args.data_dir)
    if not found.token:
        raise AuthenticationError(
            "no token: pass --token, set ENGINESHED_TOKEN, or start `make run` (it writes .engineshed/admin-token)")
    return Client(found.url, found.token)


def _library(client: Client, ref: str) -> dict[str, Any] | None:
    """A library by exact name, else by id."""
    found = client.find_library(ref)
    if found is None and UUID.match(ref):
        try:
            found = client.library(ref)
        except NotFoundError:
            return None
    return found


def dispatch(args: argparse.Namespace) -> int:
    handlers: dict[str, Callable[[argparse.Namespace, Client], int]] = {
        "import": import_command, "train": train_command, "recognize": recognize_command,
    }
    try:
        client = _client(args)
    except EngineshedError as exc:
        output.fail(str(exc))
        return output.AUTH if isinstance(exc, AuthenticationError) else output.USAGE
    try:
        with client:
            if args.command == "models":
                return models_list(args, client) if args.models_command == "list" else models_show(args, client)
            if args.command == "jobs":
                return {"list": jobs_list, "cancel": jobs_cancel, "retry": jobs_retry}[args.jobs_command](args, client)
            return handlers[args.command](args, client)
    except AuthenticationError as exc:
        output.fail(f"the server refused the token ({exc.message}); check --token / ENGINESHED_TOKEN")
        return output.AUTH
    except ConnectionFailed as exc:
        output.fail(f"{exc} (is the server running? `make run` starts a local one)")
        return output.UNREACHABLE
    except InvalidInputError as exc:
        output.fail(str(exc))
        return output.USAGE
    except NotFoundError as exc:
        output.fail(str(exc))
        return output.NOT_FOUND
    except ApiError as exc:
        output.fail(str(exc))
        return output.UNREACHABLE if exc.code in ("service_unavailable", "internal_error", "service_failure") else output.FAILED
    except KeyboardInterrupt:
        output.fail("interrupted")
        return output.INTERRUPTED


# -- import ------------------------------------------------------------------------------------------------------------


def import_command(args: argparse.Namespace, client: Client) -> int:
    root = args.directory
    if not root.is_dir():
        output.fail(f"{root} is not a directory")
        return output.USAGE
    if args.concurrency < 1:
        output.fail("--concurrency must be 1 or more")
        return output.USAGE
    items, refused = scan(root, args.entity_per_folder)
    library = _library(client, args.library)
    created = False
    if library is None:
        library_type = args.library_type or LIBRARY_TYPE_FOR.get(args.identifier_type)
        if library_type is None:
            output.fail(f"give --library-type: no default library type for --type {args.identifier_type}")
            return output.USAGE
        library = client.create_library(args.library, library_type)
        created = True
    if not created:
        takes = client.query("query($id: ID!) { library(id: $id) { libraryTypeId libraryType { entityIdentifierTypes { id } } } }",
                             {"id": library["id"]}, idempotent=True)["library"]
        allowed = [t["id"] for t in takes["libraryType"]["entityIdentifierTypes"]]
        if args.identifier_type not in allowed:
            output.fail(f"library {library['name']} ({takes['libraryTypeId']}) takes identifiers of type "
                        f"{', '.join(allowed) or 'none'}, not {args.identifier_type}; pass --type")
            return output.USAGE
    known = {} if created else client.library_contents(library["id"])
    importer = Importer(client, library["id"], args.identifier_type, concurrency=args.concurrency, known=known,
                        direct=not args.multipart)
    importer.outcome.library_created = created
    importer.outcome.failed.extend(refused)

    columns = (TextColumn("importing"), BarColumn(), MofNCompleteColumn(), TaskProgressColumn(),
               TextColumn("{task.fields[rate]}"), TextColumn("ETA"), TimeRemainingColumn(), TimeElapsedColumn())
    with Progress(*columns, console=output.stderr, disable=args.json, transient=False) as progress:
        task = progress.add_task("import", total=len(items), rate="")

        def advance(n: int) -> None:
            progress.advance(task, n)
            speed = progress.tasks[0].speed
            progress.update(task, rate=f"{speed:.1f} files/s" if speed else "")

        try:
            outcome = importer.run(items, advance)
        except AuthenticationError:
            raise
        except ConnectionFailed:
            raise
    return _import_summary(args, library, outcome)


def _import_summary(args: argparse.Namespace, library: dict[str, Any], outcome: Any) -> int:
    status = output.INTERRUPTED if outcome.interrupted else output.FAILED if outcome.failed else output.OK
    if args.json:
        output.emit_json({"library": library["name"], **outcome.as_json(), "exitStatus": status})
        return status
    rate = outcome.uploaded / outcome.seconds if outcome.seconds > 0 else 0.0
    output.note(f"library {library['name']} ({library['id']}){' created' if outcome.library_created else ''}: "
                f"{outcome.uploaded} uploaded, {outcome.skipped} already there, {len(outcome.failed)} failed"
                + (f", {outcome.not_started} not started" if outcome.not_started else "")
                + f", {outcome.entities_created} entities created, {rate:.1f} files/s")
    if outcome.failed:
        output.table("not imported", ["file", "reason"], sorted(outcome.failed))
    if outcome.interrupted:
        output.note("interrupted: run the same command again to import the rest (files already uploaded are skipped)")
    return status


# -- train -------------------------------------------------------------------------------------------------------------


def train_command(args: argparse.Namespace, client: Client) -> int:
    library = _library(client, args.library)
    if library is None:
        output.fail(f"no library {args.library!r}")
        return output.NOT_FOUND
    config = None
    if args.config:
        try:
            config = json.loads(args.config)
        except ValueError as exc:
            output.fail(f"--config is not JSON: {exc}")
            return output.USAGE
        if not isinstance(config, dict):
            output.fail("--config must be a JSON object")
            return output.USAGE
    job = client.train(library["id"], args.engine, config)
    engine = job["tasks"]["records"][0]["engineId"] if job["tasks"]["records"] else args.engine
    if not args.wait:
        if args.json:
            output.emit_json(job)
        else:
            output.note(f"training {library['name']} with {engine}: job {job['id']}, model {job['libraryEngineModelId']}")
        return output.OK
    last = job
    columns = (TextColumn(f"training {library['name']} ({engine})"), BarColumn(), TaskProgressColumn(),
               TextColumn("{task.fields[status]}"), TimeElapsedColumn(), TextColumn("ETA"), TimeRemainingColumn())
    try:
        with Progress(*columns, console=output.stderr, disable=args.json) as progress:
            bar = progress.add_task("train", total=1.0, status="queued")
            for update in follow(client, job["id"]):
                last = update
                tasks = update["tasks"]["records"]
                done = sum(t["progress"] for t in tasks) / len(tasks) if tasks else 0.0
                if update["status"] == "complete":
                    done = 1.0
                progress.update(bar, completed=done, status=update["status"])
    except KeyboardInterrupt:
        output.note(f"stopped following; job {job['id']} goes on (`engineshed jobs cancel {job['id']}` stops it)")
        return output.INTERRUPTED
    last = dict(last, libraryEngineModelId=job["libraryEngineModelId"])
    if last["status"] != "complete":
        if args.json:
            output.emit_json(last)
        else:
            reasons = [f"{t.get('failureReason') or ''} {t.get('failureMessage') or ''}".strip() for t in last["tasks"]["records"]]
            output.fail(f"job {job['id']} {last['status']}: {'; '.join(r for r in reasons if r) or 'no reason given'}")
        return output.FAILED
    report = client.training_report(job["libraryEngineModelId"])
    if args.json:
        status = output.MISSING if training.missing(report) and not args.allow_missing else output.OK
        output.emit_json(dict(last, trainingReport=report, exitStatus=status))
        return status
    status = training.print_trained(job["libraryEngineModelId"], job["id"], report, args.allow_missing)
    model = client.query("query($id: ID!) { libraryEngineModel(id: $id) { isDefault promotion } }",
                         {"id": job["libraryEngineModelId"]}, idempotent=True)["libraryEngineModel"]
    training.print_promotion(model)
    return status


def follow(client: Client, job_id: str) -> Iterator[dict[str, Any]]:
    """The job's updates from the jobUpdated subscription; if WebSocket is not reachable (a proxy that passes only
    plain HTTP), the same updates by polling the job once a second."""
    try:
        yield from client.watch_job(job_id)
        return
    except ConnectionFailed as exc:
        output.note(f"no subscription ({exc}); polling the job instead")
    while True:
        job = client.job(job_id)
        yield job
        if job["status"] in ("complete", "failed", "cancelled"):
            return
        time.sleep(1.0)


# -- recognize ---------------------------------------------------------------------------------------------------------


def recognize_command(args: argparse.Namespace, client: Client) -> int:
    if not args.file.is_file():
        output.fail(f"{args.file} is not a file")
        return output.USAGE
    given = [x for x in (args.library, args.library_engine_model_id, args.model_id) if x]
    if len(given) != 1:
        output.fail("give exactly one of --library, --model or --model-id")
        return output.USAGE
    library_id = None
    if args.library:
        library = _library(client, args.library)
        if library is None:
            output.fail(f"no library {args.library!r}")
            return output.NOT_FOUND
        library_id = library["id"]
    if media.is_media(args.file, args.media):  # a video or long recording: over time, as a job
        return media.run(args, client, library_id, follow)
    if media.image_only_options(args):
        output.fail(f"{', '.join(media.image_only_options(args))}: only for a video or long recording "
                    f"({args.file.name} is neither; --media treats it as one)")
        return output.USAGE
    result = client.recognize(args.file, library_engine_model_id=args.library_engine_model_id, model_id=args.model_id,
                              library_id=library_id, top_k=args.top_k, threshold=args.threshold)
    if args.json:
        output.emit_json(result)
        return output.OK
    if result.get("labels"):
        output.table(f"{args.file.name}: {result.get('modelId')}", ["label", "score"],
                     [(item["label"], f"{item['score']:.3f}") for item in result["labels"]])
    elif result.get("faces"):
        output.table(f"{args.file.name}: {len(result['faces'])} face(s)", ["face", "box", "entity", "score", "entity id"],
                     [_face_row(n, face) for n, face in enumerate(result["faces"], 1)])
    elif result["matches"]:
        output.table(f"{args.file.name}", ["entity", "score", "entity id"],
                     [(m["entityName"], f"{m['score']:.3f}", m["entityId"]) for m in result["matches"]])
    else:
        output.note(f"{args.file.name}: no match" + (f" above {result.get('threshold')}" if result.get("threshold") is not None else ""))
    return output.OK


def _face_row(number: int, face: dict[str, Any]) -> tuple[Any, ...]:
    """One face: its box (left,top widthxheight, in pixels) and its best match, if any passed the threshold."""
    box = face["box"]
    where = f"{box['left']:.0f},{box['top']:.0f} {box['width']:.0f}x{box['height']:.0f}"
    if not face["matches"]:
        return number, where, "(no match)", "", ""
    best = face["matches"][0]
    return number, where, best["entityName"], f"{best['score']:.3f}", best["entityId"]


# -- models and jobs ---------------------------------------------------------------------------------------------------


def models_list(args: argparse.Namespace, client: Client) -> int:
    if args.library:
        return library_models(args, client)
    page = client.models(application=args.application, name=args.name, limit=args.limit)
    if args.json:
        output.emit_json(page["records"])
        return output.OK
    output.table(f"models ({page['count']} of {page['totalCount']})", ["ref", "application", "status", "system", "dimension", "aliases", "created"],
                 [(m["ref"], m["application"], m["status"], "yes" if m["system"] else "", m.get("dimension"),
                   ", ".join(m["aliases"]), m["createdDateTime"]) for m in page["records"]])
    return output.OK


def library_models(args: argparse.Namespace, client: Client) -> int:
    """A library's trained models, newest first: accuracy, coverage (entities / identifiers used) and the default."""
    library = _library(client, args.library)
    if library is None:
        output.fail(f"no library {args.library!r}")
        return output.NOT_FOUND
    models = client.library_models(library["id"], limit=args.limit)
    if args.json:
        output.emit_json(models)
        return output.OK
    training.models_table(library, models)
    return output.OK


def models_show(args: argparse.Namespace, client: Client) -> int:
    name, _, suffix = args.ref.partition("@")
    version = int(suffix) if suffix.isdigit() else None
    alias = suffix if suffix and version is None else None
    model = client.model(name, version=version, alias=alias)
    if args.json:
        output.emit_json(model)
        return output.OK
    output.table(model["ref"], ["field", "value"], [(key, _shown(key, value)) for key, value in model.items()])
    return output.OK


def _shown(key: str, value: Any) -> Any:
    """A model field as a person reads it: whole numbers without ``.0`` (the API's large integers are Floats),
    a size in bytes with its binary-prefixed size beside it, a throughput (images per second) rounded."""
    if isinstance(value, (dict, list)):
        return json.dumps(value)
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return value
    if key == "throughput":
        return f"{value:.3g}" if abs(value) < 100 else f"{value:.0f}"
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    return f"{value} ({output.human_bytes(value)})" if key == "sizeBytes" else value


def jobs_list(args: argparse.Namespace, client: Client) -> int:
    library_id = None
    if args.library:
        library = _library(client, args.library)
        if library is None:
            output.fail(f"no library {args.library!r}")
            return output.NOT_FOUND
        library_id = library["id"]
    page = client.jobs(status=args.status, library_id=library_id, limit=args.limit)
    if args.json:
        output.emit_json(page["records"])
        return output.OK

    def progress(job: dict[str, Any]) -> str:
        tasks = job["tasks"]["records"]
        return f"{100 * sum(t['progress'] for t in tasks) / len(tasks):.0f}%" if tasks else ""

    output.table(f"jobs ({page['count']} of {page['totalCount']})", ["id", "status", "progress", "engines", "library", "created"],
                 [(j["id"], j["status"], progress(j), ", ".join(sorted({t["engineId"] for t in j["tasks"]["records"]})),
                   j.get("libraryId"), j["createdDateTime"]) for j in page["records"]])
    return output.OK


def jobs_cancel(args: argparse.Namespace, client: Client) -> int:
    reply = client.cancel_job(args.job_id)
    output.emit_json(reply) if args.json else output.note(f"job {args.job_id}: {reply.get('message') or 'cancelled'}")
    return output.OK


def jobs_retry(args: argparse.Namespace, client: Client) -> int:
    job = client.retry_job(args.job_id)
    output.emit_json(job) if args.json else output.note(f"job {job['id']}: {job['status']}")
    return output.OK
