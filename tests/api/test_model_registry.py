"""Registering models through the API: both multipart styles and URLs, the worker's trial inference,
versions, aliases, content-addressed storage, listing, updates, deletes and tenancy."""

from __future__ import annotations

import hashlib
import json
import sys
from collections.abc import Iterator

import pytest

from sampledata import onnx_models as m
from tests.api.conftest import Bucket, assert_clean_error_text
from tests.conftest import Org, Process, Stack, make_org
from tests.graphql_client import GraphQLClient
from tests.support.waits import wait_for

FIELDS = """id name version ref application system status error description labels classLabels dimension aliases
    manifest sha256 sizeBytes source throughput throughputBatch provider validation createdDateTime"""
REGISTER = f"""mutation($input: RegisterModel!) {{ registerModel(input: $input) {{ {FIELDS} }} }}"""
MODEL = f"""query($n: String!, $v: Int, $a: String) {{ model(name: $n, version: $v, alias: $a) {{ {FIELDS} }} }}"""


@pytest.fixture(scope="module")
def trial_worker(stack: Stack, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Process]:
    """One worker for the module: it runs the trial inferences of what the tests register."""
    env = dict(stack.env, ENGINESHED_ONNX_PROVIDER="cpu")
    log_dir = tmp_path_factory.mktemp("registry-worker")
    process = Process([sys.executable, "-m", "gateway.cli", "worker", "--id", "registry-trials"], env, log_dir / "worker.log")
    yield process
    process.stop()


def register_form(org: Org, name: str, data: bytes, filename: str, application: str = "embedding",
                  manifest: dict | None = None, **extra: object):
    variables = {"input": {"name": name, "application": application, "manifest": manifest, **extra}}
    return org.client.upload_form(REGISTER, data, "application/octet-stream", filename=filename, variables=variables)


def register_spec(org: Org, name: str, data: bytes, filename: str, application: str = "embedding",
                  manifest: dict | None = None, **extra: object):
    variables = {"input": {"name": name, "application": application, "manifest": manifest, "file": None, **extra}}
    return org.client.upload_spec(REGISTER, variables, {"input.file": (data, "application/zip")}, filename=filename)


def ready(client: GraphQLClient, name: str, version: int) -> dict:
    def check() -> dict | None:
        model = client.query(MODEL, n=name, v=version).ok()["model"]
        return model if model["status"] != "validating" else None

    return wait_for(check, timeout=90, what=f"the trial of {name}@{version}")


def registry_state(stack: Stack, bucket: Bucket) -> tuple:
    """Every registry row and every model object: what a refused package must leave exactly as it was."""
    counts = tuple(stack.db.fetchval(f"SELECT count(*) FROM {t}") for t in ("models", "model_versions", "model_aliases", "model_blobs"))
    pending = stack.db.fetchval("SELECT count(*) FROM blob_deletions WHERE storage_key LIKE 'models/%'")
    return counts, pending, sorted(bucket.keys("models/"))


# ------------------------------------------------------------------ good packages


def test_an_embedding_conv_net_registers_by_the_plain_form_and_a_worker_makes_it_ready(org, bucket, trial_worker):
    net = m.conv_net(dimension=16)
    reply = register_form(org, "tiny-embedder", net, "tiny.onnx", manifest=m.normalised_manifest(),
                          description="a test net", labels={"team": "vision"})
    created = reply.ok()["registerModel"]
    assert (created["name"], created["version"], created["status"], created["system"]) == ("tiny-embedder", 1, "validating", False)
    # What the graph states was read from it; what it does not (the value mapping) came from the manifest.
    assert created["manifest"]["input"] == {"name": "pixels", "layout": "NCHW", "height": 32, "width": 32, "channels": 3,
                                            "color_order": "RGB", "mean": m.MEAN, "std": m.STD}
    assert created["manifest"]["output"] == {"name": "embedding", "dimension": 16}
    assert created["dimension"] == 16 and created["aliases"] == ["default"]
    assert created["labels"] == {"team": "vision"} and created["description"] == "a test net"
    assert created["source"]["file"] == "tiny.onnx" and created["source"]["sha256"] == hashlib.sha256(net).hexdigest()

    done = ready(org.client, "tiny-embedder", 1)
    assert done["status"] == "ready" and done["error"] is None
    assert done["provider"] == "CPUExecutionProvider" and done["throughputBatch"] == 32 and done["throughput"] > 0
    # The stored object is the checked ONNX file, under its digest.
    key = f"models/sha256/{done['sha256']}.onnx"
    assert key in bucket.keys("models/")
    stored = bucket.read(key)
    assert hashlib.sha256(stored).hexdigest() == done["sha256"] and len(stored) == done["sizeBytes"]


