"""Real etcd members for the tests: Debian's /usr/bin/etcd as subprocesses on free loopback ports.

`EtcdCluster(tmp_dir, size=3)` starts a cluster in a temporary directory; members can be
stopped (SIGTERM), killed (SIGKILL) and restarted on the same ports and data, so a test can
take a majority away and give it back. Heartbeat 50 ms and election timeout 500 ms keep
leader elections fast. `close()` kills whatever still runs, also when a test fails.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import time
import urllib.request
from pathlib import Path

ETCD = shutil.which("etcd") or "/usr/bin/etcd"


def free_ports(n: int) -> list[int]:
    socks = [socket.socket() for _ in range(n)]
    try:
        for s in socks:
            s.bind(("127.0.0.1", 0))
        return [s.getsockname()[1] for s in socks]
    finally:
        for s in socks:
            s.close()


class EtcdMember:
    def __init__(
        self, name: str, data_dir: Path, client_port: int, peer_port: int, initial_cluster: str
    ) -> None:
        self.name = name
        self.data_dir = data_dir
        self.client_port = client_port
        self.peer_port = peer_port
        self.initial_cluster = initial_cluster
        self.process: subprocess.Popen[bytes] | None = None
        self.log = data_dir.parent / f"{name}.log"

    @property
    def endpoint(self) -> tuple[str, int]:
        return ("127.0.0.1", self.client_port)

    def start(self) -> None:
        client = f"http://127.0.0.1:{self.client_port}"
        peer = f"http://127.0.0.1:{self.peer_port}"
        args = [
            ETCD, "--name", self.name, "--data-dir", str(self.data_dir),
            "--listen-client-urls", client, "--advertise-client-urls", client,
            "--listen-peer-urls", peer, "--initial-advertise-peer-urls", peer,
            "--initial-cluster", self.initial_cluster, "--initial-cluster-state", "new",
            "--heartbeat-interval", "50", "--election-timeout", "500", "--log-level", "warn",
        ]  # fmt: skip
        with self.log.open("ab") as log:
            self.process = subprocess.Popen(
                args, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
            )

    def signal(self, sig: int) -> None:
        if self.process is not None and self.process.poll() is None:
            os.kill(self.process.pid, sig)
            self.process.wait(timeout=10)
        self.process = None

    def kill(self) -> None:
        self.signal(signal.SIGKILL)

    def stop(self) -> None:
        self.signal(signal.SIGTERM)

    @property
    def running(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def healthy(self) -> bool:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{self.client_port}/health", timeout=1) as r:
                return b'"true"' in r.read()
        except OSError:
            return False


class EtcdCluster:
    def __init__(self, root: Path, size: int = 3) -> None:
        root.mkdir(parents=True, exist_ok=True)
        ports = free_ports(2 * size)
        names = [f"m{i}" for i in range(size)]
        initial = ",".join(f"{n}=http://127.0.0.1:{ports[size + i]}" for i, n in enumerate(names))
        self.members = [
            EtcdMember(n, root / n, ports[i], ports[size + i], initial) for i, n in enumerate(names)
        ]

    @property
    def endpoints(self) -> list[tuple[str, int]]:
        return [m.endpoint for m in self.members]

    @property
    def url(self) -> str:
        return "etcd://" + ",".join(f"{h}:{p}" for h, p in self.endpoints)

    def start(self) -> EtcdCluster:
        for m in self.members:
            m.start()
        self.wait_healthy()
        return self

    def wait_healthy(self, timeout: float = 20.0) -> None:
        """Until every running member reports a leader (etcd's /health)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if all(m.healthy() for m in self.members if m.running):
                return
            time.sleep(0.05)
        logs = "\n".join(m.log.read_text(errors="replace")[-2000:] for m in self.members if m.log.exists())
        raise RuntimeError(f"etcd cluster not healthy within {timeout}s\n{logs}")

    def member(self, endpoint: tuple[str, int]) -> EtcdMember:
        return next(m for m in self.members if m.endpoint == tuple(endpoint))

    def leader(self) -> EtcdMember:
        """The member the running members agree leads (etcd's maintenance status)."""
        for m in self.members:
            if not m.running:
                continue
            request = urllib.request.Request(f"http://127.0.0.1:{m.client_port}/v3/maintenance/status", b"{}")
            with urllib.request.urlopen(request, timeout=2) as r:
                status = json.loads(r.read())
            if status["leader"] == status["header"]["member_id"]:
                return m
        raise RuntimeError("no member is the leader")

    def restart(self, member: EtcdMember) -> None:
        if not member.running:
            member.start()

    def close(self) -> None:
        for m in self.members:
            m.kill()
