"""`meshkit serve` as a real subprocess for end-to-end tests: start, wait until ready, stop."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path

from tests.support.servers import free_port

HEALTH = "/api/v1/mesh/v2/health"


@dataclass
class Served:
    url: str
    port: int
    data_dir: Path
    proc: subprocess.Popen[bytes]
    log: Path

    def output(self) -> str:
        return self.log.read_text(errors="replace")

    def stop(self) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        return self.proc.returncode


def serve(data_dir: Path, *args: str, env: dict[str, str] | None = None, timeout: float = 30.0) -> Served:
    """Start the plane on a free port and return once GET /api/v1/mesh/v2/health answers 200."""
    port = free_port()
    data_dir.mkdir(parents=True, exist_ok=True)
    log = data_dir.parent / f"serve-{port}.log"
    command = [
        sys.executable,
        "-m",
        "meshkit.plane.serve",
        "--port",
        str(port),
        "--data-dir",
        str(data_dir),
        *args,
    ]
    full_env = {**os.environ, **(env or {})}
    with open(log, "wb") as out:
        proc = subprocess.Popen(command, stdout=out, stderr=subprocess.STDOUT, env=full_env)
    served = Served(f"http://127.0.0.1:{port}", port, data_dir, proc, log)
    deadline = time.monotonic() + timeout
    while True:
        try:
            with urllib.request.urlopen(served.url + HEALTH, timeout=1) as resp:
                if resp.status == 200:
                    return served
        except (urllib.error.URLError, OSError):
            pass
        if proc.poll() is not None or time.monotonic() > deadline:
            served.stop()
            raise RuntimeError(f"meshkit serve did not become ready:\n{served.output()}")
        time.sleep(0.05)
