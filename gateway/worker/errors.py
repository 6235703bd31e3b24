"""The failures the worker waits out instead of recording: every loop and task of the worker catches these."""

from __future__ import annotations

import asyncpg

from storage.blobs import BlobError
from storage.db import CONNECTION_LOST

# Errors that may pass by themselves (S3 or PostgreSQL briefly away): the task is retried with backoff.
TRANSIENT = (BlobError, *CONNECTION_LOST, asyncpg.DeadlockDetectedError, asyncpg.SerializationError)