def test_a_classifier_archive_with_its_label_list_registers_by_the_multipart_spec(org, trial_worker):
    package = m.classifier_package(["cat", "dog", "bird"])
    created = register_spec(org, "pets", package, "pets.zip", application="auto_tagging").ok()["registerModel"]
    assert created["classLabels"] == ["cat", "dog", "bird"] and created["dimension"] == 3
    assert created["manifest"]["output"] == {"name": "logits", "dimension": 3, "kind": "logits"}
    assert created["source"]["format"] == "archive"
    done = ready(org.client, "pets", 1)
    assert done["status"] == "ready", done


def test_a_tar_gz_package_registers_from_a_url(stack, private_fetch_gateway, file_server, trial_worker):
    org = make_org(stack, private_fetch_gateway)
    try:
        url = file_server.add("/models/pets.tar.gz", m.classifier_package(["a", "b"], fmt="tar"), "application/gzip")
        reply = org.client.query(REGISTER, input={"name": "remote-pets", "application": "auto_tagging", "url": url})
        created = reply.ok()["registerModel"]
        assert created["source"]["file"] == "pets.tar.gz" and created["classLabels"] == ["a", "b"]
        assert ready(org.client, "remote-pets", 1)["status"] == "ready"
    finally:
        org.close()


def test_a_tfjs_graph_model_is_converted_by_the_projects_converter_and_runs(org, trial_worker):
    created = register_spec(org, "tfjs-net", m.tfjs_package(dimension=8), "web_model.zip").ok()["registerModel"]
    assert created["source"]["format"] == "tfjs" and created["dimension"] == 8
    # The graph's NHWC input was read from it; the value range came from the package's manifest.
    assert created["manifest"]["input"] == {"name": "input", "layout": "NHWC", "height": 32, "width": 32, "channels": 3,
                                            "color_order": "RGB", "range": [-1, 1]}
    done = ready(org.client, "tfjs-net", 1)
    assert done["status"] == "ready" and done["throughput"] > 0, done


def test_a_url_to_a_private_address_is_refused_by_the_outbound_rules(org, stack, bucket):
    before = registry_state(stack, bucket)
    reply = org.client.query(REGISTER, input={"name": "x", "application": "embedding", "url": "http://127.0.0.1:9/x.onnx"})
    assert reply.error_code == "invalid_input" and "non-public" in reply.error_message
    assert registry_state(stack, bucket) == before


def test_external_data_inside_the_package_is_folded_into_one_onnx_file(org, trial_worker):
    weights = m.external_data_weights()
    package = m.zip_of({"model.onnx": m.external_data_net("weights/conv_w.bin"), "weights/conv_w.bin": weights,
                        "manifest.json": json.dumps(m.normalised_manifest()).encode()})
    created = register_form(org, "folded", package, "folded.zip").ok()["registerModel"]
    assert ready(org.client, "folded", 1)["status"] == "ready"
    # The same weights as the self-contained net: the same bytes once folded, so the same digest.
    plain = register_form(org, "plain", m.conv_net(), "plain.onnx", manifest=m.normalised_manifest()).ok()["registerModel"]
    assert created["sha256"] == plain["sha256"]


def test_a_model_that_passes_the_checks_but_not_its_trial_is_failed_with_the_reason(org, trial_worker):
    register_form(org, "nan-net", m.conv_net(nan=True), "nan.onnx", manifest=m.normalised_manifest()).ok()
    done = ready(org.client, "nan-net", 1)
    assert done["status"] == "failed" and "not finite" in done["error"], done
    reply = org.client.query("query { models(name: \"nan-net\", status: failed) { totalCount } }").ok()
    assert reply["models"]["totalCount"] == 1


# ------------------------------------------------------------------ versions, aliases, storage


