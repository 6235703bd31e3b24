"""`engineshed dev` pulls missing models in a child process; once that child ends, dev reaps it, so no <defunct>
process stays behind for as long as dev runs."""

from __future__ import annotations

import sys

import httpx
import psutil
import pytest

from gateway.devstack import find_free_port
from tests.conftest import Process
from tests.storage.test_dev_command import clean_env
from tests.support.waits import wait_for

pytestmark = pytest.mark.timeout(180)


def test_a_finished_model_pull_leaves_no_defunct_child(tmp_path):
    port, dead = find_free_port(), find_free_port()
    # Registries nobody answers at: the pull fails at once, which is when a child that nobody waits for turns defunct.
    env = clean_env(ENGINESHED_NPM_REGISTRY=f"http://127.0.0.1:{dead}/", ENGINESHED_PYPI_INDEX=f"http://127.0.0.1:{dead}/simple/",
                    ENGINESHED_GATEWAY_PROCESSES="1")
    home = tmp_path / "home"
    home.mkdir()
    dev = Process([sys.executable, "-m", "gateway.cli", "dev", "--port", str(port)], env, tmp_path / "dev.log",
                  cwd=home)
    try:
        wait_for(lambda: _ready(port), timeout=150, interval=0.2, what="engineshed dev to answer")
        parent = psutil.Process(dev.pid)

        def pull_ended() -> bool:
            return not any("models pull" in " ".join(c.cmdline()) for c in _children(parent)
                           if c.status() != psutil.STATUS_ZOMBIE)

        wait_for(pull_ended, timeout=90, interval=0.2, what="the model pull to end")
        # Reaped as it exits: a child nobody waits for stays a zombie for as long as dev runs, past any deadline.
        wait_for(lambda: not [c for c in _children(parent) if c.status() == psutil.STATUS_ZOMBIE], timeout=10,
                 interval=0.2, what="no defunct child under dev")
    finally:
        dev.stop(timeout=40)


def _ready(port: int) -> bool:
    try:
        return httpx.get(f"http://127.0.0.1:{port}/readyz", timeout=2).status_code == 200
    except httpx.HTTPError:
        return False


def _children(parent: psutil.Process) -> list[psutil.Process]:
    try:
        return parent.children()
    except psutil.NoSuchProcess:
        return []
