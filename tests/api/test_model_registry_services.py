"""The service functions the engines and pull branches call: resolve_model, default_model, model_bytes,
register_system_model (idempotent)."""

from __future__ import annotations

import hashlib

import pytest

from gateway.errors import InvalidInput, NotFound
from sampledata import onnx_models as m
from tests.api.model_registry_helpers import register_system, with_resources
from tests.api.test_model_registry import ready, register_form, trial_worker  # noqa: F401 - the module's worker


def test_resolve_model_reads_name_number_default_and_alias_and_only_ready_versions(org, stack, trial_worker):  # noqa: F811
    from gateway.services.models import registry as models

    register_form(org, "resolvable", m.conv_net(seed=51), "a.onnx", manifest=m.normalised_manifest()).ok()
    second = m.conv_net(seed=52)
    register_form(org, "resolvable", second, "b.onnx", manifest=m.normalised_manifest(), aliases=["candidate"]).ok()
    ready(org.client, "resolvable", 1)
    ready(org.client, "resolvable", 2)
    register_form(org, "resolvable", m.conv_net(nan=True), "c.onnx", manifest=m.normalised_manifest()).ok()
    ready(org.client, "resolvable", 3)  # failed: NaN outputs

    async def work(res):
        found = {ref: (await models.resolve_model(res, org.id, ref)).version
                 for ref in ("resolvable", "resolvable@default", "resolvable@2", "resolvable@candidate")}
        errors = {}
        for ref, application in (("resolvable@3", None), ("resolvable@9", None), ("nobody", None),
                                 ("resolvable", "auto_tagging"), ("bad name@x", None), ("resolvable@nope", None)):
            try:
                await models.resolve_model(res, org.id, ref, application)
            except (InvalidInput, NotFound) as exc:
                errors[ref + (f" as {application}" if application else "")] = (exc.code, exc.message)
        version = await models.resolve_model(res, org.id, "resolvable@2", "embedding")
        data = await models.model_bytes(res, version)
        return found, errors, version, data

    found, errors, version, data = with_resources(stack, work)
    assert found == {"resolvable": 1, "resolvable@default": 1, "resolvable@2": 2, "resolvable@candidate": 2}
    assert errors["resolvable@3"][0] == "invalid_input" and "failed" in errors["resolvable@3"][1]
    assert errors["resolvable@9"][0] == errors["nobody"][0] == errors["resolvable@nope"][0] == "not_found"
    assert errors["resolvable as auto_tagging"][0] == "invalid_input"
    assert errors["bad name@x"][0] == "invalid_input"
    assert hashlib.sha256(data).hexdigest() == version.sha256 and version.manifest["output"]["dimension"] == 16
    assert version.organization_id == org.id and version.aliases == ["candidate"]


def test_register_system_model_validates_runs_the_trial_inline_and_is_idempotent(stack):
    from gateway.services.models import registry as models
    from gateway.services.models.packages import PackageError

    register_system(stack, "registry-idempotent")
    again = register_system(stack, "registry-idempotent")
    assert again == "registry-idempotent"
    rows = stack.db.fetch("SELECT v.version, v.status, v.provider, v.throughput_batch FROM model_versions v "
                          "JOIN models m ON m.id = v.model_id WHERE m.org_id IS NULL AND m.name = 'registry-idempotent'")
    assert [(r["version"], r["status"], r["provider"], r["throughput_batch"]) for r in rows] == [(1, "ready", "CPUExecutionProvider", 32)]

    async def refused(res):
        with pytest.raises(PackageError) as info:
            await models.register_system_model(res, name="registry-nan", application="embedding",
                                               model_bytes=m.conv_net(nan=True), manifest=m.normalised_manifest(),
                                               source={"package": "t"})
        return info.value.message

    assert "trial inference failed" in with_resources(stack, refused)
    assert stack.db.fetchval("SELECT count(*) FROM models WHERE name = 'registry-nan'") == 0


def test_default_model_is_none_for_what_has_no_system_default(stack, org):
    from gateway.services.models import registry as models

    async def work(res):
        return (await models.default_model(res, org.id, "auto_tagging", "image"),
                await models.default_model(res, org.id, "auto_annotation", "image"))

    assert with_resources(stack, work) == (None, None)
