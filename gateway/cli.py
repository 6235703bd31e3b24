"""engineshed dev | serve | worker | migrate | token create | engines | models pull"""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import signal
import subprocess
import sys
from pathlib import Path

from gateway import gc_tuning
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
    logging.basicConfig(
        level=settings.log_level.upper(),
        format="%(asctime)s %(levelname)s %(name)s [%(process)d] %(message)s",
    )
    logging.getLogger("aiobotocore").setLevel(logging.WARNING)
    logging.getLogger("botocore").setLevel(logging.WARNING)


def _need_external(settings: Settings) -> None:
    if settings.database_url is None or settings.s3_endpoint_url is None:
        sys.exit("engineshed: DATABASE_URL and S3_ENDPOINT_URL must be set (or use `engineshed dev` for embedded ones)")


def serve(settings: Settings) -> None:
    import uvicorn

    from gateway.app import create_app

    _need_external(settings)
    app = create_app(settings)
    gc_tuning.tune()
    uvicorn.run(
        app,
        host=settings.host,
        port=settings.port,
        log_level=settings.log_level.lower(),
        proxy_headers=False,
        timeout_graceful_shutdown=10,
        ws_max_size=1024 * 1024,
    )


def worker(settings: Settings, worker_id: str | None = None) -> None:
    from gateway.worker.main import run_worker

    _need_external(settings)
    gc_tuning.tune()
    asyncio.run(run_worker(settings, worker_id=worker_id))


def migrate_command(settings: Settings) -> None:
    import asyncpg

    from storage.migrate import migrate

    _need_external(settings)

    async def go() -> None:
        conn = await asyncpg.connect(settings.database_url)
        try:
            applied = await migrate(conn)
        finally:
            await conn.close()
        print("applied: " + (", ".join(applied) if applied else "nothing (up to date)"))

    asyncio.run(go())


def create_token(settings: Settings, org: str, scope: str, engine_id: str | None) -> str:
    import asyncpg

    from gateway.services.tokens import create_token as make
    from storage.db import connect_pool
    from storage.migrate import migrate

    async def go() -> str:
        conn = await asyncpg.connect(settings.database_url)
        try:
            await migrate(conn)
        finally:
            await conn.close()
        async with connect_pool(settings.database_url, min_size=1, max_size=2) as pool:
            token, _ = await make(pool, org_name=org, scope=scope, engine_id=engine_id)
            return token

    return asyncio.run(go())


def token_valid(settings: Settings, token: str) -> bool:
    import asyncpg

    from gateway.services.tokens import hash_token

    async def go() -> bool:
        conn = await asyncpg.connect(settings.database_url)
        try:
            return await conn.fetchval(
                "SELECT count(*) FROM api_tokens WHERE token_hash = $1 AND revoked_at IS NULL", hash_token(token)
            ) == 1
        finally:
            await conn.close()

    return asyncio.run(go())


def list_engines(settings: Settings) -> None:
    from engines.registry import discover_engines

    for engine_id, engine in sorted(discover_engines(settings.extra_engines).items()):
        info = engine.info
        print(f"{engine_id}\t{info.name}\tcategory={info.category_id}\ttypes={','.join(info.identifier_type_ids)}"
              f"\tmodes={','.join(info.modes)}\tconcurrency={info.concurrency_limit}")


def models_pull(settings: Settings, names: list[str], missing_only: bool = False) -> int:
    """Download, verify and convert pinned models; register them when a database and S3 are configured.

    Without DATABASE_URL / S3_ENDPOINT_URL the converted models wait in the data dir's cache, and
    `engineshed dev` registers them at its next start. The exit status is 1 when any model failed.
    """
    from gateway.services import model_pull

    try:
        model_pull.select(names)
    except model_pull.PullError as exc:
        sys.exit(f"engineshed: {exc}")

    async def go() -> list[model_pull.PullOutcome]:
        if settings.database_url is None or settings.s3_endpoint_url is None:
            return await model_pull.pull(None, settings, names)
        from gateway.resources import open_resources

        async with open_resources(settings, role="models", load_engines=False) as res:
            if missing_only:
                return await model_pull.pull_missing(res, settings)
            return await model_pull.pull(res, settings, names)

    outcomes = asyncio.run(go())
    for o in outcomes:
        timing = ", ".join(f"{k} {v:.2f}s" for k, v in o.seconds.items())
        print(f"{o.name}\t{'ok' if o.ok else 'FAILED'}\t{o.message}" + (f"\t{timing}" if timing else ""), flush=True)
    return 0 if all(o.ok for o in outcomes) else 1


