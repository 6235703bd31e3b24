"""The client is a client: it reaches the server only over HTTP and WebSocket and imports none of the server's
packages, not even its settings (it reads its own variables and the dev stack's connection file). The two meet in
one place only: the `engineshed` program hands a server command to gateway.cli, imported when one runs. The server
never imports the client, so the packages form no cycle."""

from __future__ import annotations

import ast

from tests.test_layering import ROOT, direct_imports, module_name, module_path, violations

SERVER_PACKAGES = ("gateway", "storage", "engines")
PROGRAM = "engineshed.cli.main"
SERVER_COMMANDS = {"gateway", "gateway.cli"}  # what `from gateway import cli` names


def server_imports(name: str) -> set[str]:
    return {m for m in direct_imports(name) if m.split(".")[0] in SERVER_PACKAGES}


def test_the_client_and_its_command_line_import_no_server_module():
    names = [module_name(p) for p in sorted((ROOT / "engineshed").rglob("*.py"))]
    assert "engineshed.client.connection" in names and PROGRAM in names
    for name in names:
        allowed = SERVER_COMMANDS if name == PROGRAM else set()
        assert server_imports(name) <= allowed, f"{name} imports server modules: {server_imports(name) - allowed}"
        # The program's one way into the server is for itself: a module importing it would inherit that way.
        assert name == PROGRAM or PROGRAM not in direct_imports(name), f"{name} imports {PROGRAM}"


def test_the_program_imports_the_server_commands_only_when_one_runs():
    path = module_path(PROGRAM)
    assert path is not None
    at_load = [node for node in ast.parse(path.read_text()).body if isinstance(node, (ast.Import, ast.ImportFrom))]
    named = {alias.name for node in at_load for alias in node.names} | {
        node.module for node in at_load if isinstance(node, ast.ImportFrom) and node.module}
    assert not {m for m in named if m.split(".")[0] in SERVER_PACKAGES}
    assert server_imports(PROGRAM) == SERVER_COMMANDS  # the walker sees the function-local import


def test_the_server_never_imports_the_client():
    assert violations("gateway", ("engineshed",)) == []
    assert violations("gateway", ("storage",)) != []  # the walker does follow the server's imports
