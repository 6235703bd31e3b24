"""Gateways and workers with metrics on, and scrapes of /metrics read as Prometheus reads them."""

from __future__ import annotations

import secrets
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from tests.conftest import Gateway, Stack, start_gateway

Labels = frozenset[tuple[str, str]]


@dataclass(frozen=True)
class Scrape:
    """One scrape: every sample by name and labels."""

    samples: dict[tuple[str, Labels], float]

    def value(self, name: str, **labels: str) -> float:
        """The sample's value; 0 for a labelled series not seen yet (a counter that has not moved)."""
        return self.samples.get((name, frozenset(labels.items())), 0.0)

    def has(self, name: str, **labels: str) -> bool:
        return (name, frozenset(labels.items())) in self.samples

    def series(self, name: str) -> dict[Labels, float]:
        return {labels: v for (n, labels), v in self.samples.items() if n == name}


def parse(text: str) -> Scrape:
    samples = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            samples[(sample.name, frozenset(sample.labels.items()))] = sample.value
    return Scrape(samples)


def scrape(url: str, token: str | None = None) -> Scrape:
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    reply = httpx.get(url, headers=headers, timeout=30)
    assert reply.status_code == 200, (reply.status_code, reply.text[:500])
    assert reply.headers["content-type"].startswith("text/plain")
    return parse(reply.text)


@dataclass(frozen=True)
class MetricsDeployment:
    """A gateway whose /metrics answers for ``token``, and the environment its workers share with it."""

    gateway: Gateway
    token: str
    env: dict[str, str]
    directory: Path

    @property
    def metrics_url(self) -> str:
        return self.gateway.url + "/metrics"

    def scrape(self) -> Scrape:
        return scrape(self.metrics_url, self.token)


def metrics_env(stack: Stack, directory: Path, token: str, **extra: str) -> dict[str, str]:
    env = dict(stack.env)
    env.update(PROMETHEUS_MULTIPROC_DIR=str(directory), ENGINESHED_METRICS_TOKEN=token, **extra)
    return env


@pytest.fixture(scope="module")
def deployment(stack: Stack, tmp_path_factory: pytest.TempPathFactory) -> Iterator[MetricsDeployment]:
    directory = tmp_path_factory.mktemp("metrics")
    token = secrets.token_urlsafe(24)
    env = metrics_env(stack, directory, token)
    gateway = start_gateway(env, tmp_path_factory.mktemp("logs"), name="metrics-gateway")
    try:
        yield MetricsDeployment(gateway, token, env, directory)
    finally:
        gateway.process.stop()
