"""The client is a client: it reaches the server only over HTTP and WebSocket. Of the server's packages it may use
the typed settings and the dev connection file (to find a local `make run`), nothing that touches storage or engines."""

from __future__ import annotations

from tests.test_layering import ROOT, direct_imports, module_name, module_path

ALLOWED_SERVER_MODULES = {"gateway", "gateway.settings", "gateway.dev_connection"}


def project_imports(start: str) -> dict[str, str]:
    seen: dict[str, str] = {}
    stack = [start]
    while stack:
        current = stack.pop()
        for imported in direct_imports(current):
            top = imported.split(".")[0]
            if top not in ("engineshed", "gateway", "storage", "engines") or imported in seen or module_path(imported) is None:
                continue
            seen[imported] = current
            stack.append(imported)
    return seen


def test_the_client_and_its_command_line_import_no_server_internals():
    for path in sorted((ROOT / "engineshed").rglob("*.py")):
        name = module_name(path)
        reached = project_imports(name)
        server = {m: by for m, by in reached.items() if not m.startswith("engineshed") and m not in ALLOWED_SERVER_MODULES}
        assert not server, f"{name} reaches server modules: {server}"
