"""A kit for external engines: write ``train(library, model) -> Artifact`` and the runner does the established flow.

>>> from engineshed.engine import Artifact, Engine
>>> class Colours(Engine):
...     identifier_types = ("face",)
...     def train(self, library, model):
...         sizes = {identifier.id: len(data) for identifier, data in library.files()}
...         return Artifact(jsondata={"entities": [e.id for e in library.entities], "sizes": sizes})

``engineshed engine run my_engine:Colours --engine-id colours`` then claims the engine's tasks with its engine
token, and for each: uses the task's own token, sets the model ``running``, reads the library's entities and
identifiers page by page (30 a page, a few at a time, rate-limited), streams the identifier files, heartbeats
with progress and stops promptly when the job is cancelled, uploads the artifact with its content type (the
documented multipart ``updateLibraryEngineModel``), and reports ``complete`` — or ``failed`` with the error in the
model's ``jsondata``. ``service_unavailable`` is retried with backoff; Ctrl-C hands the claimed tasks back.
A plain ``def train`` runs in a thread of its own; ``async def train`` runs on the runner's event loop.
See docs/engine-developers.md.

This package speaks to the server only over HTTP, like an engine written in any other language.
"""

from engineshed.engine.api import Limits
from engineshed.engine.library import (
    Artifact,
    Cancelled,
    Entity,
    Identifier,
    Library,
    Model,
    TrainingFailed,
)
from engineshed.engine.loader import Engine, EngineLoadError, LoadedEngine, load_engine
from engineshed.engine.runner import Runner
from engineshed.engine.task import Outcome, TrainedModel

__all__ = [
    "Artifact", "Cancelled", "Engine", "EngineLoadError", "Entity", "Identifier", "Library", "Limits", "LoadedEngine",
    "Model", "Outcome", "Runner", "TrainedModel", "TrainingFailed", "load_engine",
]
