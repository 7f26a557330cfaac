"""The data-path modules compiled to C with mypyc, and whether this checkout's builds are current.

The sidecar's and the client's per-request work is Python spread thin over many small
functions (docs/benchmarks.md): no single one is worth rewriting, but the interpreter's
cost of running them is. mypyc (the compiler mypy and black ship their wheels with)
turns these type-annotated modules into C extensions with the same behaviour; measured
by callgrind, the sidecar's own work per request falls by about a quarter. The `.py`
files stay the source: `make native` (run by `make test`, `make run` and `make bench`)
compiles them in place, Python imports the extension when one sits beside a module, and
without a C compiler everything runs as plain Python.

A module is listed only when it compiles and its tests pass compiled; modules that use
what mypyc does not support (runtime-checkable Protocols, attributes set on functions,
aiohttp's middleware marker) stay interpreted, and so do modules whose public
constructors validate their arguments (`ServiceInstance`, the breaker and retry
policies, `PeakEwma`): compiled, a parameter typed `float` turns True into 1.0 and one
typed `int` refuses a string with a TypeError, where meshkit promises a ValueError
naming the field. One rule for listed modules: a function
gives each `except ... as name` its own name, since compiled code types the variable by
its first handler and raises TypeError when a later handler binds another exception
(tests/test_native.py checks the listed sources for it).
"""

from __future__ import annotations

import importlib.machinery
import sys
from pathlib import Path

NATIVE_MODULES = (
    "meshkit.outcome",
    "meshkit.stack",
    "meshkit.client",
    "meshkit.interceptors",
    "meshkit.balance.layer",
    "meshkit.balance.p2c",
    "meshkit.balance.select",
    "meshkit.resilience._window",
    "meshkit.resilience.backoff",
    "meshkit.transport.h1.connection",
    "meshkit.transport.h1.head",
    "meshkit.transport.h1.pool",
    "meshkit.transport.h1.transport",
    "meshkit.proxy.forward",
    "meshkit.proxy.framing",
    "meshkit.proxy.h1server",
    "meshkit.proxy.routing",
    "meshkit.events",
    "meshkit.observe.propagation",
    "meshkit.plane.headers",
    "meshkit.plane.ssrf.address",
    "meshkit.plane.ssrf.path",
    "meshkit.plane.calls",
    "meshkit.plane.api.framing",
    "meshkit.plane.api.fastcall",
)

SRC = Path(__file__).resolve().parent.parent  # the directory holding the meshkit package
STAMP = SRC / "meshkit" / ".native-build"  # touched by scripts/build_native.py after a build


def source_path(module: str) -> Path:
    return SRC.joinpath(*module.split(".")).with_suffix(".py")


def built_path(module: str) -> Path | None:
    """The compiled extension beside `module`'s source, when one was built."""
    source = source_path(module)
    for suffix in importlib.machinery.EXTENSION_SUFFIXES:
        candidate = source.with_name(source.stem + suffix)
        if candidate.exists():
            return candidate
    return None


def compiled_modules() -> list[str]:
    """The listed modules imported as C extensions in this process."""
    loaded = [sys.modules.get(name) for name in NATIVE_MODULES]
    return [m.__name__ for m in loaded if m is not None and not (m.__file__ or "").endswith(".py")]


def edited_since_build() -> list[Path]:
    """Listed sources changed after the last build, when there are extensions to go stale (else [])."""
    if not any(built_path(m) for m in NATIVE_MODULES):
        return []
    built_at = STAMP.stat().st_mtime if STAMP.exists() else 0.0
    sources = [source_path(m) for m in NATIVE_MODULES] + [Path(__file__)]
    return sorted(p for p in sources if p.stat().st_mtime > built_at)
