"""Arguments the LayerNext and ModelArts signatures take, checked and translated to what the API expects."""

from __future__ import annotations

from engineshed.client.errors import InvalidInputError

# LayerNext's inference platforms: accepted, and ignored, since engineshed runs everything on its own workers.
INFERENCE_PLATFORMS = ("use_env", "aws", "local")
CONTENT_TYPES = {"image": "image", "video": "video"}  # LayerNext's content_type -> our identifierTypeId


def check_platform(inference_platform: str | None) -> None:
    """Refuse an unknown ``inference_platform``; a known one changes nothing."""
    if inference_platform is not None and inference_platform not in INFERENCE_PLATFORMS:
        raise InvalidInputError(f"inference_platform must be one of {', '.join(INFERENCE_PLATFORMS)} (it is ignored here)")


def identifier_type_of(content_type: str) -> str:
    """LayerNext's ``content_type`` as the identifier type it names."""
    try:
        return CONTENT_TYPES[content_type]
    except KeyError:
        raise InvalidInputError(f"content_type must be 'image' or 'video', not {content_type!r}") from None


def named_model(model_id: str | None, model_name: str | None, *, required: bool = False) -> str | None:
    """The model the call names: ``model_id`` (as LayerNext's parameter tables call it) or ``model_name`` (as its
    signature lines do), not two different ones."""
    if model_id is not None and model_name is not None and model_id != model_name:
        raise InvalidInputError(f"model_id {model_id!r} and model_name {model_name!r} name different models; give one")
    name = model_id if model_id is not None else model_name
    if name is not None and (not isinstance(name, str) or not name.strip()):
        raise InvalidInputError(f"the model name must be a non-empty string, not {name!r}")
    if required and name is None:
        raise InvalidInputError("name the model: model_id (or model_name)")
    return name


def model_or_default(model_id: str | None) -> str | None:
    """``model_id``'s LayerNext default ``'default'`` means the system default model: sent as no model at all."""
    return None if model_id is None or model_id.strip().lower() == "default" else model_id
