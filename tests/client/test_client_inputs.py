"""The seeds' arguments as the client maps them (filters, dates, content types, Vertex filters and orderings), and
what it refuses before sending anything: checked through a recording loopback server in front of the gateway."""

from __future__ import annotations

from datetime import date, datetime, timezone

import pytest

from engineshed.client import Client, InvalidInputError, PipelineState, identifier_filter
from engineshed.client.training import parse_filter, parse_order
from tests.client.loopback import Flaky, flaky_server


def test_the_seed_filter_becomes_an_identifier_filter_with_whole_days():
    mapped = identifier_filter({"annotation_types": ["human", "machine"], "from_date": "2022-08-02", "to_date": "2023-01-19"})
    assert mapped == {
        "annotationTypes": ["human", "machine"],
        "fromDateTime": int(datetime(2022, 8, 2, tzinfo=timezone.utc).timestamp()),
        "toDateTime": int(datetime(2023, 1, 19, 23, 59, 59, tzinfo=timezone.utc).timestamp()),  # all of the 19th
    }
    moment = datetime(2023, 1, 19, 12, 30, tzinfo=timezone.utc)
    assert identifier_filter({"to_date": moment})["toDateTime"] == int(moment.timestamp())
    assert identifier_filter({"from_date": "2023-01-19T12:30:00Z"})["fromDateTime"] == int(moment.timestamp())
    assert identifier_filter({"from_date": date(2022, 8, 2)})["fromDateTime"] == mapped["fromDateTime"]
    assert identifier_filter({"annotationTypes": ["raw"], "fromDateTime": 5}) == {"annotationTypes": ["raw"], "fromDateTime": 5}
    assert identifier_filter(None) is None and identifier_filter({}) is None
    with pytest.raises(InvalidInputError, match="from_date"):
        identifier_filter({"from_date": "last tuesday"})
    with pytest.raises(InvalidInputError, match="unknown filter keys: colour"):
        identifier_filter({"colour": "red"})


def test_vertex_filters_and_orderings_map_onto_job_queries():
    assert parse_filter('labels.team="vision" AND state="PIPELINE_STATE_SUCCEEDED" AND display_name="a b"') == (
        {"team": "vision"}, ["complete"], "a b")
    assert parse_filter('state="running"') == ({}, ["running"], None)
    assert parse_filter(None) == ({}, [], None) and parse_filter("  ") == ({}, [], None)
    for bad in ('create_time>"2020"', 'owner="me"', 'state="SOMETIMES"', "labels.team=", 'labels.team="vi', "labels.team=a b"):
        with pytest.raises(InvalidInputError):
            parse_filter(bad)
    assert parse_order("create_time desc, display_name") == ([{"field": "createdDateTime", "direction": "desc"}], "asc")
    assert parse_order("updateTime") == ([{"field": "modifiedDateTime", "direction": "asc"}], None)
    for bad in ("size desc", "create_time sideways", "create_time desc extra"):
        with pytest.raises(InvalidInputError):
            parse_order(bad)
    assert PipelineState.PIPELINE_STATE_SUCCEEDED == "PIPELINE_STATE_SUCCEEDED"


def test_what_the_client_refuses_never_reaches_the_server(org, tmp_path):
    flaky = Flaky(org.gateway.url)
    with flaky_server(flaky) as url, Client(url, org.token) as client:
        refusals = [
            lambda: client.insert_image_embeddings_batch([{"uniqueName": f"{n}", "embeddings": [0.0]} for n in range(100)], "m", [1]),
            lambda: client.insert_image_embeddings_batch([], "m", [1], session_id=7),  # type: ignore[arg-type]
            lambda: client.generate_embeddings_for_collection("lib", inference_platform="gcp"),
            lambda: client.generate_embeddings_for_collection("lib", "m", model_name="n"),
            lambda: client.generate_embeddings_to_metalake("audio"),
            lambda: client.generate_auto_tags_to_metalake("text"),
            lambda: client.auto_tag_collection("lib", input_resolution=(300,)),
            lambda: client.auto_tag_collection("lib", input_resolution=300),  # type: ignore[arg-type]
            lambda: client.auto_tag_collection("lib", input_resolution=("a", "b")),  # type: ignore[arg-type]
            lambda: client.auto_tag_collection("lib", input_resolution=(300.7, 300.2)),  # type: ignore[arg-type]
            lambda: client.auto_tag_collection("lib", confidence_threshold="high"),  # type: ignore[arg-type]
            lambda: client.auto_tag_collection("lib", query=5),  # type: ignore[arg-type]
            lambda: client.register_model(tmp_path, "m", None),
            lambda: client.register_model(tmp_path, None, "embedding"),
            lambda: client.register_model(123, "m", "embedding"),  # type: ignore[arg-type]
            lambda: client.register_model(tmp_path, "m", "embedding", manifest="abc"),  # type: ignore[arg-type]
            lambda: client.register_model(tmp_path, "m", "embedding", model_name="other"),
            lambda: client.register_model(tmp_path / "missing", "m", "embedding"),
            lambda: client.register_model(tmp_path, "m", "segmentation"),
            lambda: client.create_entity_identifier("e"),
            lambda: client.create_entity_identifier(None, b"x"),
        ]
        for refusal in refusals:
            with pytest.raises(InvalidInputError):
                refusal()
        assert client.insert_image_embeddings([], "m", [1]) == 0  # nothing to send: no request
        training = client.training_job("never-run")
        assert training.state == PipelineState.PIPELINE_STATE_UNSPECIFIED and training.display_name == "never-run"
        with pytest.raises(RuntimeError, match="not been run"):
            training.cancel()
    assert flaky.requests == []
