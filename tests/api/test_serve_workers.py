"""`engineshed serve --workers N`: N gateway processes answer on one port, and SIGTERM stops them all."""

from __future__ import annotations

import asyncio
import os
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


def test_ctrl_c_in_a_terminal_stops_every_process(stack: Stack, tmp_path: Path) -> None:
    gateway = start_gateway(stack.env, tmp_path, "gateway-ctrl-c", workers=2)
    try:
        assert len(_pids_answering(gateway.url, 2)) == 2
        children = psutil.Process(gateway.process.pid).children(recursive=True)
        os.killpg(gateway.process.pid, signal.SIGINT)  # a terminal's Ctrl-C reaches the whole process group
        assert gateway.process.proc.wait(40) == 0
        _, alive = psutil.wait_procs(children, timeout=20)
        assert alive == []
        assert gateway.process.output().count("Application shutdown complete.") == 2
    finally:
        gateway.process.stop()


def test_a_process_that_cannot_start_stops_them_all_and_the_exit_status_says_so(stack: Stack) -> None:
    env = dict(stack.env, DATABASE_URL="postgresql://postgres@/postgres?host=/nonexistent-socket-dir")
    done = subprocess.run(
        [sys.executable, "-m", "gateway.cli", "serve", "--port", "0", "--workers", "2"], env=env, cwd=ROOT,
        capture_output=True, text=True, timeout=120,
    )
    assert done.returncode == 1
    assert "engineshed: a gateway process failed to start" in done.stderr
