"""`engineshed dev` as `make run` starts it: its connection file, the admin commands that find it through the
data dir, the GraphiQL link it prints, its gateway processes, and a SIGTERM that stops everything.

One `dev` runs for the module (it starts PostgreSQL, SeaweedFS, two gateway processes and a worker); the
last test stops it.
"""

from __future__ import annotations

import asyncio
import os
import re
import signal
import stat
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import asyncpg
import botocore.session
import httpx
import psutil
import pytest

from gateway.cli import EMBEDDED_GATEWAY_CONNECTIONS, dev_gateway_pool_max
from gateway.dev_connection import DevConnection
from gateway.devstack import find_free_port, s3_client_config
from tests.conftest import ROOT, Org, Process
from tests.graphql_client import GraphQLClient
from tests.worker.conftest import create_model, create_train_job, library_with_faces

pytestmark = pytest.mark.timeout(180)

CLAIM = "mutation($e: ID!) { claimTasks(engineId: $e, limit: 1) { token task { id engineId status } } }"


def clean_env(**extra: str) -> dict[str, str]:
    """This environment without any setting that would point the commands somewhere (a user's shell)."""
    env = {
        key: value
        for key, value in os.environ.items()
        if not key.startswith(("ENGINESHED_", "AWS_", "S3_")) and key not in ("DATABASE_URL", "PORT")
    }
    env.update(PYTHONPATH=str(ROOT), PYTHONUNBUFFERED="1", **extra)
    return env


def cli(*args: str, cwd: Path, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "gateway.cli", *args], cwd=cwd, env=env or clean_env(), capture_output=True, text=True,
        timeout=60,
    )


@dataclass
class Dev:
    url: str
    home: Path  # the directory `make run` would run in
    data_dir: Path
    process: Process

    def connection(self) -> DevConnection:
        return DevConnection.parse((self.data_dir / "connection.env").read_text())

    def admin_token(self) -> str:
        return (self.data_dir / "admin-token").read_text().strip()


@pytest.fixture(scope="module")
def dev(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Dev]:
    home = tmp_path_factory.mktemp("dev-home")
    data_dir = home / ".engineshed"  # the default data dir, relative to where `make run` runs
    port = find_free_port()
    process = Process(
        [sys.executable, "-m", "gateway.cli", "dev", "--port", str(port), "--workers", "2"],
        clean_env(), home / "dev.log", cwd=home,
    )
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 150
    while True:
        if not process.alive():
            raise RuntimeError("engineshed dev exited at start:\n" + process.output()[-4000:])
        try:
            if httpx.get(url + "/readyz", timeout=2).status_code == 200 and (data_dir / "connection.env").exists():
                break
        except httpx.HTTPError:
            pass
        if time.monotonic() > deadline:
            process.stop()
            raise RuntimeError("engineshed dev did not become ready:\n" + process.output()[-4000:])
        time.sleep(0.2)
    try:
        yield Dev(url=url, home=home, data_dir=data_dir, process=process)
    finally:
        process.stop(timeout=40)


def test_dev_writes_its_connection_details_for_its_owner_only(dev: Dev) -> None:
    path = dev.data_dir / "connection.env"
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert stat.S_IMODE((dev.data_dir / "admin-token").stat().st_mode) == 0o600
    connection = dev.connection()
    assert connection.pid == dev.process.pid
    assert connection.graphql_url == dev.url + "/v3/graphql"

    async def database_answers() -> int:
        conn = await asyncpg.connect(connection.database_url)
        try:
            return await conn.fetchval("SELECT count(*) FROM api_tokens")
        finally:
            await conn.close()

    assert asyncio.run(database_answers()) >= 1  # the admin token dev created
    s3 = botocore.session.get_session().create_client(
        "s3", endpoint_url=connection.s3_endpoint_url, region_name=connection.s3_region,
        aws_access_key_id=connection.aws_access_key_id, aws_secret_access_key=connection.aws_secret_access_key,
        config=s3_client_config(),
    )
    try:
        s3.head_bucket(Bucket=connection.s3_bucket)
    finally:
        s3.close()
    # It can be sourced by a shell as it is.
    shell = subprocess.run(
        ["sh", "-c", f'set -a; . "{path}"; printf "%s\\n%s" "$DATABASE_URL" "$AWS_SECRET_ACCESS_KEY"'],
        capture_output=True, text=True, check=True,
    )
    assert shell.stdout == f"{connection.database_url}\n{connection.aws_secret_access_key}"


