"""The GetIdentifiers request as the engine-developer training guide publishes it: what an external engine sends
to page a library, used verbatim by tests and benchmarks."""

from __future__ import annotations

from pathlib import Path

# The GetIdentifiers operation of the established API's training guide, verbatim; only its library ID
# literal is swapped for the bench library's. Read from the shared data directory when it is next to the
# checkout, else this copy.
PUBLISHED_OPERATION = Path(__file__).resolve().parents[2] / "shared" / "data" / "veritone-ops" / "038-get-identifiers-for-training.graphql"
PUBLISHED_LIBRARY_ID = "17a86304-9a82-4943-a06e-a2eb1c2506cc"
GET_IDENTIFIERS = """query GetIdentifiers($identifierTypeId: ID, $offset: Int = 0, $limit: Int = 25) {
  library(id: "17a86304-9a82-4943-a06e-a2eb1c2506cc") {
    id
    name
    entities(identifierTypeId: $identifierTypeId, offset: $offset, limit: $limit) {
      count
      records{
        id
        name
        jsondata
        identifiers(identifierTypeId: $identifierTypeId, limit: $limit) {
          count
          records {
            id
            url
            jsondata
          }
        }
      }
    }
  }
}
"""


def published_operation(library_id: str) -> str:
    text = PUBLISHED_OPERATION.read_text() if PUBLISHED_OPERATION.exists() else GET_IDENTIFIERS
    if PUBLISHED_LIBRARY_ID not in text:
        raise ValueError("the published GetIdentifiers operation no longer names its library literally")
    return text.replace(PUBLISHED_LIBRARY_ID, library_id)
