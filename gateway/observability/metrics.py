"""What engineshed counts, and one small function per event that counts it.

Imported only after ``multiproc.prepare`` where a command line starts the process (the values then go to the
shared directory). Labels are bounded: GraphQL root fields of the schema, outcome codes, engine ids, execution
providers, S3 operations; never organization or user input.
"""

from __future__ import annotations

from prometheus_client import Counter, Gauge, Histogram

# Seconds: a GraphQL request is milliseconds to a minute (an upload); a task is a second to hours.
REQUEST_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60)
TASK_BUCKETS = (0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600, 1800, 3600, 7200, 21600)
BATCH_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10)

graphql_requests = Counter(
    "engineshed_graphql_requests", "GraphQL requests by root field and outcome code (ok, invalid_input, not_found, ...)",
    ["operation", "code"])
graphql_seconds = Histogram(
    "engineshed_graphql_request_seconds", "GraphQL request latency by root field and outcome code",
    ["operation", "code"], buckets=REQUEST_BUCKETS)
tasks = Counter(
    "engineshed_tasks", "Tasks that ended an attempt, by engine, outcome (complete, failed, retried, cancelled, "
    "released, lost) and failure reason", ["engine", "outcome", "reason"])
task_seconds = Histogram(
    "engineshed_task_seconds", "Wall time of a task attempt by engine and outcome", ["engine", "outcome"],
    buckets=TASK_BUCKETS)
identifiers_trained = Counter(
    "engineshed_identifiers_trained", "Identifiers in the models trainings produced, by engine", ["engine"])
identifiers_embedded = Counter(
    "engineshed_identifiers_embedded", "Identifiers embedded: by trainings (inferences) and by the embedding queue "
    "(ingest)", ["source"])
inference_batch_seconds = Histogram(
    "engineshed_inference_batch_seconds", "ONNX Runtime batch latency by execution provider", ["provider"],
    buckets=BATCH_BUCKETS)
s3_errors = Counter("engineshed_s3_errors", "S3 requests that failed, by operation", ["operation"])
# Live values of running processes: summed over the live ones, dropped when a process is marked dead.
db_pool_size = Gauge("engineshed_db_pool_size", "PostgreSQL connections open in the pools, by process role", ["role"],
                     multiprocess_mode="livesum")
db_pool_in_use = Gauge("engineshed_db_pool_in_use", "PostgreSQL pool connections in use, by process role", ["role"],
                       multiprocess_mode="livesum")


def request_done(operation: str, code: str, seconds: float) -> None:
    graphql_requests.labels(operation, code).inc()
    graphql_seconds.labels(operation, code).observe(seconds)


def task_done(engine: str, outcome: str, reason: str | None, seconds: float) -> None:
    tasks.labels(engine, outcome, reason or "").inc()
    task_seconds.labels(engine, outcome).observe(seconds)


def trained(engine: str, identifiers: object) -> None:
    if isinstance(identifiers, int) and identifiers > 0:
        identifiers_trained.labels(engine).inc(identifiers)


def embedded(source: str, count: int) -> None:
    if count > 0:
        identifiers_embedded.labels(source).inc(count)


def inference_batch(provider: str, seconds: float) -> None:
    inference_batch_seconds.labels(provider).observe(seconds)


def s3_error(operation: str) -> None:
    s3_errors.labels(operation).inc()


def pool_state(role: str, size: int, in_use: int) -> None:
    db_pool_size.labels(role).set(size)
    db_pool_in_use.labels(role).set(in_use)