def test_token_create_reaches_the_running_dev_and_its_engine_token_claims_a_task(dev: Dev) -> None:
    admin = GraphQLClient(dev.url, dev.admin_token())
    org = Org(id=None, name="default", token=dev.admin_token(), client=admin, stack=None, gateway=None)  # type: ignore[arg-type]
    engine_id = f"external-{os.urandom(4).hex()}"
    admin.query(
        'mutation($id: ID!) { createEngine(input: {id: $id, identifierTypeIds: ["face"], modes: ["library-train"]}) { id } }',
        id=engine_id,
    ).ok()
    # The complaint that started this: the admin token does not claim.
    assert admin.query(CLAIM, e=engine_id).error_code == "not_allowed"

    # No DATABASE_URL, no S3_ENDPOINT_URL, no --data-dir: the default data dir of a `dev` run here.
    made = cli("token", "create", "--org", "default", "--scope", "engine", "--engine", engine_id, cwd=dev.home)
    assert made.returncode == 0, made.stderr
    engine_token = made.stdout.strip()
    assert engine_token.startswith("es_") and "\n" not in engine_token

    library_id = library_with_faces(org, people=1)
    model_id = create_model(org, library_id, engine_id)
    task_id = create_train_job(org, library_id, model_id, engine_id)["tasks"]["records"][0]["id"]
    engine = GraphQLClient(dev.url, engine_token)
    claimed = engine.query(CLAIM, e=engine_id).ok()["claimTasks"]
    assert [c["task"]["id"] for c in claimed] == [task_id]
    assert claimed[0]["task"]["status"] == "running" and claimed[0]["token"]
    admin.close()
    engine.close()


def test_migrate_and_token_create_take_the_data_dir_from_anywhere(dev: Dev, tmp_path: Path) -> None:
    migrated = cli("migrate", "--data-dir", str(dev.data_dir), cwd=tmp_path)
    assert migrated.returncode == 0, migrated.stderr
    assert migrated.stdout.strip() == "applied: nothing (up to date)"
    made = cli("token", "create", "--org", "default", "--scope", "read", "--data-dir", str(dev.data_dir), cwd=tmp_path)
    assert made.returncode == 0, made.stderr
    reply = GraphQLClient(dev.url, made.stdout.strip()).query("{ libraries { count } }")
    assert reply.errors == []


@pytest.mark.parametrize(("args", "message"), [
    (["--org", "default", "--scope", "engine", "--engine", "no-such-engine"], "not found"),
    (["--org", "default", "--scope", "engine", "--engine", "engineshed-gallery"], "is a built-in engine"),
    (["--org", "defualt", "--scope", "read"], "there is no organization named 'defualt'"),
    (["--org", "defualt", "--scope", "engine", "--engine", "x"], "there is no organization named 'defualt'"),
])
def test_token_create_checks_the_engine_and_the_organization_as_the_api_does(dev: Dev, args: list[str], message: str) -> None:
    done = cli("token", "create", *args, cwd=dev.home)
    assert done.returncode != 0 and done.stdout == ""
    assert message in done.stderr and "Traceback" not in done.stderr
    # Nothing was made: no organization from the typo.
    assert "there is no organization named 'defualt'" in cli("token", "list", "--org", "defualt", cwd=dev.home).stderr


def test_only_an_admin_token_starts_a_new_organization_and_says_so(dev: Dev) -> None:
    done = cli("token", "create", "--org", "brand-new", "--scope", "admin", cwd=dev.home)
    assert done.returncode == 0 and "created organization 'brand-new'" in done.stderr
    me = GraphQLClient(dev.url, done.stdout.strip()).query("{ me { organization { name } } }").ok()
    assert me["me"]["organization"]["name"] == "brand-new"
    again = cli("token", "create", "--org", "brand-new", "--scope", "read", cwd=dev.home)
    assert again.returncode == 0 and again.stderr == ""


