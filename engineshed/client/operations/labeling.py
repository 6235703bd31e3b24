"""Labeling (LayerNext 7.2 - 7.3, ModelArts intelligent tasks): auto-tagging into suggestions, hard examples,
grouping."""

from __future__ import annotations

import numbers
from collections.abc import Mapping, Sequence
from typing import Any

from engineshed.client.errors import InvalidInputError
from engineshed.client.operations.arguments import check_platform, identifier_type_of, model_or_default, named_model
from engineshed.client.operations.base import OperationsBase, graphql, op
from engineshed.client.operations.caller import CallerOperations
from engineshed.client.operations.fields import JOB_FIELDS
from engineshed.client.operations.filters import identifier_filter
from engineshed.client.transport import Call, Operation
from engineshed.client.types import Job, Page


class LabelingOperations(OperationsBase):
    """Auto-tagging, suggestions, hard examples, grouping and intelligent tasks."""

    def _auto_tag(self, target: dict[str, Any], model_id: str | None, input_resolution: Sequence[int],
                  confidence_threshold: float, query: str | None, filter: Mapping[str, Any] | None,
                  inference_platform: str) -> Operation[Job]:
        check_platform(inference_platform)
        if (isinstance(input_resolution, (str, bytes)) or not isinstance(input_resolution, Sequence) or len(input_resolution) != 2
                or not all(isinstance(v, numbers.Integral) and not isinstance(v, bool) for v in input_resolution)):
            raise InvalidInputError(f"input_resolution must be (width, height) in whole pixels, such as (300, 300), not {input_resolution!r}")
        if isinstance(confidence_threshold, bool) or not isinstance(confidence_threshold, numbers.Real):
            raise InvalidInputError(f"confidence_threshold must be a number between 0 and 1, not {confidence_threshold!r}")
        if query is not None and not isinstance(query, str):
            raise InvalidInputError(f"query must be a string such as 'annotation.label=Bird', not {query!r}")
        data = yield graphql(f"mutation($i: AutoTag!) {{ autoTag(input: $i) {{ {JOB_FIELDS} }} }}", idempotent=False, i={
            **target, "modelId": model_or_default(model_id), "inputResolution": [int(v) for v in input_resolution],
            "confidenceThreshold": float(confidence_threshold), "query": query, "filter": identifier_filter(filter)})
        return data["autoTag"]

    @op
    def auto_tag_collection(self, collection_id: str, model_id: str | None = None, input_resolution: Sequence[int] = (300, 300),
                            confidence_threshold: float = 0.5, query: str | None = None, filter: Mapping[str, Any] | None = None,
                            inference_platform: str = "use_env", *, model_name: str | None = None) -> Operation[Job]:
        """``autoTag(libraryId)``: tag a library's identifiers with a registered auto_tagging model (None: the default).

        The tags arrive as suggestions (:meth:`suggestions`) to accept or reject. ``inference_platform`` is accepted
        for LayerNext's signature and ignored.
        """
        return (yield from self._auto_tag({"libraryId": collection_id}, named_model(model_id, model_name), input_resolution,
                                          confidence_threshold, query, filter, inference_platform))

    @op
    def generate_auto_tags_to_metalake(self, content_type: str, model_id: str | None = None, input_resolution: Sequence[int] = (300, 300),
                                       confidence_threshold: float = 0.5, query: str | None = None,
                                       filter: Mapping[str, Any] | None = None, inference_platform: str = "use_env", *,
                                       model_name: str | None = None) -> Operation[Job]:
        """``autoTag(identifierTypeId)``: tag every library of the organization holding ``content_type`` ('image' / 'video')."""
        return (yield from self._auto_tag({"identifierTypeId": identifier_type_of(content_type)}, named_model(model_id, model_name),
                                          input_resolution, confidence_threshold, query, filter, inference_platform))

    @op
    def find_hard_examples(self, library_id: str, library_engine_model_id: str | None = None, model_id: str | None = None,
                           confidence_scope: str = "0.10-0.90", collect_key_sample: bool = False) -> Operation[Job]:
        """``findHardExamples``: mark the identifiers a model is least sure of (``EntityIdentifier.hard``)."""
        data = yield graphql(f"mutation($i: FindHardExamples!) {{ findHardExamples(input: $i) {{ {JOB_FIELDS} }} }}", idempotent=False, i={
            "libraryId": library_id, "libraryEngineModelId": library_engine_model_id, "modelId": model_id,
            "confidenceScope": confidence_scope, "collectKeySample": collect_key_sample})
        return data["findHardExamples"]

    @op
    def auto_group(self, library_id: str, n_clusters: int | None = None, similarity_threshold: float | None = None,
                   feature: str = "embedding", model_id: str | None = None) -> Operation[Job]:
        """``autoGroup``: cluster a library's unassigned identifiers (see ``identifierGroups``)."""
        data = yield graphql(f"mutation($i: AutoGroup!) {{ autoGroup(input: $i) {{ {JOB_FIELDS} }} }}", idempotent=False, i={
            "libraryId": library_id, "nClusters": n_clusters, "similarityThreshold": similarity_threshold,
            "feature": feature, "modelId": model_id})
        return data["autoGroup"]

    @op
    def suggestions(self, job_id: str | None = None, identifier_id: str | None = None, library_id: str | None = None,
                    status: str | None = None, offset: int = 0, limit: int = 30) -> Operation[Page[dict[str, Any]]]:
        """``suggestions``: labels proposed by auto-tagging, with their confidence and status."""
        data = yield graphql("query($j: ID, $i: ID, $l: ID, $s: SuggestionStatus, $o: Int, $lim: Int) { suggestions(jobId: $j, identifierId: $i, "
                             "libraryId: $l, status: $s, offset: $o, limit: $lim) { offset limit count totalCount records "
                             "{ id identifierId jobId entityId label confidence modelVersion status } } }",
                             idempotent=True, j=job_id, i=identifier_id, l=library_id, s=status, o=offset, lim=limit)
        return data["suggestions"]

    @op
    def accept_suggestions(self, ids: Sequence[str]) -> Operation[list[dict[str, Any]]]:
        """``acceptSuggestions``."""
        data = yield graphql("mutation($ids: [ID!]!) { acceptSuggestions(ids: $ids) { id status entityId label } }", idempotent=True, ids=list(ids))
        return data["acceptSuggestions"]

    @op
    def reject_suggestions(self, ids: Sequence[str]) -> Operation[list[dict[str, Any]]]:
        """``rejectSuggestions``."""
        data = yield graphql("mutation($ids: [ID!]!) { rejectSuggestions(ids: $ids) { id status } }", idempotent=True, ids=list(ids))
        return data["rejectSuggestions"]

    @op
    def start_intelligent_task(self, dataset_id: str, task_type: str = "auto-label", model_id: str | None = None,
                               collect_key_sample: bool | None = None, config: Mapping[str, Any] | None = None,
                               project_id: str | None = None, **body: Any) -> Operation[str]:
        """ModelArts ``POST /v2/{project_id}/datasets/{dataset_id}/tasks``: start an auto-label, pre-label or
        auto-grouping task on a library (the dataset); the task id (the job's id).

        ``project_id`` None: the caller's organization (``me { organizationId }``). Other ModelArts body keys pass
        through as given (``body``).
        """
        if project_id is None:
            project_id = (yield from CallerOperations.me.__wrapped__(self))["organizationId"]  # type: ignore[attr-defined]
        payload: dict[str, Any] = {"task_type": task_type, **body}
        if model_id is not None:
            payload["model_id"] = model_id
        if collect_key_sample is not None:
            payload["collect_key_sample"] = collect_key_sample
        if config is not None:
            payload["config"] = dict(config)
        reply = yield Call(method="POST", path=f"/v2/{project_id}/datasets/{dataset_id}/tasks", json_body=payload)
        return reply["task_id"]

    @op
    def get_intelligent_task(self, dataset_id: str, task_id: str, project_id: str | None = None) -> Operation[dict[str, Any]]:
        """ModelArts ``GET /v2/{project_id}/datasets/{dataset_id}/tasks/{task_id}``: the task's status JSON."""
        if project_id is None:
            project_id = (yield from CallerOperations.me.__wrapped__(self))["organizationId"]  # type: ignore[attr-defined]
        reply = yield Call(method="GET", path=f"/v2/{project_id}/datasets/{dataset_id}/tasks/{task_id}", idempotent=True)
        return reply
