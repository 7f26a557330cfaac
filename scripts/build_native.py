"""Compile meshkit's data-path modules with mypyc, in place (`make native`).

The list is `meshkit.native.NATIVE_MODULES`, read from its file without importing the
package (whose old extensions may be loaded). Nothing is done when every listed module
has an extension built after the last change to any meshkit source; otherwise the old
extensions are removed first (unlinked, never overwritten: a process that loaded one
keeps its copy) and all are compiled again, since a compiled module may have inlined
another's constants. `--clean` only removes them (back to plain Python).

    .venv/bin/python scripts/build_native.py [--clean] [--force]
"""

from __future__ import annotations

import argparse
import importlib.util
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
SRC = ROOT / "src"


def load_native() -> object:
    spec = importlib.util.spec_from_file_location("_meshkit_native", SRC / "meshkit" / "native.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def extensions() -> list[Path]:
    """Every extension a build left: the modules' and mypyc's shared runtime beside the package."""
    found = list((SRC / "meshkit").rglob("*.so")) + list(SRC.glob("*__mypyc*.so"))
    return sorted(found)


def clean(native: object) -> None:
    for path in extensions():
        path.unlink()
    stamp: Path = native.STAMP  # type: ignore[attr-defined]
    stamp.unlink(missing_ok=True)


def up_to_date(native: object) -> bool:
    modules: tuple[str, ...] = native.NATIVE_MODULES  # type: ignore[attr-defined]
    built = [native.built_path(m) for m in modules]  # type: ignore[attr-defined]
    listed = {p for p in built if p is not None}
    strays = [p for p in extensions() if p.parent != SRC and p not in listed]
    stamp: Path = native.STAMP  # type: ignore[attr-defined]
    return all(built) and not strays and stamp.exists() and not native.edited_since_build()  # type: ignore[attr-defined]


def build(native: object) -> int:
    modules: tuple[str, ...] = native.NATIVE_MODULES  # type: ignore[attr-defined]
    clean(native)
    files = [str(native.source_path(m).relative_to(SRC)) for m in modules]  # type: ignore[attr-defined]
    mypyc = Path(sys.executable).with_name("mypyc")
    print(f"mypyc: compiling {len(files)} modules (about a minute)", flush=True)
    proc = subprocess.run([str(mypyc), *files], cwd=SRC, capture_output=True, text=True)
    if proc.returncode != 0:
        clean(native)  # half a build would mix old and new code: plain Python instead
        sys.stderr.write(proc.stdout[-4000:] + proc.stderr[-4000:])
        print("mypyc failed: meshkit runs as plain Python", file=sys.stderr)
        return proc.returncode
    native.STAMP.touch()  # type: ignore[attr-defined]
    print(f"mypyc: {len(files)} modules compiled", flush=True)
    return 0


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--clean", action="store_true", help="remove the extensions: plain Python")
    parser.add_argument("--force", action="store_true", help="build even when up to date")
    args = parser.parse_args()
    native = load_native()
    if args.clean:
        clean(native)
        return 0
    if not args.force and up_to_date(native):
        return 0
    return build(native)


if __name__ == "__main__":
    sys.exit(main())
