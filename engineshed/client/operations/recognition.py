"""Recognition: a file or URL against a trained model, a registered auto_tagging model or a library."""

from __future__ import annotations

from pathlib import Path

from engineshed.client.errors import InvalidInputError, NotFoundError
from engineshed.client.operations.base import OperationsBase, graphql, op
from engineshed.client.operations.fields import RECOGNITION_FIELDS
from engineshed.client.operations.jobs import JobOperations
from engineshed.client.transport import Operation, Upload
from engineshed.client.types import RecognitionResult


class RecognitionOperations(OperationsBase):
    """``recognize``."""

    @op
    def recognize(self, file: str | Path | bytes | Upload | None = None, *, library_engine_model_id: str | None = None,
                  model_id: str | None = None, library_id: str | None = None, engine_id: str | None = None,
                  url: str | None = None, top_k: int = 5, threshold: float | None = None) -> Operation[RecognitionResult]:
        """``recognize``: a file (streamed) or URL against a trained model, a registered auto_tagging model, or a library.

        With ``library_id`` and neither model argument the server picks the model, by the one rule the API, this
        client and the CLI share: the library's default model for ``engine_id``, else its default engine's default
        model. A server older than ``recognize(libraryId)`` gets the library's newest complete model instead.
        :class:`NotFoundError` says when the library has no trained model yet.
        """
        uploads = {"f": Upload.of(file)} if file is not None else {}
        fields = f"{{ {RECOGNITION_FIELDS} }} }}"
        common = dict(u=url, k=top_k, t=threshold, f=None)
        if library_engine_model_id is None and model_id is None:
            if library_id is None:
                raise InvalidInputError("give library_engine_model_id, model_id or library_id")
            try:
                data = yield graphql("query($l: ID, $e: ID, $u: String, $k: Int, $t: Float, $f: Upload) { recognize(libraryId: $l, "
                                     "engineId: $e, url: $u, topK: $k, threshold: $t, file: $f) " + fields,
                                     idempotent=True, uploads=uploads, l=library_id, e=engine_id, **common)
                return data["recognize"]
            except InvalidInputError as exc:
                if "has no default model" in exc.message:
                    raise NotFoundError(f"library {library_id} has no trained model yet: train it first") from exc
                if "Unknown argument" not in exc.message:
                    raise
            latest = yield from JobOperations.latest_model.__wrapped__(self, library_id, engine_id)  # type: ignore[attr-defined]
            if latest is None:
                raise NotFoundError(f"library {library_id} has no trained model yet: train it first")
            library_engine_model_id = latest["id"]
        data = yield graphql(
            "query($m: ID, $mid: String, $u: String, $k: Int, $t: Float, $f: Upload) { recognize(libraryEngineModelId: $m, "
            "modelId: $mid, url: $u, topK: $k, threshold: $t, file: $f) " + fields,
            idempotent=True, uploads=uploads, m=library_engine_model_id, mid=model_id, **common,
        )
        return data["recognize"]
