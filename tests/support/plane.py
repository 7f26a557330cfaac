"""A real control plane for tests: `python -m meshkit.plane.serve` as a subprocess on a free port.

Tests of the pieces that talk to the plane over HTTP (the REST client, RemoteRegistry, the
service-side helpers, the sidecar, the CLI, the demo) run against the real thing, started
with its own data directory and stopped (SIGTERM, then SIGKILL) afterwards.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path

API = "/api/v1/mesh/v2"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass
class PlaneProcess:
    url: str
    data_dir: Path
    proc: subprocess.Popen[bytes]
    log_path: Path

    @property
    def token(self) -> str:
        """The admin token the plane wrote into its data directory."""
        return (self.data_dir / "admin.token").read_text().strip()

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)


def start_plane(data_dir: Path, *args: str, timeout: float = 30.0) -> PlaneProcess:
    """Start the plane with `data_dir` and extra CLI `args`; return once /health answers."""
    port = free_port()
    log_path = data_dir.parent / f"plane-{port}.log"
    env = {k: v for k, v in os.environ.items() if not k.startswith("MESHKIT_")}
    cmd = [
        sys.executable,
        "-m",
        "meshkit.plane.serve",
        "--port",
        str(port),
        "--data-dir",
        str(data_dir),
        *args,
    ]
    with open(log_path, "wb") as log:
        proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, env=env)
    plane = PlaneProcess(f"http://127.0.0.1:{port}", data_dir, proc, log_path)
    give_up = time.monotonic() + timeout
    while time.monotonic() < give_up:
        if proc.poll() is not None:
            raise RuntimeError(f"control plane exited with {proc.returncode}:\n{plane.log()}")
        try:
            with urllib.request.urlopen(f"{plane.url}{API}/health", timeout=1) as resp:
                if resp.status == 200:
                    return plane
        except (urllib.error.URLError, OSError):
            pass
        time.sleep(0.1)
    plane.stop()
    raise RuntimeError(f"control plane did not answer within {timeout}s:\n{plane.log()}")
