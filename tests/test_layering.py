"""The layers import downwards only, read from the source (ast), following the project's own imports.

storage (SQL and S3) knows nothing of the gateway or the engines; engines are plugins that know neither the
gateway nor storage; the worker runs engines without the HTTP or GraphQL stack.
"""

from __future__ import annotations

import ast
from functools import cache
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
PACKAGES = ("gateway", "storage", "engines")


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
    assert "gateway.services.tokens" in reachable("gateway.web.graphql_view")
    assert violations("gateway.web", ("strawberry",)) != []
    assert len(modules_under("storage")) > 5 and len(modules_under("engines")) > 5


@pytest.mark.parametrize(
    ("package", "forbidden"),
    [
        ("storage", ("gateway", "engines")),
        ("engines", ("gateway", "storage")),
        ("gateway.worker", ("strawberry", "starlette", "gateway.web", "gateway.schema")),
    ],
    ids=["storage-knows-neither-gateway-nor-engines", "engines-know-neither-gateway-nor-storage", "worker-has-no-http-or-graphql"],
)
def test_a_layer_never_imports_the_layers_above_it(package, forbidden):
    assert violations(package, forbidden) == []
