"""A throwaway local HAProxy for benchmarks: one thread, HTTP mode, in front of one backend.

HAProxy is one of the reference proxies a sidecar is compared with. `LocalHAProxy`
writes a minimal configuration (`nbthread 1`, `mode http`, `http-reuse always` so
server connections are kept and shared, no logging) into a temporary directory, runs
Debian's /usr/sbin/haproxy in the foreground (`-db`) on a free 127.0.0.1 port and stops
it at the end (installing the `haproxy` package first if it is missing).
"""

from __future__ import annotations

from _nginx import free_port
from _processes import BackgroundProcess, ensure_binary

HAPROXY = "/usr/sbin/haproxy"

_CONF = """\
global
    nbthread {threads}
    maxconn 4096
    tune.bufsize 16384

defaults
    mode http
    option http-keep-alive
    http-reuse always
    timeout connect 5s
    timeout client 60s
    timeout server 60s
    timeout http-keep-alive 60s

frontend bench
    bind 127.0.0.1:{port}
    default_backend upstream

backend upstream
    server upstream {host}:{backend_port} maxconn 256
"""


class LocalHAProxy(BackgroundProcess):
    """HAProxy with `threads` threads on a free port, forwarding every request to `backend`."""

    def __init__(self, backend: tuple[str, int], *, threads: int = 1, cpus: set[int] | None = None) -> None:
        if threads < 1:
            raise ValueError(f"threads: must be an integer >= 1, got {threads!r}")
        port = free_port()
        super().__init__("haproxy", [], port, cpus=cpus)
        self.config = _CONF.format(threads=threads, port=port, host=backend[0], backend_port=backend[1])
        conf = self.tmp / "haproxy.cfg"
        conf.write_text(self.config)
        self.argv = [HAPROXY, "-db", "-f", str(conf)]

    def start(self, timeout: float = 10.0) -> LocalHAProxy:
        ensure_binary(HAPROXY, "haproxy")
        super().start(timeout)
        return self

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/"