def dev(settings: Settings) -> None:
    """Embedded PostgreSQL and S3, migrations, an admin token, the gateway and one worker process."""
    from gateway.devstack import embedded_stack

    data_dir = settings.data_dir.resolve()
    data_dir.mkdir(parents=True, exist_ok=True)
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
        )
        effective = Settings.from_env(env).with_overrides(data_dir=data_dir)
        token_file = data_dir / "admin-token"
        token = token_file.read_text().strip() if token_file.exists() else ""
        if not token or not token_valid(effective, token):
            token = create_token(effective, "default", "admin", None)
            token_file.write_text(token + "\n")
            token_file.chmod(0o600)
        worker_proc = subprocess.Popen([sys.executable, "-m", "gateway.cli", "worker"], env=env)
        # Missing system models are pulled by a child process, so start-up never waits on a download and no
        # model runs in the gateway process; offline it logs what it lacks and the pixel projection serves.
        pull_env = dict(env, ENGINESHED_DATA_DIR=str(data_dir))
        pull_proc = subprocess.Popen([sys.executable, "-m", "gateway.cli", "models", "pull", "--missing"], env=pull_env) \
            if settings.pull_models else None
        url = f"http://{effective.host}:{effective.port}/v3/graphql"
        print(f"\nengineshed is starting at {url}\nadmin token: {token}\n(also in {token_file})\n", flush=True)
        try:
            serve(effective)
        except KeyboardInterrupt:
            pass
        finally:
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


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="engineshed", description="GraphQL gateway that trains recognition engines")
    sub = parser.add_subparsers(dest="command", required=True)
    p_dev = sub.add_parser("dev", help="embedded PostgreSQL and S3, gateway and worker")
    p_dev.add_argument("--port", type=int)
    p_dev.add_argument("--data-dir", type=Path)
    p_serve = sub.add_parser("serve", help="the gateway, against DATABASE_URL and S3_ENDPOINT_URL")
    p_serve.add_argument("--port", type=int)
    p_serve.add_argument("--host")
    p_worker = sub.add_parser("worker", help="a worker process that runs built-in engines")
    p_worker.add_argument("--id", dest="worker_id")
    sub.add_parser("migrate", help="apply database migrations")
    p_token = sub.add_parser("token", help="API tokens")
    token_sub = p_token.add_subparsers(dest="token_command", required=True)
    p_create = token_sub.add_parser("create", help="create a token and print it (shown once)")
    p_create.add_argument("--org", required=True)
    p_create.add_argument("--scope", required=True, choices=["admin", "read", "engine"])
    p_create.add_argument("--engine", dest="engine_id")
    sub.add_parser("engines", help="list installed engines")
    p_models = sub.add_parser("models", help="pretrained system models")
    models_sub = p_models.add_subparsers(dest="models_command", required=True)
    p_pull = models_sub.add_parser("pull", help="download, verify, convert and register pinned pretrained models")
    p_pull.add_argument("names", nargs="*", metavar="NAME", help="catalogue names (default: all)")
    p_pull.add_argument("--missing", action="store_true", help="only those not registered yet (used by `dev`)")
    args = parser.parse_args(argv)

    if args.command == "dev":
        settings = _settings(port=args.port, data_dir=args.data_dir)
        _logging(settings)
        dev(settings)
    elif args.command == "serve":
        settings = _settings(port=args.port, host=args.host)
        _logging(settings)
        serve(settings)
    elif args.command == "worker":
        settings = _settings()
        _logging(settings)
        worker(settings, args.worker_id)
    elif args.command == "migrate":
        migrate_command(_settings())
    elif args.command == "token":
        settings = _settings()
        _need_external(settings)
        print(create_token(settings, args.org, args.scope, args.engine_id))
    elif args.command == "engines":
        list_engines(_settings())
    elif args.command == "models":
        settings = _settings()
        _logging(settings)
        sys.exit(models_pull(settings, args.names, missing_only=args.missing))


if __name__ == "__main__":
    main()
