"""A throwaway local nginx for benchmarks: one worker, 127.0.0.1 only, stopped at exit.

Benchmarks need an upstream that is much faster than the client under test, so that
what they measure is the client. nginx answering a fixed body from memory (`return
200 "..."`) with one worker on 127.0.0.1 is that upstream. `LocalNginx` writes its
config, pid file and logs into a temporary directory, listens on free ports (one
or several, to give a balancer several instances), waits until every port accepts
and stops nginx on `stop()`, on leaving the `with` block, and at interpreter exit
(so Ctrl-C does not leave it running). If /usr/sbin/nginx is missing it installs
Debian's `nginx-light` first.
"""

from __future__ import annotations

import atexit
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from types import TracebackType

NGINX = "/usr/sbin/nginx"

_CONF = """\
daemon off;
master_process on;
worker_processes {workers};
pid {tmp}/nginx.pid;
error_log {tmp}/error.log warn;
events {{ worker_connections 4096; }}
http {{
    access_log off;
    client_body_temp_path {tmp}/body;
    proxy_temp_path {tmp}/proxy;
    fastcgi_temp_path {tmp}/fastcgi;
    uwsgi_temp_path {tmp}/uwsgi;
    scgi_temp_path {tmp}/scgi;
    keepalive_requests {keepalive_requests};
    keepalive_timeout 75s;
    default_type {content_type};
    server {{
{listens}
        location / {{ return 200 "{body}"; }}
{extra}
    }}
}}
"""


def free_port() -> int:
    """A port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def ensure_nginx() -> str:
    """The nginx binary, installing Debian's nginx-light if it is missing."""
    if os.path.exists(NGINX):
        return NGINX
    print("nginx not found: running apt-get install -y nginx-light", file=sys.stderr)
    env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
    if subprocess.run(["apt-get", "install", "-y", "nginx-light"], env=env).returncode != 0:
        subprocess.run(["apt-get", "update"], env=env, check=True)
        subprocess.run(["apt-get", "install", "-y", "nginx-light"], env=env, check=True)
    if not os.path.exists(NGINX):
        raise RuntimeError(f"nginx-light installed but {NGINX} is still missing")
    return NGINX


def make_body(size: int) -> str:
    """`size` printable ASCII bytes that need no escaping inside an nginx string."""
    if size < 0:
        raise ValueError(f"body_bytes: must be an integer >= 0, got {size!r}")
    alphabet = "abcdefghijklmnopqrstuvwxyz0123456789"
    return (alphabet * (size // len(alphabet) + 1))[:size]


class LocalNginx:
    """nginx on `ports` free 127.0.0.1 ports, all answering `GET /` with `body_bytes` bytes."""

    def __init__(
        self,
        *,
        ports: int = 1,
        body_bytes: int = 1024,
        content_type: str = "text/plain",
        workers: int = 1,
        keepalive_requests: int = 100_000,
        extra_locations: str = "",
    ) -> None:
        if ports < 1:
            raise ValueError(f"ports: must be an integer >= 1, got {ports!r}")
        if workers < 1:
            raise ValueError(f"workers: must be an integer >= 1, got {workers!r}")
        self.body = make_body(body_bytes).encode()
        self._port_count = ports
        self._content_type = content_type
        self._workers = workers
        self._keepalive_requests = keepalive_requests
        self._extra = extra_locations
        self.ports: list[int] = []
        self._tmp: Path | None = None
        self._proc: subprocess.Popen[bytes] | None = None

    @property
    def addresses(self) -> list[tuple[str, int]]:
        return [("127.0.0.1", port) for port in self.ports]

    @property
    def urls(self) -> list[str]:
        return [f"http://127.0.0.1:{port}/" for port in self.ports]

    def config(self, tmp: Path, ports: Sequence[int]) -> str:
        listens = "\n".join(f"        listen 127.0.0.1:{port} backlog=4096;" for port in ports)
        return _CONF.format(
            workers=self._workers,
            tmp=tmp,
            keepalive_requests=self._keepalive_requests,
            content_type=self._content_type,
            listens=listens,
            body=self.body.decode(),
            extra=self._extra,
        )

    def start(self, timeout: float = 10.0) -> LocalNginx:
        binary = ensure_nginx()
        self._tmp = Path(tempfile.mkdtemp(prefix="meshkit-nginx-"))
        self.ports = [free_port() for _ in range(self._port_count)]
        conf = self._tmp / "nginx.conf"
        conf.write_text(self.config(self._tmp, self.ports))
        log = (self._tmp / "stderr.log").open("wb")
        # A new session: the terminal's Ctrl-C reaches only us, and we stop nginx ourselves.
        self._proc = subprocess.Popen(
            [binary, "-c", str(conf), "-p", str(self._tmp), "-e", str(self._tmp / "error.log")],
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        log.close()
        atexit.register(self.stop)
        try:
            self._wait_until_accepting(timeout)
        except BaseException:
            self.stop()
            raise
        return self

    def _wait_until_accepting(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        pending = list(self.ports)
        while pending:
            if self._proc is not None and self._proc.poll() is not None:
                raise RuntimeError(f"nginx exited with {self._proc.returncode}: {self._logs()}")
            if time.monotonic() > deadline:
                raise RuntimeError(f"nginx did not accept on {pending} within {timeout}s: {self._logs()}")
            try:
                with socket.create_connection(("127.0.0.1", pending[0]), timeout=0.5):
                    pending.pop(0)
            except OSError:
                time.sleep(0.05)

    def _logs(self) -> str:
        if self._tmp is None:
            return ""
        parts = [
            p.read_text(errors="replace")
            for p in (self._tmp / "stderr.log", self._tmp / "error.log")
            if p.exists()
        ]
        return " | ".join(part.strip() for part in parts if part.strip())[-2000:]

    def stop(self) -> None:
        proc, self._proc = self._proc, None
        if proc is not None and proc.poll() is None:
            proc.send_signal(signal.SIGTERM)  # fast shutdown of master and workers
            try:
                proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait(timeout=5)
        tmp, self._tmp = self._tmp, None
        if tmp is not None:
            shutil.rmtree(tmp, ignore_errors=True)
        atexit.unregister(self.stop)

    def __enter__(self) -> LocalNginx:
        return self.start()

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()
