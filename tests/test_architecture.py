"""Architecture rules read from the source: plugins share code only through public modules.

A plugin's ``_``-prefixed modules are its own: another plugin that imports them breaks
when they change. Tensor helpers that several plugins need are public in
:mod:`advframe.ops`, documented like the rest of the API.
"""

from __future__ import annotations

import ast
import inspect
from pathlib import Path

import pytest

from advframe import ops

ROOT = Path(__file__).resolve().parent.parent
PLUGINS = ROOT / "plugins"


def plugin_packages(root: Path = PLUGINS) -> set[str]:
    """The top-level packages under ``plugins/`` (directories with an ``__init__.py``)."""
    return {p.parent.name for p in root.glob("*/__init__.py")}


def _private(parts: list[str]) -> bool:
    return any(part.startswith("_") and not (part.startswith("__") and part.endswith("__")) for part in parts)


def imported_names(tree: ast.AST, package: str) -> list[tuple[int, str]]:
    """``(line, dotted name)`` of every module or name a module imports, at any depth.

    ``from a.b import c`` gives ``a.b.c`` (``c`` may be a submodule or a name of
    ``a.b``); relative imports are resolved against ``package``, the module's package.
    """
    found: list[tuple[int, str]] = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found += [(node.lineno, alias.name) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parent = package.split(".")[:len(package.split(".")) - (node.level - 1)]
                base = ".".join(parent + ([base] if base else []))
            found += [(node.lineno, f"{base}.{alias.name}" if alias.name != "*" else base) for alias in node.names]
    return found


def cross_plugin_private_imports(source: str, owner: str, package: str, plugins: set[str]) -> list[str]:
    """The imports in ``source`` (a module of plugin ``owner``, in ``package``) that reach a
    ``_private`` module or name of another plugin package."""
    bad = []
    for line, name in imported_names(ast.parse(source), package):
        top, *rest = name.split(".")
        if top in plugins and top != owner and _private(rest):
            bad.append(f"line {line}: {name}")
    return bad


def violations(root: Path = PLUGINS) -> list[str]:
    """Every cross-plugin private import under ``root``, as ``path: line N: name``."""
    plugins = plugin_packages(root)
    found = []
    for path in sorted(root.glob("*/**/*.py")):
        rel = path.relative_to(root)
        owner = rel.parts[0]
        if owner not in plugins:
            continue
        package = ".".join(rel.parts[:-1])
        for bad in cross_plugin_private_imports(path.read_text(encoding="utf-8"), owner, package, plugins):
            found.append(f"{rel}: {bad}")
    return found


def test_no_plugin_imports_another_plugins_private_module():
    assert violations() == [], ("plugins share code through public modules (advframe.ops for tensor "
                                "helpers), never another plugin's _private module")


@pytest.mark.parametrize("source", [
    "from advframe_gradient._ops import per_example",
    "import advframe_gradient._ops",
    "from advframe_gradient import _ops",
    "def f():\n    from advframe_gradient._ops import generator\n",
    "from advframe_gradient.loop import _private_helper",
])
def test_the_rule_catches_each_form_of_a_cross_plugin_private_import(source):
    plugins = {"advframe_gradient", "advframe_autoattack"}
    assert cross_plugin_private_imports(source, "advframe_autoattack", "advframe_autoattack", plugins)


@pytest.mark.parametrize("source", [
    "from advframe_autoattack._common import top_other_classes",  # its own private module
    "from ._common import top_other_classes",
    "from advframe_gradient.losses import dlr_loss",  # another plugin's public module
    "from advframe.ops import per_example",
    "from __future__ import annotations",
])
def test_the_rule_allows_own_private_and_public_imports(source):
    plugins = {"advframe_gradient", "advframe_autoattack"}
    assert cross_plugin_private_imports(source, "advframe_autoattack", "advframe_autoattack", plugins) == []


def public_functions() -> list:
    return [f for name, f in vars(ops).items()
            if inspect.isfunction(f) and f.__module__ == ops.__name__ and not name.startswith("_")]


def test_ops_functions_are_documented_with_their_arguments():
    functions = public_functions()
    assert {"per_example", "flat_norm", "project", "generator", "random_start"} <= {f.__name__ for f in functions}
    for f in functions:
        doc = inspect.getdoc(f) or ""
        assert doc, f"advframe.ops.{f.__name__} has no docstring"
        params = list(inspect.signature(f).parameters)
        if params:
            assert "Args:" in doc and "Returns:" in doc, f"advframe.ops.{f.__name__}: no Args/Returns section"
            missing = [p for p in params if not any(f"    {star}{p}:" in doc for star in ("", "*", "**"))]
            assert not missing, f"advframe.ops.{f.__name__} does not document {missing}"
