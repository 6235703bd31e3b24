"""Logging for every process (gateway, worker, admin commands): one setup, text or JSON lines.

``ENGINESHED_LOG_FORMAT=text`` (the default) writes the familiar human lines. ``json`` writes one JSON object per
line, for log collectors: ``time`` (ISO-8601, UTC), ``level``, ``logger``, ``message``, ``process``, ``exception``
when there is one, and the IDs that say what the line is about where they apply: ``request_id`` (the HTTP
request, gateway/web/request_id.py), ``organization_id`` (the authenticated caller's, or the task's),
``job_id`` and ``task_id`` (the task a worker runs).

The IDs live in context variables, which asyncio copies into every task it starts: each request and each task
run sees its own and never another's, however many run at once on one event loop. Python's logging and one small
formatter do the job; no structured-logging library is needed for a flat object per line.
"""

from __future__ import annotations

import contextlib
import json
import logging
import sys
import threading
import types
from collections.abc import Iterator
from contextvars import ContextVar
from datetime import UTC, datetime
from typing import Any

from gateway.settings import Settings

TEXT_FORMAT = "%(asctime)s %(levelname)s %(name)s [%(process)d] %(message)s"

_IDS: dict[str, ContextVar[str | None]] = {
    name: ContextVar(f"engineshed_{name}", default=None)
    for name in ("request_id", "organization_id", "job_id", "task_id")
}

# Loggers of libraries that say too much at INFO.
_QUIET = ("aiobotocore", "botocore")
# uvicorn's own loggers: their lines go to the root handler, so they come out in the chosen format.
_UVICORN = ("uvicorn", "uvicorn.error", "uvicorn.access", "uvicorn.asgi")


@contextlib.contextmanager
def bound(**ids: object) -> Iterator[None]:
    """Within the block, this context's log lines carry these IDs (``None`` clears one); restored after."""
    tokens = [(_IDS[name], _IDS[name].set(None if value is None else str(value))) for name, value in ids.items()]
    try:
        yield
    finally:
        for var, token in reversed(tokens):
            var.reset(token)


def bind_organization(organization_id: object) -> None:
    """The rest of this context's log lines carry the organization (the request's context ends with the request)."""
    _IDS["organization_id"].set(str(organization_id))


class _ContextFilter(logging.Filter):
    """Stamps each record with the current context's IDs (records made with ``extra=`` IDs keep theirs)."""

    def filter(self, record: logging.LogRecord) -> bool:
        for name, var in _IDS.items():
            if getattr(record, name, None) is None:
                setattr(record, name, var.get())
        return True


class JsonFormatter(logging.Formatter):
    """One JSON object per record, on one line (newlines in a message or a traceback are escaped)."""

    def format(self, record: logging.LogRecord) -> str:
        out: dict[str, Any] = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z"),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
            "process": record.process,
        }
        for name in _IDS:
            value = getattr(record, name, None)
            if value is not None:
                out[name] = str(value)
        if record.exc_info:
            out["exception"] = self.formatException(record.exc_info)
        elif record.exc_text:
            out["exception"] = record.exc_text
        if record.stack_info:
            out["stack"] = self.formatStack(record.stack_info)
        return json.dumps(out, ensure_ascii=False, default=str)


def configure(settings: Settings) -> None:
    """Route every log line of this process, uvicorn's included, through one handler on stderr in the chosen
    format. Called once at start by each process (and again, harmlessly, by `serve`'s gateway processes)."""
    handler = logging.StreamHandler()
    handler.addFilter(_ContextFilter())
    handler.setFormatter(JsonFormatter() if settings.log_format == "json" else logging.Formatter(TEXT_FORMAT))
    logging.basicConfig(level=settings.log_level.upper(), handlers=[handler], force=True)
    for name in _QUIET:
        logging.getLogger(name).setLevel(logging.WARNING)
    for name in _UVICORN:
        uvicorn_logger = logging.getLogger(name)
        uvicorn_logger.handlers.clear()
        uvicorn_logger.propagate = True
    if settings.log_format == "json":
        # What would otherwise reach stderr as bare text: warnings and uncaught exceptions.
        logging.captureWarnings(True)
        sys.excepthook = _log_uncaught
        threading.excepthook = _log_uncaught_in_thread


def _log_uncaught(kind: type[BaseException], exc: BaseException, tb: types.TracebackType | None) -> None:
    if issubclass(kind, KeyboardInterrupt):
        sys.__excepthook__(kind, exc, tb)
        return
    logging.getLogger("engineshed").critical("uncaught exception", exc_info=(kind, exc, tb))


def _log_uncaught_in_thread(args: threading.ExceptHookArgs) -> None:
    if args.exc_value is None or isinstance(args.exc_value, SystemExit):
        return
    thread = args.thread.name if args.thread else "a thread"
    logging.getLogger("engineshed").error("uncaught exception in %s", thread,
                                          exc_info=(args.exc_type, args.exc_value, args.exc_traceback))


__all__ = ["TEXT_FORMAT", "JsonFormatter", "bind_organization", "bound", "configure"]