def test_a_default_that_failed_its_trial_gives_way_and_no_alias_points_at_a_failed_version(org, trial_worker):
    register_form(org, "shaky", m.conv_net(nan=True), "nan.onnx", manifest=m.normalised_manifest()).ok()
    assert ready(org.client, "shaky", 1)["status"] == "failed"
    second = register_form(org, "shaky", m.conv_net(seed=8), "good.onnx", manifest=m.normalised_manifest()).ok()["registerModel"]
    assert second["aliases"] == ["default"]  # the failed first version held it; a version that can run takes it
    assert ready(org.client, "shaky", 2)["status"] == "ready"
    assert org.client.query(MODEL, n="shaky").ok()["model"]["version"] == 2
    refused = org.client.query('mutation { setModelAlias(name: "shaky", version: 1, alias: "stable") { version } }')
    assert refused.error_code == "not_allowed" and "failed its trial" in refused.error_message
    # Nothing holds the failed version now: it can go.
    org.client.query('mutation { deleteModelVersion(name: "shaky", version: 1) { id } }').ok()


def test_a_default_whose_trial_fails_after_a_later_version_is_ready_moves_to_it(org, stack, trial_worker):
    """The other order: v1 (default) still validating when v2 is registered and passes; v1 then fails. The
    timing is made by hand: v1 is put back to validating under a trial lease no worker can take."""
    from storage.queries import models as model_q

    for seed in (21, 22):
        register_form(org, "late-fail", m.conv_net(seed=seed), f"{seed}.onnx", manifest=m.normalised_manifest()).ok()
        assert ready(org.client, "late-fail", seed - 20)["status"] == "ready"
    ids = {r["version"]: r["id"] for r in stack.db.fetch(
        "SELECT v.version, v.id FROM model_versions v JOIN models mo ON mo.id = v.model_id WHERE mo.org_id = $1 AND mo.name = 'late-fail'",
        org.id)}
    stack.db.execute("UPDATE model_versions SET status = 'validating', trial_owner = 'test-hold', "
                     "trial_expires_at = now() + interval '1 hour' WHERE id = $1", ids[1])
    assert org.client.query(MODEL, n="late-fail").ok()["model"]["version"] == 1

    async def fail_first() -> bool:
        async with stack.db.pool.acquire() as conn:
            return await model_q.finish_trial(conn, ids[1], "test-hold", status="failed", error="not finite", throughput=None,
                                              batch=None, provider=None, validation={})

    assert stack.db.run(fail_first()) is True
    assert org.client.query(MODEL, n="late-fail").ok()["model"]["version"] == 2


def test_a_version_that_passes_its_trial_takes_default_from_a_failed_one(org, stack, trial_worker):
    """The order trials usually finish in: v1 (default) fails while v2 is still validating; v2 then passes."""
    from storage.queries import models as model_q

    for seed in (23, 24):
        register_form(org, "late-pass", m.conv_net(seed=seed), f"{seed}.onnx", manifest=m.normalised_manifest()).ok()
        assert ready(org.client, "late-pass", seed - 22)["status"] == "ready"
    ids = {r["version"]: r["id"] for r in stack.db.fetch(
        "SELECT v.version, v.id FROM model_versions v JOIN models mo ON mo.id = v.model_id WHERE mo.org_id = $1 AND mo.name = 'late-pass'",
        org.id)}
    stack.db.execute("UPDATE model_versions SET status = 'failed', error = 'not finite' WHERE id = $1", ids[1])
    stack.db.execute("UPDATE model_versions SET status = 'validating', trial_owner = 'test-hold', "
                     "trial_expires_at = now() + interval '1 hour' WHERE id = $1", ids[2])
    assert org.client.query(MODEL, n="late-pass", a="default").ok()["model"]["version"] == 1

    async def pass_second() -> bool:
        async with stack.db.pool.acquire() as conn:
            return await model_q.finish_trial(conn, ids[2], "test-hold", status="ready", error=None, throughput=1.0,
                                              batch=1, provider="CPUExecutionProvider", validation={})

    assert stack.db.run(pass_second()) is True
    assert org.client.query(MODEL, n="late-pass").ok()["model"]["version"] == 2


