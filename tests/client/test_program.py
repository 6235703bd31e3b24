"""The `engineshed` program (engineshed/cli/main.py): one command line for the client's commands and the server's,
where a client command runs without loading any of the server's packages."""

from __future__ import annotations

import subprocess
import sys

from engineshed.cli.main import names_client_command
from tests.conftest import ROOT

NO_SERVER = """
import sys
from engineshed.cli.main import run_client
status = run_client(["jobs", "list", "--url", "http://127.0.0.1:1/v3/graphql", "--token", "t"])
loaded = sorted(m for m in sys.modules if m.split(".")[0] in ("gateway", "storage", "engines"))
print(status, loaded)
"""


def program(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "engineshed.cli.main", *args], cwd=ROOT, capture_output=True, text=True,
                          timeout=60)


def test_the_help_names_the_client_and_the_server_commands():
    done = program("--help")
    assert done.returncode == 0
    for command in ("dev", "serve", "worker", "migrate", "token", "engines", "models", "import", "train", "recognize", "jobs"):
        assert command in done.stdout
    models = program("models", "--help")
    assert models.returncode == 0 and all(name in models.stdout for name in ("pull", "list", "show"))


def test_a_client_command_loads_no_server_package():
    done = subprocess.run([sys.executable, "-c", NO_SERVER], cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert done.stdout.strip() == "4 []", done.stderr  # 4: the server is unreachable


def test_which_command_lines_are_the_clients():
    assert names_client_command(["jobs", "list"]) and names_client_command(["models", "show", "m"])
    assert not names_client_command(["models", "pull"]) and not names_client_command(["models"])
    assert not names_client_command([]) and not names_client_command(["--help"]) and not names_client_command(["dev"])


def test_a_server_command_keeps_its_argument_errors():
    done = program("token", "create", "--org", "o", "--scope", "engine")
    assert done.returncode == 2 and "engineshed: error: --scope engine needs --engine ID" in done.stderr
