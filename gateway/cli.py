"""The server commands of ``engineshed``: dev | serve | worker | migrate | token create | list | revoke | engines |
models pull | devstack postgres | s3 | proxy.

The ``engineshed`` program (engineshed/cli/main.py) adds them with :func:`add_commands` and hands their parsed
arguments to :func:`run`; ``python -m gateway.cli`` runs them alone (the processes ``dev`` starts, the tests).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import os
import signal
import subprocess
import sys
import threading
from pathlib import Path

from gateway import dev_connection, gc_tuning, logs
from gateway.devstack.readiness import wait_at_start
from gateway.observability import multiproc
from gateway.settings import Settings, SettingsError

log = logging.getLogger("engineshed")


def _settings(**overrides: object) -> Settings:
    try:
        settings = Settings.from_env(os.environ)
    except SettingsError as exc:
        sys.exit(f"engineshed: {exc}")
    overrides = {k: v for k, v in overrides.items() if v is not None}
    return settings.with_overrides(**overrides) if overrides else settings


def _logging(settings: Settings) -> None:
    logs.configure(settings)


def _need_external(settings: Settings) -> None:
    if settings.database_url is None or settings.s3_endpoint_url is None:
        sys.exit("engineshed: DATABASE_URL and S3_ENDPOINT_URL must be set (or use `engineshed dev` for embedded ones)")


def _admin_settings(data_dir: Path | None) -> Settings:
    """Settings for the admin commands: DATABASE_URL and S3_ENDPOINT_URL, or else the running `engineshed dev`
    whose data dir holds its connection file (gateway/dev_connection.py)."""
    settings = _settings(data_dir=data_dir)
    if settings.database_url is not None and settings.s3_endpoint_url is not None:
        return settings
    if settings.database_url is not None or settings.s3_endpoint_url is not None:
        sys.exit("engineshed: set both DATABASE_URL and S3_ENDPOINT_URL, or neither to use a running `engineshed dev`")
    try:
        found = dev_connection.read(settings.data_dir)
    except dev_connection.NoDevStack as exc:
        sys.exit(f"engineshed: {exc}")
    return settings.with_overrides(
        database_url=found.database_url,
        s3_endpoint_url=found.s3_endpoint_url,
        s3_bucket=found.s3_bucket,
        s3_region=found.s3_region,
        aws_access_key_id=found.aws_access_key_id,
        aws_secret_access_key=found.aws_secret_access_key,
    )


def gateway_processes(settings: Settings) -> int:
    """The setting, else the CPUs this process may run on (fewer than the machine's under an affinity mask)."""
    if settings.gateway_processes:
        return settings.gateway_processes
    if hasattr(os, "sched_getaffinity"):
        return len(os.sched_getaffinity(0)) or 1
    return os.cpu_count() or 1


def _uvicorn_options(settings: Settings) -> dict[str, object]:
    return dict(
        host=settings.host,
        port=settings.port,
        log_level=settings.log_level.lower(),
        log_config=None,  # uvicorn's lines go through the process's handler (gateway/logs.py), in its format
        proxy_headers=False,
        timeout_graceful_shutdown=10,
        ws_max_size=1024 * 1024,
    )


def gateway_app() -> object:
    """The app factory each gateway process of `serve --workers N` calls (uvicorn starts them as fresh
    interpreters): its own settings, pool, S3 client and collector tuning, from the environment `serve` set."""
    from gateway.app import create_app

    settings = _settings()
    _logging(settings)
    multiproc.prepare(settings, clean=False)  # the directory `serve` prepared, named in the inherited environment
    app = create_app(settings)
    gc_tuning.tune()
    return app


def serve(settings: Settings, env: dict[str, str] | None = None) -> None:
    """The gateway: one process, or N behind one listening socket (uvicorn's supervisor binds it, starts N
    processes that accept on it, restarts one that dies, and on SIGINT/SIGTERM stops them all gracefully).

    ``env``: the environment the settings came from when it is not this process's (``dev`` builds one).
    """
    import uvicorn

    from gateway.app import create_app

    _need_external(settings)
    wait_at_start(settings)
    # The bind address is seldom what clients on other machines use; the operator says what is (and where
    # the file links point) once, at start.
    if settings.public_url:
        log.info("clients use %s/v3/graphql (ENGINESHED_PUBLIC_URL)", settings.public_url.rstrip("/"))
    if settings.s3_public_endpoint_url:
        log.info("file links point at %s (S3_PUBLIC_ENDPOINT_URL)", settings.s3_public_endpoint_url)
    if settings.metrics_port:  # this process sums the values of all N gateway processes it starts
        from gateway.observability import exposition

        exposition.serve(settings, settings.metrics_port)
    processes = gateway_processes(settings)
    if processes == 1:
        app = create_app(settings)
        gc_tuning.tune()
        uvicorn.run(app, **_uvicorn_options(settings))  # type: ignore[arg-type]
        return
    # The processes are spawned, not forked: they rebuild their settings from the environment they inherit,
    # so it must say what this process's settings say (command-line overrides included).
    os.environ.update(env or {})
    os.environ.update(PORT=str(settings.port), ENGINESHED_HOST=settings.host, ENGINESHED_GATEWAY_PROCESSES=str(processes))
    # One pool per process: unless a pool size was chosen, N processes share what fits a stock PostgreSQL's
    # 100 connections beside a few workers, as dev does for the embedded one (a 16-core host would otherwise
    # open 16 × 21 connections and meet "too many clients" under load).
    os.environ.setdefault("ENGINESHED_DB_POOL_MAX", str(dev_gateway_pool_max(processes, settings.db_pool_min)))
    from uvicorn.config import STARTUP_FAILURE
    from uvicorn.supervisors import Multiprocess

    # What uvicorn.run(..., workers=N) does, keeping the supervisor to ask how its processes ended: uvicorn
    # stops them all when one fails to start, but then exits 0, which would read as a clean stop.
    config = uvicorn.Config("gateway.cli:gateway_app", factory=True, workers=processes, **_uvicorn_options(settings))  # type: ignore[arg-type]
    supervisor = Multiprocess(config, sockets=[config.bind_socket()])
    supervisor.run()
    if any(process.exitcode == STARTUP_FAILURE for process in supervisor.processes):
        sys.exit("engineshed: a gateway process failed to start (its error is above); all were stopped")


def worker(settings: Settings, worker_id: str | None = None) -> None:
    from gateway.worker.main import run_worker

    _need_external(settings)
    wait_at_start(settings)
    if settings.worker_metrics_port:
        from gateway.observability import exposition

        exposition.serve(settings, settings.worker_metrics_port)
    gc_tuning.tune()
    asyncio.run(run_worker(settings, worker_id=worker_id))


def migrate_command(settings: Settings) -> None:
    import asyncpg

    from storage.migrate import migrate

    wait_at_start(settings)

    async def go() -> None:
        conn = await asyncpg.connect(settings.database_url)
        try:
            applied = await migrate(conn)
        finally:
            await conn.close()
        print("applied: " + (", ".join(applied) if applied else "nothing (up to date)"))

    asyncio.run(go())


def create_token(settings: Settings, org: str, scope: str, engine_id: str | None) -> str:
    """A new token of organization ``org``. Only an admin token may bring a new organization into being (that is
    how organizations are made); a read or engine token for a name that does not exist is refused, so a typo
    in ``--org`` cannot quietly start an empty organization. An engine token is checked as ``createToken``
    checks it: the engine must be one of the organization's external engines."""
    import asyncpg

    from gateway.errors import ApiError
    from gateway.services.access import tokens
    from gateway.token_cli import TokenResources
    from storage.db import connect_pool
    from storage.migrate import migrate

    async def go() -> str:
        conn = await asyncpg.connect(settings.database_url)
        try:
            await migrate(conn)
        finally:
            await conn.close()
        async with connect_pool(settings.database_url, min_size=1, max_size=2) as pool:
            try:
                principal = await tokens.operator(pool, org)
            except ApiError:
                if scope != "admin":
                    raise
                token, _ = await tokens.create_token(pool, org_name=org, scope=scope)
                print(f"engineshed: created organization {org!r}", file=sys.stderr)
                return token
            token, _ = await tokens.create_for_org(TokenResources(pool, settings), principal, scope=scope,
                                                   engine_id=engine_id, label=None)
            return token

    try:
        return asyncio.run(go())
    except ApiError as exc:
        sys.exit(f"engineshed: {exc.message}")


def token_valid(settings: Settings, token: str) -> bool:
    import asyncpg

    from gateway.services.access.tokens import hash_token

    async def go() -> bool:
        conn = await asyncpg.connect(settings.database_url)
        try:
            return await conn.fetchval(
                "SELECT count(*) FROM api_tokens WHERE token_hash = $1 AND revoked_at IS NULL", hash_token(token)
            ) == 1
        finally:
            await conn.close()

    return asyncio.run(go())


def list_engines(settings: Settings, as_json: bool = False) -> None:
    from engines.registry import discover_engines

    found = sorted(discover_engines(settings.extra_engines).items())
    if as_json:
        print(json.dumps([{
            "id": engine_id, "name": engine.info.name, "categoryId": engine.info.category_id,
            "identifierTypeIds": list(engine.info.identifier_type_ids), "libraryTypeIds": list(engine.info.library_type_ids),
            "modes": list(engine.info.modes), "concurrencyLimit": engine.info.concurrency_limit, "version": engine.info.version,
        } for engine_id, engine in found], indent=2))
        return
    for engine_id, engine in found:
        info = engine.info
        print(f"{engine_id}\t{info.name}\tcategory={info.category_id}\ttypes={','.join(info.identifier_type_ids)}"
              f"\tmodes={','.join(info.modes)}\tconcurrency={info.concurrency_limit}")


# The embedded PostgreSQL accepts 100 connections. The worker's pool and LISTEN connection take up to 21
# and admin commands need a few, so `dev`'s gateway processes share about 64 (each also holds a LISTEN one).
EMBEDDED_GATEWAY_CONNECTIONS = 64


def dev_gateway_pool_max(processes: int, pool_min: int, default_max: int = Settings().db_pool_max) -> int:
    """Each `dev` gateway process's pool (unless ENGINESHED_DB_POOL_MAX chose one): the default, or less when many
    processes would otherwise run the embedded PostgreSQL out of connections under load."""
    return max(pool_min, min(default_max, EMBEDDED_GATEWAY_CONNECTIONS // processes - 1))


def models_pull(settings: Settings, names: list[str], missing_only: bool = False) -> int:
    """Download, verify and convert pinned models; register them when a database and S3 are configured.

    Without DATABASE_URL / S3_ENDPOINT_URL the converted models wait in the data dir's cache, and
    `engineshed dev` registers them at its next start. The exit status is 1 when any model failed.
    """
    from gateway.services.models import pull as model_pull
    from gateway.services.models.pull import catalogue as pull_catalogue
    from gateway.services.models.pull import conversion as pull_conversion

    try:
        pull_conversion.select(names)
    except pull_catalogue.PullError as exc:
        sys.exit(f"engineshed: {exc}")

    async def go() -> list[model_pull.PullOutcome]:
        if settings.database_url is None or settings.s3_endpoint_url is None:
            return await model_pull.pull(None, settings, names)
        from gateway.resources import open_resources

        async with open_resources(settings, role="models", load_engines=False) as res:
            if missing_only:
                return await model_pull.pull_missing(res, settings)
            return await model_pull.pull(res, settings, names)

    if settings.database_url is not None and settings.s3_endpoint_url is not None:
        wait_at_start(settings)
    outcomes = asyncio.run(go())
    for o in outcomes:
        timing = ", ".join(f"{k} {v:.2f}s" for k, v in o.seconds.items())
        print(f"{o.name}\t{'ok' if o.ok else 'FAILED'}\t{o.message}" + (f"\t{timing}" if timing else ""), flush=True)
    return 0 if all(o.ok for o in outcomes) else 1


def dev(settings: Settings) -> None:
    """Embedded PostgreSQL and S3, migrations, an admin token, the gateway and one worker process."""
    from urllib.parse import quote

    from gateway.devstack import embedded_stack
    from gateway.devstack.processes import port_is_free

    if not port_is_free(settings.port, settings.host):
        # Checked before anything starts or prints: a URL and token for a server that will not start mislead.
        sys.exit(f"engineshed: port {settings.port} on {settings.host} is in use (another `engineshed dev`?); "
                 f"choose another: PORT={settings.port + 1} make run, or engineshed dev --port {settings.port + 1}")
    data_dir = settings.data_dir.resolve()
    data_dir.mkdir(parents=True, exist_ok=True)
    multiproc.prepare(settings, clean=True)  # a new deployment: metrics of an earlier one's processes go
    # SIGTERM should clean up like Ctrl-C: the embedded PostgreSQL is a daemon and must be stopped.
    signal.signal(signal.SIGTERM, lambda *_: (_ for _ in ()).throw(KeyboardInterrupt()))
    with embedded_stack(data_dir) as (pg, s3):
        env = dict(os.environ)
        env.update(
            DATABASE_URL=settings.database_url or pg.url,
            S3_ENDPOINT_URL=settings.s3_endpoint_url or s3.endpoint_url,
            S3_BUCKET=s3.bucket if settings.s3_endpoint_url is None else settings.s3_bucket,
            AWS_ACCESS_KEY_ID=s3.access_key if settings.s3_endpoint_url is None else (settings.aws_access_key_id or ""),
            AWS_SECRET_ACCESS_KEY=s3.secret_key if settings.s3_endpoint_url is None else (settings.aws_secret_access_key or ""),
            PORT=str(settings.port),
            ENGINESHED_DATA_DIR=str(data_dir),
            ENGINESHED_GATEWAY_PROCESSES=str(gateway_processes(settings)),
        )
        worker_env = dict(env)
        if settings.embedded_database and not env.get("ENGINESHED_DB_POOL_MAX"):
            env["ENGINESHED_DB_POOL_MAX"] = str(dev_gateway_pool_max(gateway_processes(settings), settings.db_pool_min))
        effective = Settings.from_env(env).with_overrides(data_dir=data_dir)
        token_file = data_dir / "admin-token"
        token = token_file.read_text().strip() if token_file.exists() else ""
        if not token or not token_valid(effective, token):
            token = create_token(effective, "default", "admin", None)
            dev_connection.write_private(token_file, token + "\n")
        # Missing system models are pulled by a child process, so start-up never waits on a download and no
        # model runs in the gateway process; offline it logs what it lacks and the pixel projection serves.
        pull_env = dict(worker_env)
        pull_proc = subprocess.Popen([sys.executable, "-m", "gateway.cli", "models", "pull", "--missing"], env=pull_env) \
            if settings.pull_models else None
        if pull_proc is not None:
            # Reaped when it ends, so a finished pull leaves no <defunct> process behind while dev runs.
            threading.Thread(target=pull_proc.wait, name="model-pull-reaper", daemon=True).start()
        url = f"http://{effective.host}:{effective.port}/v3/graphql"
        connection_file = dev_connection.write(data_dir, dev_connection.DevConnection(
            database_url=effective.database_url or "",
            s3_endpoint_url=effective.s3_endpoint_url or "",
            s3_bucket=effective.s3_bucket,
            s3_region=effective.s3_region,
            aws_access_key_id=effective.aws_access_key_id or "",
            aws_secret_access_key=effective.aws_secret_access_key or "",
            graphql_url=url,
            pid=os.getpid(),
        ))
        worker_proc = subprocess.Popen([sys.executable, "-m", "gateway.cli", "worker"], env=worker_env)
        # The token rides in the URL fragment, which browsers never send: it reaches no access log, and the
        # page moves it into its token box and out of the address bar (graphiql-boot.js).
        print(
            f"\nengineshed is starting at {url}\n"
            f"GraphiQL, signed in: {url}#token={quote(token, safe='')}\n"
            f"admin token: {token}\n(also in {token_file})\n"
            f"connection details for the admin commands and external engines: {connection_file}\n",
            flush=True,
        )
        try:
            serve(effective, env)
        except KeyboardInterrupt:
            pass
        finally:
            dev_connection.remove(data_dir, os.getpid())
            if pull_proc is not None and pull_proc.poll() is None:
                pull_proc.terminate()  # a half-done pull leaves only its cache; the next start resumes
                try:
                    pull_proc.wait(timeout=10)
                except subprocess.TimeoutExpired:
                    pull_proc.kill()
            worker_proc.send_signal(signal.SIGTERM)
            try:
                worker_proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                worker_proc.kill()


def _workers(value: int | None) -> int | None:
    if value is not None and value < 1:
        sys.exit("engineshed: --workers must be 1 or more")
    return value


def add_commands(sub: argparse._SubParsersAction) -> argparse._SubParsersAction:
    """Add the server commands to the program's subcommands; the ``models`` subcommands, for the client's to join."""
    p_dev = sub.add_parser("dev", help="embedded PostgreSQL and S3, gateway and worker")
    p_dev.add_argument("--port", type=int)
    p_dev.add_argument("--data-dir", type=Path)
    p_dev.add_argument("--workers", type=int, help="gateway processes (default: the number of CPUs)")
    p_serve = sub.add_parser("serve", help="the gateway, against DATABASE_URL and S3_ENDPOINT_URL")
    p_serve.add_argument("--port", type=int)
    p_serve.add_argument("--host")
    p_serve.add_argument("--workers", type=int, help="gateway processes sharing the port (default: the number of CPUs)")
    p_worker = sub.add_parser("worker", help="a worker process that runs built-in engines")
    p_worker.add_argument("--id", dest="worker_id")
    p_worker.add_argument("--metrics-port", type=int, help="serve /metrics on this port (ENGINESHED_WORKER_METRICS_PORT)")
    data_dir_help = "the data dir of a running `engineshed dev` to use when DATABASE_URL and S3_ENDPOINT_URL are unset"
    p_migrate = sub.add_parser("migrate", help="apply database migrations")
    p_migrate.add_argument("--data-dir", type=Path, help=data_dir_help)
    p_token = sub.add_parser("token", help="API tokens")
    token_sub = p_token.add_subparsers(dest="token_command", required=True)
    p_create = token_sub.add_parser("create", help="create a token and print it (shown once)")
    p_create.add_argument("--org", required=True)
    p_create.add_argument("--scope", required=True, choices=["admin", "read", "engine"])
    p_create.add_argument("--engine", dest="engine_id")
    p_create.add_argument("--data-dir", type=Path, help=data_dir_help)
    p_list = token_sub.add_parser("list", help="the organization's tokens (never their secrets)")
    p_list.add_argument("--org", required=True)
    p_list.add_argument("--data-dir", type=Path, help=data_dir_help)
    p_revoke = token_sub.add_parser("revoke", help="revoke one of the organization's tokens, at once")
    p_revoke.add_argument("token_id", metavar="ID")
    p_revoke.add_argument("--org", required=True)
    p_revoke.add_argument("--data-dir", type=Path, help=data_dir_help)
    p_engines = sub.add_parser("engines", help="list installed engines")
    p_engines.add_argument("--json", action="store_true", help="print JSON for scripts instead of lines")
    p_models = sub.add_parser("models", help="pretrained system models")
    models_sub = p_models.add_subparsers(dest="models_command", required=True)
    p_pull = models_sub.add_parser("pull", help="download, verify, convert and register pinned pretrained models")
    p_pull.add_argument("names", nargs="*", metavar="NAME", help="catalogue names (default: all)")
    p_pull.add_argument("--missing", action="store_true", help="only those not registered yet (used by `dev`)")
    p_devstack = sub.add_parser("devstack", help="PostgreSQL, S3 or a TCP proxy as a foreground service (compose.yaml)",
                                description="Run one service in the foreground until SIGTERM, listening on "
                                            "ENGINESHED_HOST:PORT with its data in ENGINESHED_DATA_DIR.")
    p_devstack.add_argument("service", choices=["postgres", "s3", "proxy"])
    return models_sub


def run(args: argparse.Namespace, parser: argparse.ArgumentParser) -> int:
    """Run the server command ``args`` names; its exit status. ``parser`` reports arguments that do not go together."""
    if args.command == "dev":
        settings = _settings(port=args.port, data_dir=args.data_dir, gateway_processes=_workers(args.workers))
        _logging(settings)
        dev(settings)  # prepares the metrics directory once the port is known to be free
    elif args.command == "serve":
        settings = _settings(port=args.port, host=args.host, gateway_processes=_workers(args.workers))
        _logging(settings)
        multiproc.prepare(settings, clean=True)
        serve(settings)
    elif args.command == "worker":
        settings = _settings(worker_metrics_port=args.metrics_port)
        _logging(settings)
        multiproc.prepare(settings, clean=False)
        worker(settings, args.worker_id)
    elif args.command == "devstack":
        from gateway.devstack import proxy, services

        settings = _settings()
        _logging(settings)
        return {"postgres": services.run_postgres, "s3": services.run_s3, "proxy": proxy.run_proxy}[args.service](settings)
    elif args.command == "migrate":
        migrate_command(_admin_settings(args.data_dir))
    elif args.command == "token" and args.token_command == "list":
        from gateway.token_cli import list_tokens

        list_tokens(_admin_settings(args.data_dir), args.org)
    elif args.command == "token" and args.token_command == "revoke":
        from gateway.token_cli import revoke_token

        revoke_token(_admin_settings(args.data_dir), args.org, args.token_id)
    elif args.command == "token":
        if args.scope == "engine" and not args.engine_id:
            parser.error("--scope engine needs --engine ID (the engine the token acts for)")
        if args.scope != "engine" and args.engine_id:
            parser.error("--engine is only for --scope engine")
        print(create_token(_admin_settings(args.data_dir), args.org, args.scope, args.engine_id))
    elif args.command == "engines":
        list_engines(_settings(), as_json=args.json)
    elif args.command == "models":
        settings = _settings()
        _logging(settings)
        return models_pull(settings, args.names, missing_only=args.missing)
    return 0


def main(argv: list[str] | None = None) -> None:
    """The server commands alone, as ``python -m gateway.cli``."""
    parser = argparse.ArgumentParser(prog="engineshed", description="GraphQL gateway that trains recognition engines")
    add_commands(parser.add_subparsers(dest="command", required=True))
    sys.exit(run(parser.parse_args(argv), parser))


if __name__ == "__main__":
    main()