def test_registering_a_name_again_makes_the_next_version_and_default_moves_only_when_asked(org, trial_worker):
    register_form(org, "emb", m.conv_net(seed=1), "a.onnx", manifest=m.normalised_manifest()).ok()
    second = register_form(org, "emb", m.conv_net(seed=2), "b.onnx", manifest=m.normalised_manifest()).ok()["registerModel"]
    assert second["version"] == 2 and second["aliases"] == []
    assert org.client.query(MODEL, n="emb").ok()["model"]["version"] == 1  # the default
    moved = org.client.query('mutation { setModelAlias(name: "emb", version: 2, alias: "default") { version aliases } }').ok()
    assert moved["setModelAlias"] == {"version": 2, "aliases": ["default"]}
    assert org.client.query(MODEL, n="emb").ok()["model"]["version"] == 2
    assert org.client.query(MODEL, n="emb", v=1).ok()["model"]["aliases"] == []
    # Another alias works the same way; a third registration may take aliases at once.
    org.client.query('mutation { setModelAlias(name: "emb", version: 1, alias: "stable") { version } }').ok()
    assert org.client.query(MODEL, n="emb", a="stable").ok()["model"]["version"] == 1
    third = register_form(org, "emb", m.conv_net(seed=3), "c.onnx", manifest=m.normalised_manifest(),
                          aliases=["candidate"]).ok()["registerModel"]
    assert (third["version"], third["aliases"]) == (3, ["candidate"])
    # Exactly one version holds `default` throughout.
    assert sum("default" in org.client.query(MODEL, n="emb", v=v).ok()["model"]["aliases"] for v in (1, 2, 3)) == 1


def test_a_deleted_version_number_is_never_given_out_again(org, other_org):
    """A script that pinned `name@2` must not silently get other bytes: numbers only grow, also after the
    newest version, or the whole model, is deleted."""
    for seed in (11, 12):
        register_form(org, "renumbered", m.conv_net(seed=seed), "x.onnx", manifest=m.normalised_manifest()).ok()
    org.client.query('mutation { deleteModelVersion(name: "renumbered", version: 2) { id } }').ok()
    third = register_form(org, "renumbered", m.conv_net(seed=13), "y.onnx", manifest=m.normalised_manifest()).ok()["registerModel"]
    assert third["version"] == 3
    assert org.client.query(MODEL, n="renumbered", v=2).error_code == "not_found"
    # The last versions gone, the model goes; the name taken again continues the numbering.
    org.client.query('mutation { setModelAlias(name: "renumbered", version: 3, alias: "default") { version } }').ok()
    for v in (1, 3):
        org.client.query(f'mutation {{ deleteModelVersion(name: "renumbered", version: {v}) {{ id }} }}').ok()
    assert org.client.query(MODEL, n="renumbered").error_code == "not_found"
    again = register_form(org, "renumbered", m.conv_net(seed=14), "z.onnx", manifest=m.normalised_manifest()).ok()["registerModel"]
    assert (again["version"], again["aliases"]) == (4, ["default"])
    # Each organization counts its own names.
    theirs = register_form(other_org, "renumbered", m.conv_net(seed=15), "w.onnx", manifest=m.normalised_manifest()).ok()
    assert theirs["registerModel"]["version"] == 1


def test_another_application_under_the_same_name_is_refused(org, stack, bucket):
    register_form(org, "one-kind", m.conv_net(), "a.onnx", manifest=m.normalised_manifest()).ok()
    before = registry_state(stack, bucket)
    reply = register_form(org, "one-kind", m.classifier_package(["a", "b"]), "c.zip", application="auto_tagging")
    assert reply.error_code == "invalid_input" and "embedding model" in reply.error_message
    assert registry_state(stack, bucket) == before


def test_the_same_bytes_are_stored_once_and_deleted_with_the_last_version_using_them(org, stack, bucket):
    net = m.conv_net(seed=41)
    a = register_form(org, "twin-a", net, "a.onnx", manifest=m.normalised_manifest()).ok()["registerModel"]
    b = register_form(org, "twin-b", net, "b.onnx", manifest=m.normalised_manifest()).ok()["registerModel"]
    key = f"models/sha256/{a['sha256']}.onnx"
    assert a["sha256"] == b["sha256"] and bucket.keys(key) == [key]
    assert stack.db.fetchval("SELECT count(*) FROM model_blobs WHERE sha256 = $1", a["sha256"]) == 1
    org.client.query('mutation { deleteModelVersion(name: "twin-a", version: 1) { id } }').ok()
    assert bucket.keys(key) == [key]  # twin-b still uses it
    org.client.query('mutation { deleteModelVersion(name: "twin-b", version: 1) { id } }').ok()
    assert bucket.keys(key) == []
    assert stack.db.fetchval("SELECT count(*) FROM model_blobs WHERE sha256 = $1", a["sha256"]) == 0
    assert org.client.query(MODEL, n="twin-b").error_code == "not_found"


