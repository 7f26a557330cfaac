"""`python -m meshkit.demo`: the control plane on http://127.0.0.1:8080 with the demo running beside it.

The same as `meshkit serve --demo`; the data directory is MESHKIT_DATA_DIR or ~/.meshkit.
"""

from __future__ import annotations

import contextlib

from meshkit.remote import DEFAULT_PORT, default_data_dir


def main() -> None:
    from meshkit.plane.serve import run_serve

    with contextlib.suppress(KeyboardInterrupt):
        run_serve(port=DEFAULT_PORT, data_dir=default_data_dir(), demo=True)


if __name__ == "__main__":
    main()
