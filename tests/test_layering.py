"""The layers import downwards only, read from the source (ast), following the project's own imports.

storage (SQL and S3) knows nothing of the gateway or the engines; engines are plugins that know neither the
gateway nor storage; the worker runs engines without the HTTP or GraphQL stack. Services decide and know nothing
of how they are rendered (GraphQL, REST, HTTP); REST renders service read models, never GraphQL types; the web
layer chooses error shapes without REST's help. The server (gateway) and the client (engineshed) are separate
programs. Inside services and the worker, imports point one way: no module reaches itself again.
"""

from __future__ import annotations

import ast
import sys
from functools import cache
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
PACKAGES = ("gateway", "storage", "engines", "engineshed")
# Modules that hold one idea at a length past MAX_LINES (a converter of one format; one staged pipeline).
LONG_BY_NATURE = {"engines/convert/tfjs.py", "engines/pipeline.py"}
MAX_LINES = 500


def module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def module_path(name: str) -> Path | None:
    base = ROOT.joinpath(*name.split("."))
    for candidate in (base.with_suffix(".py"), base / "__init__.py"):
        if candidate.is_file():
            return candidate
    return None


def modules_under(package: str) -> list[str]:
    return sorted(module_name(p) for p in ROOT.joinpath(*package.split(".")).rglob("*.py"))


@cache
def direct_imports(name: str) -> frozenset[str]:
    """Every module named by an import statement anywhere in the module (functions and TYPE_CHECKING too)."""
    path = module_path(name)
    assert path is not None, name
    is_package = path.name == "__init__.py"
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                anchor = name.split(".") if is_package else name.split(".")[:-1]
                anchor = anchor[: len(anchor) - (node.level - 1)]
                base = ".".join(anchor + ([node.module] if node.module else []))
            else:
                base = node.module or ""
            found.add(base)
            # `from gateway.services import tokens` imports the submodule gateway.services.tokens.
            found.update(f"{base}.{alias.name}" for alias in node.names if module_path(f"{base}.{alias.name}"))
    return frozenset(found)


def reachable(name: str) -> dict[str, str]:
    """Every module imported directly or through project modules, with the project module that imports it."""
    seen: dict[str, str] = {}
    stack = [name]
    while stack:
        current = stack.pop()
        for imported in direct_imports(current):
            if imported in seen:
                continue
            seen[imported] = current
            if imported.split(".")[0] in PACKAGES and module_path(imported):
                stack.append(imported)
            # importing a.b.c also runs a/__init__ and a/b/__init__
            parts = imported.split(".")
            for i in range(1, len(parts)):
                parent = ".".join(parts[:i])
                if parent not in seen and parent.split(".")[0] in PACKAGES and module_path(parent):
                    seen[parent] = current
                    stack.append(parent)
    return seen


def violations(package: str, forbidden: tuple[str, ...]) -> list[str]:
    out = []
    for name in modules_under(package):
        for imported, importer in reachable(name).items():
            if any(imported == f or imported.startswith(f + ".") for f in forbidden):
                out.append(f"{name} reaches {imported} (imported by {importer})")
    return sorted(set(out))


def test_the_walker_sees_imports_it_should():
    # Guards the guard: a walker that found nothing would pass every rule below.
    assert "storage.db" in direct_imports("gateway.schema.context") or "gateway.resources" in direct_imports("gateway.schema.context")
    assert "strawberry" in reachable("gateway.schema.root")
    assert "gateway.services.access.tokens" in reachable("gateway.web.graphql_view")
    assert violations("gateway.web", ("strawberry",)) != []
    assert len(modules_under("storage")) > 5 and len(modules_under("engines")) > 5


@pytest.mark.parametrize(
    ("package", "forbidden"),
    [
        ("storage", ("gateway", "engines")),
        ("engines", ("gateway", "storage")),
        ("gateway.worker", ("strawberry", "starlette", "gateway.web", "gateway.schema")),
        ("gateway.services", ("strawberry", "starlette", "gateway.schema", "gateway.rest", "gateway.web")),
        ("gateway.rest", ("strawberry", "gateway.schema")),
        ("gateway.web", ("gateway.rest",)),
        ("gateway", ("engineshed",)),
        ("engineshed.client", ("gateway",)),
    ],
    ids=["storage-knows-neither-gateway-nor-engines", "engines-know-neither-gateway-nor-storage",
         "worker-has-no-http-or-graphql", "services-know-no-rendering", "rest-renders-no-graphql-types",
         "web-needs-no-rest", "the-server-needs-no-client", "the-client-needs-no-server"],
)
def test_a_layer_never_imports_the_layers_above_it(package, forbidden):
    assert violations(package, forbidden) == []


def import_cycles(package: str) -> list[list[str]]:
    """Strongly connected groups of more than one module among ``package``'s modules (Tarjan)."""
    nodes = modules_under(package)
    inside = set(nodes)
    edges = {n: sorted(i for i in direct_imports(n) if i in inside and i != n) for n in nodes}
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    on_stack: set[str] = set()
    stack: list[str] = []
    groups: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for nxt in edges[node]:
            if nxt not in index:
                visit(nxt)
                low[node] = min(low[node], low[nxt])
            elif nxt in on_stack:
                low[node] = min(low[node], index[nxt])
        if low[node] == index[node]:
            group = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                group.append(member)
                if member == node:
                    break
            if len(group) > 1:
                groups.append(sorted(group))

    for node in nodes:
        if node not in index:
            visit(node)
    return groups


def test_the_cycle_finder_finds_a_cycle(tmp_path, monkeypatch):
    # Guards the guard: two modules that import each other are one group.
    direct_imports.cache_clear()
    monkeypatch.setattr(sys.modules[__name__], "ROOT", tmp_path)
    package = tmp_path / "gateway" / "services"
    package.mkdir(parents=True)
    (package / "__init__.py").write_text("")
    (package / "a.py").write_text("from gateway.services import b\n")
    (package / "b.py").write_text("def f():\n    from gateway.services.a import x\n")
    (package / "c.py").write_text("import gateway.services.a\n")
    try:
        assert import_cycles("gateway.services") == [["gateway.services.a", "gateway.services.b"]]
    finally:
        direct_imports.cache_clear()


@pytest.mark.parametrize("package", ["gateway.services", "gateway.worker"])
def test_imports_inside_services_and_the_worker_point_one_way(package):
    # Function-local imports count: a cycle hidden in a function is still a cycle.
    assert import_cycles(package) == []


def test_no_production_module_is_longer_than_one_idea_needs():
    long = []
    for package in PACKAGES:
        for path in ROOT.joinpath(package).rglob("*.py"):
            relative = path.relative_to(ROOT).as_posix()
            lines = len(path.read_text().splitlines())
            if lines > MAX_LINES and relative not in LONG_BY_NATURE:
                long.append(f"{relative}: {lines} lines")
    assert long == []