def test_a_version_an_alias_a_library_engine_model_or_a_job_points_at_is_not_deleted(org, stack):
    for seed in (5, 6):
        register_form(org, "held", m.conv_net(seed=seed), "x.onnx", manifest=m.normalised_manifest()).ok()
    delete = 'mutation($v: Int!) { deleteModelVersion(name: "held", version: $v) { id message } }'
    reply = org.client.query(delete, v=1)
    assert reply.error_code == "not_allowed" and "default" in reply.error_message
    org.client.query('mutation { setModelAlias(name: "held", version: 2, alias: "default") { version } }').ok()
    # What the engines branch records: a trained model that used version 2, and a job that uses it.
    v2 = stack.db.fetchval("SELECT v.id FROM model_versions v JOIN models m ON m.id = v.model_id "
                           "WHERE m.org_id = $1 AND m.name = 'held' AND v.version = 2", org.id)
    library_id = org.create_library("held-lib")
    stack.db.execute("INSERT INTO library_engine_models (id, org_id, library_id, engine_id, library_version, model_version_id) "
                     "VALUES (gen_random_uuid(), $1, $2, 'test-sleeper', 0, $3)", org.id, library_id, v2)
    reply = org.client.query('mutation { setModelAlias(name: "held", version: 1, alias: "default") { version } }').ok()
    reply = org.client.query(delete, v=2)
    assert reply.error_code == "not_allowed" and "library engine model" in reply.error_message
    stack.db.execute("UPDATE library_engine_models SET model_version_id = NULL WHERE model_version_id = $1", v2)
    stack.db.execute("INSERT INTO jobs (id, org_id, model_version_id) VALUES (gen_random_uuid(), $1, $2)", org.id, v2)
    reply = org.client.query(delete, v=2)
    assert reply.error_code == "not_allowed" and "job" in reply.error_message
    stack.db.execute("UPDATE jobs SET model_version_id = NULL WHERE model_version_id = $1", v2)
    assert org.client.query(delete, v=2).ok()["deleteModelVersion"]["message"] == "model held@2 deleted"
    assert org.client.query(MODEL, n="held", v=2).error_code == "not_found"


# ------------------------------------------------------------------ listing and updating


def test_models_lists_pages_with_filters_and_totals(org):
    for name, app, data, tags in (
        ("list-a", "embedding", m.conv_net(seed=11), {"team": "faces"}),
        ("list-b", "embedding", m.conv_net(seed=12), {"team": "cars"}),
    ):
        register_form(org, name, data, f"{name}.onnx", application=app, manifest=m.normalised_manifest(), labels=tags).ok()
    register_form(org, "list-c", m.classifier_package(["x", "y"]), "c.zip", application="auto_tagging").ok()
    page = "query($a: ModelApplication, $l: JSONData, $o: Int, $n: Int) { models(application: $a, labels: $l, system: false, " \
           "offset: $o, limit: $n, orderBy: name, orderDirection: asc) { offset limit count totalCount records { name version " \
           "application system dimension status } } }"
    everything = org.client.query(page, o=0, n=10).ok()["models"]
    assert [r["name"] for r in everything["records"]] == ["list-a", "list-b", "list-c"]
    assert everything["totalCount"] == 3 and everything["count"] == 3
    second = org.client.query(page, o=1, n=1).ok()["models"]
    assert (second["offset"], second["limit"], second["count"], second["totalCount"]) == (1, 1, 1, 3)
    assert second["records"][0]["name"] == "list-b"
    embedding = org.client.query(page, a="embedding", o=0, n=10).ok()["models"]
    assert [r["name"] for r in embedding["records"]] == ["list-a", "list-b"] and embedding["records"][0]["dimension"] == 16
    faces = org.client.query(page, l={"team": "faces"}, o=0, n=10).ok()["models"]
    assert [r["name"] for r in faces["records"]] == ["list-a"]
    assert org.client.query(page, o=0, n=100000).error_code == "invalid_input"


