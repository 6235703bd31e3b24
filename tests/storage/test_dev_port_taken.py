"""`engineshed dev` on a port another program holds stops before it starts anything, and says what to do."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_a_taken_port_is_refused_before_a_url_or_token_is_printed(tmp_path):
    with socket.socket() as held:
        held.bind(("127.0.0.1", 0))
        held.listen()
        port = held.getsockname()[1]
        env = {k: v for k, v in os.environ.items() if not k.startswith(("ENGINESHED_", "DATABASE_URL", "S3_"))}
        env.update(PORT=str(port), ENGINESHED_DATA_DIR=str(tmp_path / "data"), PYTHONPATH=str(ROOT))
        done = subprocess.run([sys.executable, "-m", "engineshed.cli.main", "dev"], env=env, cwd=ROOT,
                              capture_output=True, text=True, timeout=60)
    assert done.returncode != 0
    assert f"port {port}" in done.stderr and "in use" in done.stderr and f"PORT={port + 1}" in done.stderr
    assert "admin token" not in done.stdout and "#token=" not in done.stdout
    assert not (tmp_path / "data").exists()  # nothing was started or written
