"""The synchronous `recognize` query: one image (or recording) against a trained or registered model, mapped back
to entity IDs."""

from __future__ import annotations

from typing import Any, Optional

import strawberry
from strawberry.file_uploads import Upload

from gateway.schema.context import Info
from gateway.services.recognition import recognize as recognition


@strawberry.type
class RecognitionMatch:
    library_id: strawberry.ID
    entity_id: strawberry.ID
    entity_name: str
    entity_identifier_id: Optional[strawberry.ID]
    score: float


@strawberry.type(description="A stretch of the input that was used: an audio recording's voiced window.")
class RecognitionWindow:
    start_seconds: float
    end_seconds: float


@strawberry.type(description="One label of a registered auto_tagging model, with its confidence (0..1).")
class RecognitionLabel:
    label: str
    score: float


@strawberry.type(description="A box in the input's pixels: left and top edges, width and height.")
class BoundingBox:
    left: float
    top: float
    width: float
    height: float


@strawberry.type(description="A point in the input's pixels.")
class Point:
    x: float
    y: float


@strawberry.type(description="One face found in the input, with its matches (best first, under the threshold left out).")
class RecognizedFace:
    box: BoundingBox
    landmarks: list[Point] = strawberry.field(
        description="Right eye, left eye, nose, mouth, right ear, left ear (the subject's right and left)."
    )
    detection_score: float = strawberry.field(description="The detector's confidence that this is a face (0-1).")
    matches: list[RecognitionMatch]


@strawberry.type
class RecognitionResult:
    library_engine_model_id: Optional[strawberry.ID] = strawberry.field(description="Null when modelId answered.")
    library_id: Optional[strawberry.ID]
    engine_id: Optional[strawberry.ID]
    model_id: Optional[str] = strawberry.field(
        description="The registered auto_tagging model version that answered (name@version); null for a trained model."
    )
    threshold: Optional[float]
    matches: list[RecognitionMatch]
    labels: list[RecognitionLabel] = strawberry.field(
        description="A registered auto_tagging model's labels, best first; empty for a trained model."
    )
    windows: list[RecognitionWindow] = strawberry.field(
        description="For audio: the voiced windows (seconds) the speaker engine embedded; empty for images."
    )
    faces: list[RecognizedFace] = strawberry.field(
        description="A face engine's answer: every face found, largest first, each with its box, landmarks and "
        "matches (``matches`` then holds each entity once, at its best face's score); empty for other engines."
    )


def to_result(outcome: recognition.Outcome) -> RecognitionResult:
    if outcome.model is None:
        assert outcome.registered is not None
        return RecognitionResult(
            library_engine_model_id=None, library_id=None, engine_id=None, model_id=outcome.registered.ref,
            threshold=outcome.threshold, matches=[],
            labels=[RecognitionLabel(label=t.label, score=t.score) for t in outcome.tags], windows=[], faces=[],
        )
    library_id = strawberry.ID(str(outcome.model.library_id))

    def match(m: Any) -> RecognitionMatch:
        return RecognitionMatch(
            library_id=library_id,
            entity_id=strawberry.ID(m.entity_id),
            entity_name=m.entity_name,
            entity_identifier_id=strawberry.ID(m.entity_identifier_id) if m.entity_identifier_id else None,
            score=m.score,  # at most 1 (engines.interface.Match)
        )

    return RecognitionResult(
        model_id=None,
        labels=[],
        library_engine_model_id=strawberry.ID(str(outcome.model.id)),
        library_id=library_id,
        engine_id=strawberry.ID(outcome.model.engine_id),
        threshold=outcome.threshold,
        matches=[match(m) for m in outcome.matches],
        windows=[RecognitionWindow(start_seconds=a, end_seconds=b) for a, b in outcome.windows],
        faces=[
            RecognizedFace(
                box=BoundingBox(left=f.box[0], top=f.box[1], width=f.box[2], height=f.box[3]),
                landmarks=[Point(x=x, y=y) for x, y in f.landmarks],
                detection_score=f.detection_score,
                matches=[match(m) for m in f.matches],
            )
            for f in outcome.faces
        ],
    )


async def recognize_file(
    info: Info, model_id: Optional[strawberry.ID], file: Any, url: Optional[str], top_k: Optional[int],
    threshold: Optional[float], registered_ref: Optional[str] = None, *, library_id: Optional[strawberry.ID] = None,
    engine_id: Optional[strawberry.ID] = None,
) -> RecognitionResult:
    upload = file or info.context.form_file
    outcome = await recognition.recognize(
        info.context.resources, info.context.principal, model_id, upload=upload, url=url, top_k=top_k,
        threshold=threshold, registered_ref=registered_ref, library_id=library_id, engine_id=engine_id,
    )
    return to_result(outcome)


@strawberry.type
class RecognitionQuery:
    @strawberry.field(
        description="Recognize an uploaded image (or the plain form's file part) with a trained model "
        "(libraryEngineModelId), with a library's default model (libraryId, and engineId or the library's default "
        "engine), or with a registered auto_tagging model without training (modelId: name, name@3, name@alias): give "
        "exactly one of libraryEngineModelId, libraryId and modelId."
    )
    async def recognize(
        self,
        info: Info,
        library_engine_model_id: Optional[strawberry.ID] = None,
        file: Optional[Upload] = None,
        url: Optional[str] = None,
        top_k: Optional[int] = 5,
        threshold: Optional[float] = None,
        model_id: Optional[str] = None,
        library_id: Optional[strawberry.ID] = None,
        engine_id: Optional[strawberry.ID] = None,
    ) -> RecognitionResult:
        return await recognize_file(info, library_engine_model_id, file, url, top_k, threshold, model_id,
                                    library_id=library_id, engine_id=engine_id)
