"""Rendering /metrics: the values of every process sharing this machine's directory (or of this process alone,
where no command line prepared one), plus the gauges read from PostgreSQL at scrape time."""

from __future__ import annotations

import logging
import sys
import threading
from collections.abc import Iterable

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    REGISTRY,
    CollectorRegistry,
    generate_latest,
    multiprocess,
)
from prometheus_client.exposition import start_http_server
from prometheus_client.metrics_core import Metric

from gateway.observability import multiproc
from gateway.observability.scrape import DatabaseCollector
from gateway.settings import Settings

log = logging.getLogger(__name__)

__all__ = ["CONTENT_TYPE_LATEST", "registry", "render", "serve"]


def registry(settings: Settings) -> CollectorRegistry:
    found = CollectorRegistry(auto_describe=False)
    if multiproc.shared():
        multiprocess.MultiProcessCollector(found)
    else:
        found.register(_Default())
    found.register(DatabaseCollector(settings.database_url))
    return found


class _Default:
    """This process's own registry, when it shares no directory with others."""

    def collect(self) -> Iterable[Metric]:
        return REGISTRY.collect()


def render(settings: Settings) -> bytes:
    """The exposition text. Blocking (it reads files and PostgreSQL): call it off the event loop."""
    return generate_latest(registry(settings))


def serve(settings: Settings, port: int) -> threading.Thread:
    """/metrics (any path, as prometheus-client serves it) on ``port`` of ``settings.host``, on a daemon thread;
    the process exits saying why when the port cannot be had."""
    try:
        server, thread = start_http_server(port, addr=settings.host, registry=registry(settings))
    except OSError as exc:
        sys.exit(f"engineshed: cannot serve metrics on {settings.host}:{port}: {exc}")
    log.info("metrics on http://%s:%d/metrics", settings.host, server.server_port)
    return thread