def test_token_list_and_revoke_reach_the_running_dev(dev: Dev) -> None:
    made = cli("token", "create", "--org", "default", "--scope", "read", cwd=dev.home)
    secret = made.stdout.strip()
    reader = GraphQLClient(dev.url, secret)
    assert reader.query("{ libraries { count } }").errors == []
    listed = cli("token", "list", "--org", "default", cwd=dev.home)
    assert listed.returncode == 0, listed.stderr
    rows = [line.split("\t") for line in listed.stdout.splitlines()]
    assert rows[0] == ["id", "scope", "engine", "created", "revoked", "label"]
    assert {"admin", "read", "engine"} <= {row[1] for row in rows[1:]}
    assert secret not in listed.stdout and dev.admin_token() not in listed.stdout
    newest = rows[-1]
    assert newest[1:3] == ["read", "-"] and newest[4] == "-"

    revoked = cli("token", "revoke", newest[0], "--org", "default", cwd=dev.home)
    assert revoked.returncode == 0, revoked.stderr
    assert revoked.stdout.split("\t")[4] != "-"
    assert reader.query("{ libraries { count } }").error_code == "authentication_error"
    reader.close()

    for args, message in (
        (["revoke", newest[0], "--org", "no-such-org"], "there is no organization named 'no-such-org'"),
        (["revoke", "not-a-uuid", "--org", "default"], "not found"),
        (["list", "--org", "no-such-org"], "there is no organization named"),
    ):
        done = cli("token", *args, cwd=dev.home)
        assert done.returncode == 1 and message in done.stderr and "Traceback" not in done.stderr, (args, done.stderr)


def test_dev_serves_from_the_gateway_processes_it_was_asked_for(dev: Dev) -> None:
    children = {p.pid for p in psutil.Process(dev.process.pid).children(recursive=True)}
    seen: set[int] = set()
    deadline = time.monotonic() + 60
    # The processes accept on one shared socket; concurrent fresh connections reach both soon enough.
    while len(seen) < 2 and time.monotonic() < deadline:
        async def batch() -> list[int]:
            async with httpx.AsyncClient(limits=httpx.Limits(max_keepalive_connections=0)) as client:
                replies = await asyncio.gather(*(client.get(dev.url + "/healthz") for _ in range(16)))
            return [r.json()["pid"] for r in replies]

        seen.update(asyncio.run(batch()))
    assert len(seen) == 2, seen
    assert seen <= children  # the gateways are dev's own processes, not something else on the port


def test_the_printed_graphiql_link_carries_the_dev_token_in_its_fragment(dev: Dev) -> None:
    output = dev.process.output()
    links = re.findall(r"GraphiQL, signed in: (\S+)", output)
    assert links == [f"{dev.url}/v3/graphql#token={dev.admin_token()}"]
    page = httpx.get(links[0], headers={"Accept": "text/html"})  # clients never send the fragment
    assert page.status_code == 200 and "es-token" in page.text
    assert dev.admin_token() not in page.text


def test_the_token_reaches_no_log(dev: Dev) -> None:
    token = dev.admin_token()
    client = GraphQLClient(dev.url, token)
    assert client.query("{ libraries { count } }").errors == []
    assert client.get("{ libraries { count } }").errors == []
    client.close()
    httpx.get(f"{dev.url}/v3/graphql", headers={"Accept": "text/html"})
    deadline = time.monotonic() + 20
    while '"GET /v3/graphql HTTP/1.1" 200' not in dev.process.output() and time.monotonic() < deadline:
        time.sleep(0.1)
    lines = dev.process.output().splitlines()
    assert any('"POST /v3/graphql HTTP/1.1" 200' in line for line in lines)  # the access log is on
    with_token = [line for line in lines if token in line]
    # Only the banner printed to the terminal at start: the link, and the token line `make run` always had.
    assert len(with_token) == 2, with_token
    assert with_token[0].startswith("GraphiQL, signed in: ") and with_token[1] == f"admin token: {token}"
    for log in (dev.data_dir / "pg" / "log", dev.data_dir / "s3" / "weed.log"):
        assert token not in log.read_text(errors="replace"), log


