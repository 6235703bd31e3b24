"""The real stack for the benchmark: embedded PostgreSQL + SeaweedFS, a gateway and ONE worker process.

Everything lives in a temporary directory and on loopback. :func:`bench_stack` always stops what it
started (processes it spawned and their descendants, by pid), also on Ctrl-C and exceptions.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import psutil

from gateway.devstack import embedded_stack, find_free_port

ROOT = Path(__file__).resolve().parent.parent


class BenchError(RuntimeError):
    """The benchmark could not complete a step."""


def log(message: str) -> None:
    print(f"[bench {time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


async def create_token(database_url: str, org: str) -> str:
    from gateway.services.access.tokens import create_token as make
    from storage.db import connect_pool

    async with connect_pool(database_url, min_size=1, max_size=2) as pool:
        token, _ = await make(pool, org_name=org, scope="admin")
    return token


class Proc:
    """A gateway or worker subprocess in its own session, output to a log file."""

    def __init__(self, name: str, args: list[str], env: dict[str, str], log_dir: Path) -> None:
        self.name = name
        self.log_path = log_dir / f"{name}.log"
        self._log = open(self.log_path, "wb")
        self.proc = subprocess.Popen(
            args, env=env, cwd=ROOT, stdin=subprocess.DEVNULL, stdout=self._log, stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        self._descendants: dict[int, psutil.Process] = {}

    @property
    def pid(self) -> int:
        return self.proc.pid

    def alive(self) -> bool:
        return self.proc.poll() is None

    def remember_descendants(self) -> None:
        """Note the process's current descendants (decode processes) so stop() can be sure they are gone."""
        with contextlib.suppress(psutil.Error):
            for child in psutil.Process(self.pid).children(recursive=True):
                self._descendants.setdefault(child.pid, child)

    def output_tail(self, size: int = 4000) -> str:
        try:
            return self.log_path.read_text(errors="replace")[-size:]
        except OSError:
            return ""

    def stop(self, timeout: float = 20.0) -> None:
        self.remember_descendants()
        if self.alive():
            with contextlib.suppress(ProcessLookupError):
                self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    self.proc.kill()
                self.proc.wait(10)
        # Descendants we saw while it ran: psutil.Process checks the creation time, so a recycled pid
        # is never mistaken for one of ours.
        leftovers = []
        for child in self._descendants.values():
            with contextlib.suppress(psutil.Error):
                if child.is_running():
                    child.terminate()
                    leftovers.append(child)
        _, alive = psutil.wait_procs(leftovers, timeout=5)
        for child in alive:
            with contextlib.suppress(psutil.Error):
                child.kill()
        self._log.close()


@dataclass
class Stack:
    env: dict[str, str]
    url: str
    gateway: Proc
    worker: Proc
    database_url: str
    log_dir: Path
    procs: list[Proc] = field(default_factory=list)


def _base_env(pg: object, s3: object, extra: dict[str, str]) -> dict[str, str]:
    env = {
        key: value
        for key, value in os.environ.items()
        if not key.startswith(("ENGINESHED_", "AWS_", "S3_")) and key not in ("DATABASE_URL", "PORT")
    }
    # The execution provider is the one setting passed through, so the bench runs on the GPU too.
    if os.environ.get("ENGINESHED_ONNX_PROVIDER"):
        env["ENGINESHED_ONNX_PROVIDER"] = os.environ["ENGINESHED_ONNX_PROVIDER"]
    env.update(
        DATABASE_URL=pg.url,  # type: ignore[attr-defined]
        S3_ENDPOINT_URL=s3.endpoint_url,  # type: ignore[attr-defined]
        S3_BUCKET=s3.bucket,  # type: ignore[attr-defined]
        AWS_ACCESS_KEY_ID=s3.access_key,  # type: ignore[attr-defined]
        AWS_SECRET_ACCESS_KEY=s3.secret_key,  # type: ignore[attr-defined]
        ENGINESHED_EXPOSE_SQL_COUNT="1",
        ENGINESHED_LOG_LEVEL="WARNING",
        PYTHONPATH=str(ROOT) + (os.pathsep + os.environ["PYTHONPATH"] if os.environ.get("PYTHONPATH") else ""),
        PYTHONUNBUFFERED="1",
    )
    env.update(extra)
    return env


