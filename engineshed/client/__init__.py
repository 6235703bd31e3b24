"""engineshed's Python client: typed, documented, sync (:class:`Client`) and asyncio (:class:`AsyncClient`).

Every API error arrives as an exception of the class for its code (:class:`NotFoundError` for ``not_found`` …,
all :class:`ApiError`); ``service_unavailable`` is retried with backoff first, and so are connection failures of
calls that are safe to repeat. Uploads are streamed from disk. See docs/tutorial.md.
"""

from engineshed.client.client import AsyncClient, Client
from engineshed.client.connection import Connection, resolve
from engineshed.client.errors import (
    ApiError,
    AuthenticationError,
    CapacityExceededError,
    ConnectionFailed,
    EngineshedError,
    InternalError,
    InvalidInputError,
    NotAllowedError,
    NotFoundError,
    NotImplementedApiError,
    ServiceFailureError,
    ServiceUnavailableError,
    StorageRefused,
)
from engineshed.client.operations.filters import identifier_filter
from engineshed.client.training import JobNotRunning, NoModel, PipelineState, TrainingJob
from engineshed.client.transport import RetryPolicy, Upload

__all__ = [
    "Client", "AsyncClient", "Connection", "resolve", "RetryPolicy", "Upload", "TrainingJob", "PipelineState",
    "ApiError", "AuthenticationError", "CapacityExceededError", "ConnectionFailed", "EngineshedError", "InternalError",
    "InvalidInputError", "NotAllowedError", "NotFoundError", "NotImplementedApiError", "ServiceFailureError",
    "ServiceUnavailableError", "StorageRefused", "JobNotRunning", "NoModel", "identifier_filter",
]
