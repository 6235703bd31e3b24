"""updateLibraryEngineModel writes a model's fields and its version fields (name, aliases...) in one
transaction: when the second part is refused by the database, the first is not written either."""

from __future__ import annotations

import uuid

from tests.conftest import Org, Stack

REFUSE = """CREATE OR REPLACE FUNCTION test_refuse_alias() RETURNS trigger AS $$
BEGIN RAISE EXCEPTION 'refused by the test'; END $$ LANGUAGE plpgsql;
CREATE TRIGGER test_refuse_alias BEFORE UPDATE ON library_engine_models FOR EACH ROW
WHEN ('refuse-me' = ANY(NEW.aliases)) EXECUTE FUNCTION test_refuse_alias()"""
UNDO = "DROP TRIGGER IF EXISTS test_refuse_alias ON library_engine_models; DROP FUNCTION IF EXISTS test_refuse_alias()"
UPDATE = """mutation($id: ID!) { updateLibraryEngineModel(input: {id: $id, trainStatus: complete, accuracy: 0.7,
  name: "v2", aliases: ["refuse-me"]}) { id trainStatus name aliases } }"""


def test_a_refused_version_part_leaves_the_model_unwritten(stack: Stack, org: Org) -> None:
    library_id = org.create_library("atomic", "objects")
    model_id = org.client.query(
        'mutation($l: ID!) { createLibraryEngineModel(input: {libraryId: $l, engineId: "engineshed-gallery", '
        'trainStatus: running}) { id } }', l=library_id).ok()["createLibraryEngineModel"]["id"]
    stack.db.execute(REFUSE)
    try:
        reply = org.client.query(UPDATE, id=model_id)
    finally:
        stack.db.execute(UNDO)
    assert reply.body.get("errors"), reply.body
    row = stack.db.fetch("SELECT train_status, accuracy, name, aliases, is_default FROM library_engine_models WHERE id = $1",
                         uuid.UUID(model_id))[0]
    assert (row["train_status"], row["accuracy"], row["name"], list(row["aliases"]), row["is_default"]) == (
        "running", None, None, [], False)
    # and the same update without the refusal is written whole
    done = org.client.query(UPDATE.replace("refuse-me", "stable"), id=model_id).ok()["updateLibraryEngineModel"]
    assert (done["trainStatus"], done["name"]) == ("complete", "v2") and "stable" in done["aliases"]