def _wait_ready(url: str, proc: Proc, timeout: float = 90.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not proc.alive():
            raise BenchError(f"the {proc.name} exited at start:\n{proc.output_tail()}")
        try:
            if httpx.get(url + "/readyz", timeout=2).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.2)
    raise BenchError(f"the {proc.name} did not become ready in {timeout:.0f}s:\n{proc.output_tail()}")


def _wait_worker_ready(proc: Proc, timeout: float = 90.0) -> None:
    """The worker has no HTTP port: it is ready once it logs that it listens for work."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not proc.alive():
            raise BenchError(f"the worker exited at start:\n{proc.output_tail()}")
        if "ready with engines" in proc.output_tail(20000):
            return
        time.sleep(0.1)
    raise BenchError(f"the worker did not become ready in {timeout:.0f}s:\n{proc.output_tail()}")


@contextlib.contextmanager
def bench_stack(extra_env: dict[str, str] | None = None, keep_dir: Path | None = None) -> Iterator[Stack]:
    """Start the whole stack in a temporary directory; stop it and delete the directory afterwards."""
    with contextlib.ExitStack() as exits:
        if keep_dir is None:
            tmp = Path(exits.enter_context(tempfile.TemporaryDirectory(prefix="engineshed-bench-")))
        else:
            tmp = keep_dir
            tmp.mkdir(parents=True, exist_ok=True)
        log_dir = tmp / "logs"
        log_dir.mkdir(exist_ok=True)
        pg, s3 = exits.enter_context(embedded_stack(tmp / "data"))
        env = _base_env(pg, s3, extra_env or {})
        done = subprocess.run(
            [sys.executable, "-m", "gateway.cli", "migrate"], env=env, cwd=ROOT, capture_output=True, timeout=120
        )
        if done.returncode != 0:
            raise BenchError("migrations failed:\n" + done.stderr.decode(errors="replace")[-4000:])
        procs: list[Proc] = []

        def stop_all() -> None:
            for proc in reversed(procs):
                with contextlib.suppress(Exception):
                    proc.stop()

        exits.callback(stop_all)
        port = find_free_port()
        # One gateway process, so the figures stay comparable with earlier runs; the gateway-processes
        # scenario starts its own with --workers N beside it (start_gateway).
        gateway = Proc("gateway", [sys.executable, "-m", "gateway.cli", "serve", "--port", str(port), "--workers", "1"], env, log_dir)
        procs.append(gateway)
        # The gateway logs at WARNING (uvicorn's per-request access log would be measured otherwise);
        # the worker at INFO, one line per task, which also says when it is ready.
        worker_env = dict(env, ENGINESHED_LOG_LEVEL="INFO")
        worker = Proc("worker", [sys.executable, "-m", "gateway.cli", "worker", "--id", "bench-worker"], worker_env, log_dir)
        procs.append(worker)
        url = f"http://127.0.0.1:{port}"
        _wait_ready(url, gateway)
        _wait_worker_ready(worker)
        yield Stack(env=env, url=url, gateway=gateway, worker=worker, database_url=pg.url, log_dir=log_dir, procs=procs)


def start_gateway(stack: Stack, workers: int, name: str, env: dict[str, str] | None = None) -> tuple[str, Proc]:
    """Another `engineshed serve --workers N` on the same PostgreSQL and S3 (``env``: settings of its own);
    stopped with the stack."""
    port = find_free_port()
    proc = Proc(name, [sys.executable, "-m", "gateway.cli", "serve", "--port", str(port), "--workers", str(workers)],
                {**stack.env, **(env or {})}, stack.log_dir)
    stack.procs.append(proc)
    url = f"http://127.0.0.1:{port}"
    _wait_ready(url, proc)
    return url, proc
