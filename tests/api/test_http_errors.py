"""The router's own refusals (an unknown path, a method a route does not serve) are JSON in the shape of the
API the path belongs to, with the right status and an Allow header; HEAD works wherever GET does."""

from __future__ import annotations

import uuid

import httpx
import pytest


@pytest.fixture
def http(org, gateway):
    with httpx.Client(base_url=gateway.url, headers={"Authorization": f"Bearer {org.token}"}, timeout=30) as client:
        yield client


@pytest.mark.parametrize("path", ["/nope", "/v1/", "/v1/trainings/x/extra", "/v1/trainings/..%2F..%2Fetc%2Fpasswd/more", "/healthz/x"])
def test_an_unknown_path_is_a_json_404(http, path):
    response = http.get(path)
    assert response.status_code == 404 and response.headers["content-type"].startswith("application/json")
    assert response.json()["error"]["code"] == "not_found"


def test_an_unknown_path_under_v2_answers_in_seed_004s_shape(http, org):
    response = http.get(f"/v2/{org.id}")
    assert response.status_code == 404
    assert response.json() == {"error_code": "not_found", "error_msg": f"no such path: /v2/{org.id}"}


@pytest.mark.parametrize("method", ["PUT", "DELETE", "PATCH"])
def test_a_method_graphql_does_not_serve_is_a_json_405_in_graphqls_shape(http, method):
    response = http.request(method, "/v3/graphql", json={"query": "{ me { id } }"})
    assert response.status_code == 405
    assert set(response.headers["allow"].replace(" ", "").split(",")) >= {"GET", "POST"}
    (error,) = response.json()["errors"]
    assert error["extensions"]["code"] == "not_allowed" and response.json()["data"] is None


def test_a_method_health_does_not_serve_is_a_json_405(http):
    response = http.post("/healthz")
    assert response.status_code == 405 and response.json()["error"]["code"] == "not_allowed"


def test_head_works_wherever_get_does(http):
    listed = http.head("/v1/trainings/")
    assert listed.status_code == 200 and listed.content == b""
    assert listed.headers["content-type"].startswith("application/json")
    missing = http.head(f"/v1/trainings/{uuid.uuid4()}")
    assert missing.status_code == 404
    assert http.request("OPTIONS", "/v1/trainings/").headers["allow"] == "GET, HEAD, POST"
