"""``engineshed engine init | run | check``: start an external engine project, run an engine against a gateway, and
check it the way the platform will use it. Everything goes through the public API (:mod:`engineshed.engine`).

Against the local ``make run`` stack (a gateway on this machine, and its data dir's admin token) ``run`` creates the
engine and an engine token itself; anywhere else it needs an engine token, so that no admin token leaves the machine
it belongs to.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
from pathlib import Path
from typing import Any

from rich.markup import escape

from engineshed.cli import output
from engineshed.client.connection import (
    DEFAULT_DATA_DIR,
    _is_loopback,
    dev_graphql_url,
    resolve,
)
from engineshed.client.errors import (
    ApiError,
    AuthenticationError,
    ConnectionFailed,
    EngineshedError,
    NotAllowedError,
    NotFoundError,
)
from engineshed.client.transport import graphql_url
from engineshed.engine.api import Limits, Session
from engineshed.engine.check import check_engine, ensure_engine
from engineshed.engine.loader import EngineLoadError, LoadedEngine, load_engine
from engineshed.engine.runner import Runner
from engineshed.engine.template import NAME, module_name, write_project

ENGINE_TOKEN_VARIABLE = "ENGINESHED_ENGINE_TOKEN"
NO_ENGINE_TOKEN = (f"no engine token: pass --token or set {ENGINE_TOKEN_VARIABLE} (an admin creates one with `engineshed token "
                   "create --org ORG --scope engine --engine {engine}`, or createToken). Only against the local `make run` "
                   "stack are the engine and its token created for you, and none is running at {url}")


def add_parser(sub: argparse._SubParsersAction) -> None:
    """The ``engine`` command and its subcommands."""
    p_engine = sub.add_parser("engine", help="external engines: start a project, run one, check it (docs/engine-developers.md)")
    engine_sub = p_engine.add_subparsers(dest="engine_command", required=True)

    p = engine_sub.add_parser("init", help="write a runnable engine project (engine module, pyproject, a test)")
    p.add_argument("name", metavar="NAME", help="the engine's name (letters, digits, '-' and '_'); also its default engine id")
    p.add_argument("--dir", type=Path, help="where to write it (default: ./NAME)")

    p = engine_sub.add_parser("run", help="claim and train the engine's tasks until Ctrl-C (which hands them back)")
    p.add_argument("spec", metavar="MODULE:ATTR", help="the engine: a class or object with train(library, model), or a function")
    p.add_argument("--engine-id", help="the engine's id (default: the engine's `id` attribute)")
    p.add_argument("--parallel", type=int, default=1, help="tasks trained at once (default: 1)")
    p.add_argument("--page-size", type=int, default=30, help="entities and identifiers per page (default: 30)")
    p.add_argument("--concurrency", type=int, default=4, help="pages and files fetched at once (default: 4)")
    p.add_argument("--once", action="store_true", help="exit after one task")
    _server(p, "an engine token (default: ENGINESHED_ENGINE_TOKEN; against `make run`: one created for this run)")

    p = engine_sub.add_parser("check", help="train the engine on a small generated library and report what the flow requires")
    p.add_argument("spec", metavar="MODULE:ATTR")
    p.add_argument("--engine-id", help="the engine id to check under (default: ID-check, created when missing)")
    p.add_argument("--entities", type=int, default=3, help="entities in the generated library (default: 3)")
    p.add_argument("--per-entity", type=int, default=3, help="files per entity (default: 3)")
    p.add_argument("--timeout", type=float, default=300.0, help="seconds the training may take (default: 300)")
    _server(p, "an admin token (default: ENGINESHED_TOKEN, else the local `make run` admin token)")


def _server(parser: argparse.ArgumentParser, token_help: str) -> None:
    group = parser.add_argument_group("server")
    group.add_argument("--url", help="the gateway (default: ENGINESHED_URL, else the local `make run`)")
    group.add_argument("--token", help=token_help)
    group.add_argument("--data-dir", type=Path, help="the `make run` data dir (default: .engineshed)")
    parser.add_argument("--json", action="store_true", help="print JSON for scripts")


def run(args: argparse.Namespace) -> int:
    """The ``engine`` subcommand ``args`` names; its exit status."""
    try:
        if args.engine_command == "init":
            return init_command(args)
        engine = load_engine(args.spec)
        if args.engine_command == "run":
            return asyncio.run(run_command(args, engine))
        return asyncio.run(check_command(args, engine))
    except EngineLoadError as exc:
        return _fail(str(exc), output.USAGE)
    except AuthenticationError as exc:
        return _fail(f"the server refused the token ({exc.message}); check --token", output.AUTH)
    except ConnectionFailed as exc:
        return _fail(f"{exc} (is the server running? `make run` starts a local one)", output.UNREACHABLE)
    except ApiError as exc:
        return _fail(str(exc), output.FAILED)
    except EngineshedError as exc:
        return _fail(str(exc), output.USAGE)
    except KeyboardInterrupt:
        return _fail("interrupted", output.INTERRUPTED)


def _fail(message: str, status: int) -> int:
    output.fail(escape(message))
    return status


# -- init ----------------------------------------------------------------------------------------------------------------


def init_command(args: argparse.Namespace) -> int:
    if not NAME.match(args.name):
        return _fail(f"{args.name!r} is not an engine name: start with a letter; letters, digits, '-' and '_' (at most 63)",
                     output.USAGE)
    directory = args.dir or Path(args.name)
    if directory.exists() and (not directory.is_dir() or any(directory.iterdir())):
        return _fail(f"{directory} already exists and is not empty: choose another --dir", output.USAGE)
    written = write_project(args.name, directory)
    module = module_name(args.name)
    if getattr(args, "json", False):
        output.emit_json({"directory": str(directory), "files": [str(p) for p in written]})
        return output.OK
    output.note(f"wrote {directory}/: {', '.join(str(p.relative_to(directory)) for p in written)}\n"
                f"next:  cd {directory} && engineshed engine check {module}:Engine   (with `make run` running)\n"
                f"       engineshed engine run {module}:Engine --engine-id {args.name}")
    return output.OK


# -- run -----------------------------------------------------------------------------------------------------------------


def _url(args: argparse.Namespace) -> str:
    given = args.url or os.environ.get("ENGINESHED_URL") or None
    data_dir = args.data_dir or DEFAULT_DATA_DIR
    return graphql_url(given or dev_graphql_url(data_dir) or resolve(data_dir=data_dir).url)


def _dev_admin_token(args: argparse.Namespace, url: str) -> str | None:
    """The local stack's admin token: only for a gateway on this machine, from its data dir's admin-token file."""
    if not _is_loopback(url):
        return None
    try:
        return (Path(args.data_dir or DEFAULT_DATA_DIR) / "admin-token").read_text().strip() or None
    except OSError:
        return None


async def _dev_engine_token(url: str, admin_token: str, engine: LoadedEngine, engine_id: str) -> tuple[str, str]:
    """(token, token id): the engine created when missing, and a fresh engine token for this run."""
    session = Session(url)
    try:
        admin = session.api(admin_token)
        if await ensure_engine(admin, engine, engine_id):
            output.note(f"created the external engine {engine_id} (identifier types: {', '.join(engine.identifier_types)})")
        minted = (await admin.query(
            'mutation($e: ID!) { createToken(input: {scope: engine, engineId: $e, label: "engineshed engine run (dev)"}) { id token } }',
            e=engine_id))["createToken"]
        return minted["token"], minted["id"]
    finally:
        await session.close()


async def _revoke(url: str, admin_token: str, token_id: str) -> None:
    session = Session(url)
    try:
        await session.api(admin_token).query("mutation($id: ID!) { revokeToken(id: $id) { id } }", id=token_id)
    except (ApiError, ConnectionFailed):
        pass  # the token lapses with nothing to claim; a failure here changes nothing for the engine
    finally:
        await session.close()


async def run_command(args: argparse.Namespace, engine: LoadedEngine) -> int:
    engine_id = args.engine_id or engine.id
    if not engine_id:
        return _fail(f"which engine? pass --engine-id (or give {args.spec} an `id` attribute)", output.USAGE)
    try:
        limits = Limits(page_size=args.page_size, concurrency=args.concurrency)
    except ValueError as exc:
        return _fail(str(exc), output.USAGE)
    if args.parallel < 1:
        return _fail("--parallel must be at least 1", output.USAGE)
    url = _url(args)
    token = args.token or os.environ.get(ENGINE_TOKEN_VARIABLE) or None
    admin_token = dev_token_id = None
    if token is None:
        admin_token = _dev_admin_token(args, url)
        if admin_token is None:
            return _fail(NO_ENGINE_TOKEN.format(engine=engine_id, url=url), output.USAGE)
        token, dev_token_id = await _dev_engine_token(url, admin_token, engine, engine_id)
    _log_to_stderr()
    output.note(f"{engine.spec} runs as {engine_id} against {url}; Ctrl-C stops it and hands its tasks back")
    runner = Runner(engine, url=url, token=token, engine_id=engine_id, limits=limits, parallel=args.parallel)
    try:
        outcomes = await runner.serve(max_tasks=1 if args.once else None)
    except NotAllowedError as exc:
        return _fail(f"the token cannot claim {engine_id}'s tasks ({exc.message}): an engine token of that engine is needed",
                     output.AUTH)
    except NotFoundError:
        return _fail(f"there is no engine {engine_id} in this organization: an admin registers it with createEngine "
                     "(against `make run`, leave out --token and it is created)", output.NOT_FOUND)
    finally:
        if dev_token_id is not None and admin_token is not None:
            await _revoke(url, admin_token, dev_token_id)
    if args.json:
        output.emit_json([{"taskId": o.task_id, "libraryEngineModelId": o.model_id, "status": o.status, "error": o.error}
                          for o in outcomes])
    if runner.interrupted:
        return output.INTERRUPTED
    return output.FAILED if any(o.status == "failed" for o in outcomes) else output.OK


def _log_to_stderr() -> None:
    handler = logging.StreamHandler()
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(message)s", "%H:%M:%S"))
    log = logging.getLogger("engineshed.engine")
    log.addHandler(handler)
    log.setLevel(logging.INFO)


# -- check ---------------------------------------------------------------------------------------------------------------


async def check_command(args: argparse.Namespace, engine: LoadedEngine) -> int:
    if args.entities < 2 or args.per_entity < 1:
        return _fail("--entities must be at least 2 and --per-entity at least 1", output.USAGE)
    found = resolve(args.url, args.token, data_dir=args.data_dir)
    if not found.token:
        return _fail("the check needs an admin token (it creates a throwaway library): pass --token, set ENGINESHED_TOKEN, "
                     "or start `make run` (it writes .engineshed/admin-token)", output.USAGE)
    try:
        report = await check_engine(engine, url=found.url, admin_token=found.token, engine_id=args.engine_id,
                                    entities=args.entities, per_entity=args.per_entity, timeout=args.timeout)
    except ValueError as exc:
        return _fail(str(exc), output.USAGE)
    if args.json:
        output.emit_json(report.as_dict())
    else:
        _print_report(report)
    return output.OK if report.ok else output.FAILED


def _print_report(report: Any) -> None:
    output.table(f"engine check: {report.engine_id}", ["", "what the flow requires", "what happened"],
                 (["ok" if item.ok else "FAIL", item.name, item.detail] for item in report.items))
    failed = [item for item in report.items if not item.ok]
    output.note("the engine passes the contract check" if not failed
                else f"the engine fails {len(failed)} of {len(report.items)} checks")