def test_update_model_changes_description_labels_and_moves_aliases(org):
    register_form(org, "upd", m.conv_net(seed=21), "a.onnx", manifest=m.normalised_manifest(), labels={"a": "1"}).ok()
    register_form(org, "upd", m.conv_net(seed=22), "b.onnx", manifest=m.normalised_manifest()).ok()
    reply = org.client.query('mutation { updateModel(input: {name: "upd", description: "better", labels: {stage: "prod"}, '
                             'aliases: [{alias: "default", version: 2}, {alias: "old", version: 1}]}) '
                             '{ version description labels aliases } }').ok()["updateModel"]
    assert reply == {"version": 2, "description": "better", "labels": {"stage": "prod"}, "aliases": ["default"]}
    assert org.client.query(MODEL, n="upd", a="old").ok()["model"]["version"] == 1
    bad = org.client.query('mutation { updateModel(input: {name: "upd", aliases: [{alias: "x", version: 9}]}) { version } }')
    assert bad.error_code == "not_found"
    assert org.client.query(MODEL, n="upd", a="x").error_code == "not_found"  # nothing of the failed update stuck


def test_bad_names_aliases_and_references_are_invalid_input(org):
    for name in ("", "has space", "at@sign", "x" * 200):
        reply = register_form(org, name, m.conv_net(), "a.onnx", manifest=m.normalised_manifest())
        assert reply.error_code == "invalid_input", (name, reply.body)
    reply = register_form(org, "okname", m.conv_net(), "a.onnx", manifest=m.normalised_manifest(), aliases=["123"])
    assert reply.error_code == "invalid_input" and "alias" in reply.error_message
    assert org.client.query(MODEL, n="okname", v=1, a="default").error_code == "invalid_input"


# ------------------------------------------------------------------ tenancy and system models


def test_another_organizations_models_are_invisible(org, other_org):
    register_form(org, "secret", m.conv_net(seed=31), "a.onnx", manifest=m.normalised_manifest()).ok()
    assert other_org.client.query(MODEL, n="secret").error_code == "not_found"
    listed = other_org.client.query('query { models(name: "secret") { totalCount } }').ok()
    assert listed["models"]["totalCount"] == 0
    for doc in ('mutation { updateModel(input: {name: "secret", description: "mine"}) { id } }',
                'mutation { setModelAlias(name: "secret", version: 1, alias: "default") { id } }',
                'mutation { deleteModelVersion(name: "secret", version: 1) { id } }'):
        assert other_org.client.query(doc).error_code == "not_found", doc
    # The other organization may use the same name for its own model.
    mine = register_form(other_org, "secret", m.conv_net(seed=32), "b.onnx", manifest=m.normalised_manifest()).ok()
    assert mine["registerModel"]["version"] == 1
    assert org.client.query(MODEL, n="secret").ok()["model"]["description"] == ""


def test_a_read_token_may_list_but_not_register(org):
    register_form(org, "listed", m.conv_net(seed=33), "a.onnx", manifest=m.normalised_manifest()).ok()
    reader = org.client_for("read")
    listed = reader.query('query { models(name: "listed") { totalCount records { name version } } }').ok()["models"]
    assert listed == {"totalCount": 1, "records": [{"name": "listed", "version": 1}]}
    reply = reader.upload_form(REGISTER, m.conv_net(), "application/octet-stream", filename="a.onnx",
                               variables={"input": {"name": "r", "application": "embedding", "manifest": m.normalised_manifest()}})
    assert reply.error_code == "not_allowed"


def test_a_system_model_is_visible_to_every_organization_and_read_only(org, other_org, system_model):
    for o in (org, other_org):
        found = o.client.query(MODEL, n=system_model).ok()["model"]
        assert found["system"] is True and found["status"] == "ready" and found["provider"] == "CPUExecutionProvider"
        assert found["source"]["package"] == "registry-tests" and found["source"]["licence"] == "MIT"
        listed = o.client.query('query($n: String) { models(system: true, name: $n) { totalCount } }', n=system_model).ok()
        assert listed["models"]["totalCount"] == 1
    for doc in (f'mutation {{ updateModel(input: {{name: "{system_model}", description: "mine"}}) {{ id }} }}',
                f'mutation {{ setModelAlias(name: "{system_model}", version: 1, alias: "mine") {{ id }} }}',
                f'mutation {{ deleteModelVersion(name: "{system_model}", version: 1) {{ id }} }}'):
        reply = org.client.query(doc)
        assert reply.error_code == "not_allowed" and "read-only" in reply.error_message, doc
    # An organization's own model of the same name hides the system model for that organization only.
    register_form(org, system_model, m.conv_net(seed=77), "own.onnx", manifest=m.normalised_manifest()).ok()
    assert org.client.query(MODEL, n=system_model).ok()["model"]["system"] is False
    assert other_org.client.query(MODEL, n=system_model).ok()["model"]["system"] is True


