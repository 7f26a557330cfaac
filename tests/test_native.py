"""The mypyc-compiled data path: the build is the one imported, and its sources keep mypyc's rules."""

from __future__ import annotations

import ast
import importlib

import pytest

from meshkit.native import NATIVE_MODULES, built_path, compiled_modules, source_path


def _rebound_handler_names(source: str) -> list[str]:
    """Functions in `source` that bind one name in two `except ... as` handlers of different types."""
    found = []
    tree = ast.parse(source)
    for fn in ast.walk(tree):
        if not isinstance(fn, ast.FunctionDef | ast.AsyncFunctionDef):
            continue
        kinds: dict[str, set[str]] = {}
        for node in ast.walk(fn):
            if isinstance(node, ast.ExceptHandler) and node.name:
                kinds.setdefault(node.name, set()).add(ast.unparse(node.type) if node.type else "")
        found += [f"{fn.name}: {name}" for name, types in kinds.items() if len(types) > 1]
    return found


@pytest.mark.parametrize("module", NATIVE_MODULES)
def test_a_compiled_module_names_each_handlers_exception_apart(module: str) -> None:
    # compiled, `except A as e` ... `except B as e` types `e` as A and a B raises TypeError
    assert _rebound_handler_names(source_path(module).read_text()) == []


def test_the_rule_check_finds_a_rebound_name() -> None:
    handlers = "    except KeyError as e:\n        pass\n    except OSError as {}:\n        pass\n"
    source = "def f():\n    try:\n        g()\n" + handlers
    assert _rebound_handler_names(source.format("e")) == ["f: e"]
    assert _rebound_handler_names(source.format("other")) == []


def test_every_listed_module_has_its_source() -> None:
    assert all(source_path(m).is_file() for m in NATIVE_MODULES)


def test_a_built_extension_is_what_python_imports() -> None:
    built = [m for m in NATIVE_MODULES if built_path(m) is not None]
    if not built:
        pytest.skip("no native build here (make native): meshkit runs as plain Python")
    assert built == list(NATIVE_MODULES), "a partial build: run `make native`"
    for module in NATIVE_MODULES:
        importlib.import_module(module)
    assert compiled_modules() == list(NATIVE_MODULES)