def test_sigterm_stops_every_process_and_removes_the_connection_file(dev: Dev) -> None:
    root = psutil.Process(dev.process.pid)
    children = root.children(recursive=True)
    postmaster = int((dev.data_dir / "pg" / "postmaster.pid").read_text().split()[0])
    assert len(children) >= 4  # weed, worker, two gateways (and multiprocessing's resource tracker)
    dev.process.proc.send_signal(signal.SIGTERM)
    dev.process.proc.wait(60)
    _, alive = psutil.wait_procs(children, timeout=20)
    assert alive == []
    assert not psutil.pid_exists(postmaster) or psutil.Process(postmaster).status() == psutil.STATUS_ZOMBIE
    assert not (dev.data_dir / "connection.env").exists()
    assert (dev.data_dir / "admin-token").exists()  # the token survives a restart
    stopped = cli("token", "create", "--org", "default", "--scope", "read", cwd=dev.home)
    assert stopped.returncode != 0
    assert "no running `engineshed dev`" in stopped.stderr


# -- the admin commands when there is nothing to reach ------------------------------------------------------


def test_admin_commands_with_no_dev_and_no_settings_say_what_to_do(tmp_path: Path) -> None:
    for args in (["token", "create", "--org", "o", "--scope", "admin"], ["migrate"]):
        done = cli(*args, cwd=tmp_path)
        assert done.returncode != 0
        message = done.stderr.strip()
        assert message.startswith("engineshed: no running `engineshed dev` found"), message
        assert str(tmp_path / ".engineshed" / "connection.env") in message
        assert "DATABASE_URL" in message and "--data-dir" in message and "Traceback" not in message


def test_a_connection_file_left_by_a_killed_dev_is_refused(tmp_path: Path) -> None:
    gone = subprocess.Popen(["true"])
    gone.wait()
    data_dir = tmp_path / "data"
    data_dir.mkdir()
    (data_dir / "connection.env").write_text(DevConnection(
        database_url="postgresql://postgres@/postgres?host=/nowhere", s3_endpoint_url="http://127.0.0.1:9",
        s3_bucket="b", s3_region="us-east-1", aws_access_key_id="k", aws_secret_access_key="s",
        graphql_url="http://127.0.0.1:9/v3/graphql", pid=gone.pid,
    ).render())
    done = cli("token", "create", "--org", "o", "--scope", "admin", "--data-dir", str(data_dir), cwd=tmp_path)
    assert done.returncode != 0
    assert f"(pid {gone.pid}) is no longer running" in done.stderr
    (data_dir / "connection.env").write_text("DATABASE_URL=x\n")
    done = cli("migrate", "--data-dir", str(data_dir), cwd=tmp_path)
    assert "is not a connection file written by `engineshed dev`" in done.stderr and "Traceback" not in done.stderr


def test_half_the_settings_is_refused_rather_than_mixed_with_a_dev(tmp_path: Path) -> None:
    done = cli("migrate", cwd=tmp_path, env=clean_env(DATABASE_URL="postgresql://postgres@/postgres?host=/nowhere"))
    assert done.returncode != 0
    assert "set both DATABASE_URL and S3_ENDPOINT_URL, or neither" in done.stderr


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--scope", "engine"], "--scope engine needs --engine ID"),
        (["--scope", "read", "--engine", "x"], "--engine is only for --scope engine"),
        (["--scope", "owner"], "invalid choice: 'owner'"),
    ],
)
def test_token_create_refuses_bad_arguments_before_connecting(tmp_path: Path, args: list[str], message: str) -> None:
    done = cli("token", "create", "--org", "o", *args, cwd=tmp_path)
    assert done.returncode == 2
    assert message in done.stderr


def test_dev_shares_the_embedded_databases_connections_among_its_gateway_processes() -> None:
    assert [dev_gateway_pool_max(n, 2) for n in (1, 2, 3)] == [20, 20, 20]  # the default where it fits
    for processes in range(1, 17):
        pool = dev_gateway_pool_max(processes, 2)
        assert 2 <= pool <= 20
        assert processes * (pool + 1) <= EMBEDDED_GATEWAY_CONNECTIONS  # pools and LISTEN connections, all full


def test_start_up_shows_what_engineshed_says_and_not_the_database_setup(dev: Dev) -> None:
    output = dev.process.output()
    assert "engineshed is starting at" in output
    # pgserver logs each initdb and pg_ctl run's whole output; none of it reaches the person starting dev.
    assert "initdb" not in output and "Running commandline" not in output and "pg_ctl" not in output