def test_error_replies_carry_no_internals(org):
    reply = register_form(org, "leaky", b"\x00\x01garbage", "x.onnx", manifest=m.normalised_manifest())
    assert reply.error_code == "invalid_input"
    assert_clean_error_text(reply.body)


@pytest.fixture(scope="module")
def system_model(stack: Stack) -> str:
    """A system model registered the way `engineshed models pull` does, through register_system_model."""
    from tests.api.model_registry_helpers import register_system

    return register_system(stack, "registry-test-system")


def test_concurrent_registrations_number_versions_once_each_and_share_one_blob(org, stack, bucket):
    from concurrent.futures import ThreadPoolExecutor

    net = m.conv_net(seed=61)

    def register(i: int) -> dict:
        client = GraphQLClient(org.gateway.url, org.token)
        try:
            variables = {"input": {"name": "race" if i % 2 else "race-other", "application": "embedding",
                                   "manifest": m.normalised_manifest()}}
            return client.upload_form(REGISTER, net, "application/octet-stream", filename="r.onnx", variables=variables).ok()["registerModel"]
        finally:
            client.close()

    with ThreadPoolExecutor(6) as pool:
        done = list(pool.map(register, range(6)))
    by_name: dict[str, list[int]] = {}
    for version in done:
        by_name.setdefault(version["name"], []).append(version["version"])
    assert {k: sorted(v) for k, v in by_name.items()} == {"race": [1, 2, 3], "race-other": [1, 2, 3]}
    sha = done[0]["sha256"]
    assert {v["sha256"] for v in done} == {sha} and bucket.keys(f"models/sha256/{sha}") == [f"models/sha256/{sha}.onnx"]
    assert stack.db.fetchval("SELECT count(*) FROM model_blobs WHERE sha256 = $1", sha) == 1
    for name in ("race", "race-other"):
        holders = [v for v in (1, 2, 3) if "default" in org.client.query(MODEL, n=name, v=v).ok()["model"]["aliases"]]
        assert holders == [1]


def test_a_delete_racing_a_registration_of_the_same_bytes_never_leaves_a_version_without_its_object(org, stack, bucket):
    from concurrent.futures import ThreadPoolExecutor

    net = m.conv_net(seed=71)
    delete = 'mutation($n: String!) { deleteModelVersion(name: $n, version: 1) { id } }'

    def register(name: str) -> dict:
        client = GraphQLClient(org.gateway.url, org.token)
        try:
            variables = {"input": {"name": name, "application": "embedding", "manifest": m.normalised_manifest()}}
            return client.upload_form(REGISTER, net, "application/octet-stream", filename="r.onnx", variables=variables).ok()["registerModel"]
        finally:
            client.close()

    def remove(name: str) -> None:
        client = GraphQLClient(org.gateway.url, org.token)
        try:
            client.query(delete, n=name).ok()
        finally:
            client.close()

    sha = register("race-del-0")["sha256"]
    key = f"models/sha256/{sha}.onnx"
    with ThreadPoolExecutor(2) as pool:
        for round_ in range(1, 6):
            # The only version using the bytes goes while the next registration of the same bytes arrives.
            gone = pool.submit(remove, f"race-del-{round_ - 1}")
            made = pool.submit(register, f"race-del-{round_}")
            gone.result()
            assert made.result()["sha256"] == sha
            assert bucket.keys(key) == [key], f"round {round_}: a version points at a deleted object"
            assert stack.db.fetchval("SELECT count(*) FROM model_blobs WHERE sha256 = $1", sha) == 1
    remove("race-del-5")
    assert bucket.keys(key) == []
