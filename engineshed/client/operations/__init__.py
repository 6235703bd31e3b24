"""Every client operation, written once for the sync and the async client (see :mod:`.base`), one mixin per
domain, composed into :class:`Operations`.

Names follow the clients users already know (LayerNext's ``register_model``, ``auto_tag_collection``,
``generate_embeddings_…``, ``insert_image_embeddings…``, ``get_embedding_vector``; ModelArts' intelligent tasks),
and the GraphQL operation they map onto is named in each docstring.
"""

from __future__ import annotations

from engineshed.client.operations.caller import CallerOperations
from engineshed.client.operations.embeddings import EmbeddingOperations
from engineshed.client.operations.jobs import JobOperations
from engineshed.client.operations.labeling import LabelingOperations
from engineshed.client.operations.libraries import LibraryOperations
from engineshed.client.operations.media import MediaOperations
from engineshed.client.operations.models import ModelOperations
from engineshed.client.operations.recognition import RecognitionOperations
from engineshed.client.operations.uploads import UploadOperations


class Operations(CallerOperations, ModelOperations, LibraryOperations, JobOperations, RecognitionOperations,
                 EmbeddingOperations, LabelingOperations, UploadOperations, MediaOperations):
    """The API, operation by operation. Use :class:`engineshed.client.Client` or :class:`~engineshed.client.AsyncClient`."""
