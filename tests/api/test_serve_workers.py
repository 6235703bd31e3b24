"""`engineshed serve --workers N`: N gateway processes answer on one port, and SIGTERM stops them all."""

from __future__ import annotations

import asyncio
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx
import psutil
import pytest

from tests.conftest import ROOT, Stack, start_gateway
from tests.graphql_client import GraphQLClient

pytestmark = pytest.mark.timeout(180)


def _pids_answering(url: str, wanted: int, timeout: float = 60) -> set[int]:
    """PIDs named by /healthz over fresh concurrent connections, until `wanted` distinct ones are seen."""

    async def batch() -> list[int]:
        async with httpx.AsyncClient(limits=httpx.Limits(max_keepalive_connections=0)) as client:
            replies = await asyncio.gather(*(client.get(url + "/healthz") for _ in range(16)))
        return [r.json()["pid"] for r in replies]

    seen: set[int] = set()
    deadline = time.monotonic() + timeout
    while len(seen) < wanted and time.monotonic() < deadline:
        seen.update(asyncio.run(batch()))
    return seen


def test_three_processes_serve_one_port_and_sigterm_stops_them_all(stack: Stack, org, tmp_path: Path) -> None:
    gateway = start_gateway(stack.env, tmp_path, "gateway-x3", workers=3)
    try:
        supervisor = psutil.Process(gateway.process.pid)
        pids = _pids_answering(gateway.url, 3)
        servers = {p.pid for p in supervisor.children()}
        assert len(pids) == 3 and pids <= servers, (pids, servers)
        # Each process has its own pool and S3 client: GraphQL and uploads work whichever answers.
        client = GraphQLClient(gateway.url, org.token)
        for i in range(6):
            reply = client.query('mutation($n: String!) { createLibrary(input: {name: $n, libraryTypeId: "people"}) { id } }', n=f"x{i}")
            assert reply.errors == []
        client.close()
        assert "#token=" not in gateway.process.output()  # serve prints no signed-in link
        children = supervisor.children(recursive=True)
        gateway.process.proc.send_signal(signal.SIGTERM)
        assert gateway.process.proc.wait(40) == 0
        _, alive = psutil.wait_procs(children, timeout=20)
        assert alive == []
        output = gateway.process.output()
        assert output.count("Application shutdown complete.") == 3  # each closed its pool and S3 client
        assert "Traceback" not in output
    finally:
        gateway.process.stop()


def test_workers_must_be_positive(stack: Stack) -> None:
    done = subprocess.run(
        [sys.executable, "-m", "gateway.cli", "serve", "--workers", "0"], env=stack.env, cwd=ROOT,
        capture_output=True, text=True, timeout=60,
    )
    assert done.returncode != 0 and "--workers must be 1 or more" in done.stderr
    env = dict(stack.env, ENGINESHED_GATEWAY_PROCESSES="-1")
    done = subprocess.run([sys.executable, "-m", "gateway.cli", "serve"], env=env, cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert done.returncode != 0 and "ENGINESHED_GATEWAY_PROCESSES" in done.stderr
