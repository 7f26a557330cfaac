"""An unreachable backend at start-up is one clear line naming the address, not a traceback."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from tests.support.servers import free_port


@pytest.mark.parametrize("scheme", ["etcd", "consul"])
def test_unreachable_backend_is_one_clear_line(scheme: str, tmp_path: Path) -> None:
    port = free_port()
    proc = subprocess.run(
        [sys.executable, "-m", "meshkit.plane.serve", "--port", "0", "--data-dir", str(tmp_path),
         "--registry", f"{scheme}://127.0.0.1:{port}"],
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert proc.returncode == 2
    assert f"127.0.0.1:{port}" in proc.stderr
    assert "Traceback" not in proc.stderr + proc.stdout
    assert proc.stderr.strip().startswith("error:")
