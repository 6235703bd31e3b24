"""The schema built with default settings, for `strawberry export-schema gateway.schema.export:schema`."""

from gateway.schema.root import build_schema
from gateway.settings import Settings

schema = build_schema(Settings())
