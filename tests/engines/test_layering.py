"""engines is a plugin layer: it never imports the gateway or storage."""

from __future__ import annotations

import pkgutil
import subprocess
import sys

import engines


def test_importing_every_engines_module_loads_neither_gateway_nor_storage():
    modules = [m.name for m in pkgutil.walk_packages(engines.__path__, "engines.")]
    code = (
        "import importlib, sys\n"
        f"for name in {modules!r}: importlib.import_module(name)\n"
        "print(sorted(m for m in sys.modules if m.split('.')[0] in ('gateway', 'storage')))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"
