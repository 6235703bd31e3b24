"""Every REST route, mounted by gateway/app.py beside /v3/graphql. Add a resource's routes here."""

from __future__ import annotations

from starlette.routing import Route

from gateway.rest import intelligent_tasks, media, timeline, trainings


def rest_routes() -> list[Route]:
    return [
        # With and without the trailing slash: the resource is documented as /v1/trainings/, clients often drop it.
        Route("/v1/trainings/", trainings.collection),
        Route("/v1/trainings", trainings.collection),
        Route("/v1/trainings/{training_id}", trainings.item),
        Route("/v1/trainings/{training_id}/", trainings.item),
        # Intelligent tasks: the project is the caller's organization, the dataset a library.
        Route("/v2/{project_id}/datasets/{dataset_id}/tasks", intelligent_tasks.tasks),
        Route("/v2/{project_id}/datasets/{dataset_id}/tasks/{task_id}", intelligent_tasks.task),
        # Who appears and who speaks in a media job: an offline HTML page, or ?format=svg the image alone.
        Route("/v3/jobs/{job_id}/timeline", timeline.endpoint),
        # A video or long recording as the raw body, streamed to S3 under the media limit (not the multipart one).
        Route("/v3/media", media.endpoint),
    ]
