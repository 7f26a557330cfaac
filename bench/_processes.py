"""Server processes for benchmarks: started in their own session, pinned, waited for, always stopped.

Benchmarks that drive servers with an external load generator (wrk) run each server
as a child process. `BackgroundProcess` starts one with its output in a temporary log,
waits until its port accepts connections (or reports its log if it dies first) and
stops it with SIGTERM, then SIGKILL, on `stop()`, on leaving a `with` block and at
interpreter exit. `pinned_to(cpus)` sets this process's CPU affinity while a child is
spawned, so the child (and its own children, like nginx's workers) inherit it: on a
small machine the load generator and the server under test get a core each.
`ensure_binary` installs a missing Debian package with apt-get, saying so.
"""

from __future__ import annotations

import atexit
import contextlib
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from types import TracebackType


def ensure_binary(path: str, package: str) -> str:
    """`path`, installing Debian's `package` with apt-get first if it is missing."""
    if os.path.exists(path):
        return path
    print(f"{path} not found: running apt-get install -y {package}", file=sys.stderr)
    env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
    if subprocess.run(["apt-get", "install", "-y", package], env=env).returncode != 0:
        subprocess.run(["apt-get", "update"], env=env, check=True)
        subprocess.run(["apt-get", "install", "-y", package], env=env, check=True)
    if not os.path.exists(path):
        raise RuntimeError(f"{package} installed but {path} is still missing")
    return path


_USABLE = frozenset(os.sched_getaffinity(0))  # before any pinning narrows this process


def usable_cpus() -> set[int]:
    """The CPUs this process was allowed when it started (pinning itself later does not shrink it)."""
    return set(_USABLE)


@contextlib.contextmanager
def pinned_to(cpus: set[int] | None) -> Iterator[None]:
    """Run the block (and the children it spawns) on `cpus`; None or an unusable set leaves it be."""
    before = os.sched_getaffinity(0)
    # not `& before`: a parent pinned to the load core must still pin its children elsewhere
    wanted = (cpus or set()) & _USABLE
    if not wanted:
        yield
        return
    os.sched_setaffinity(0, wanted)
    try:
        yield
    finally:
        os.sched_setaffinity(0, before)


def wait_accepting(port: int, timeout: float, alive: subprocess.Popen[bytes], logs: Path) -> None:
    deadline = time.monotonic() + timeout
    while True:
        if alive.poll() is not None:
            raise RuntimeError(f"exited with {alive.returncode} before accepting: {tail(logs)}")
        if time.monotonic() > deadline:
            raise RuntimeError(f"did not accept on port {port} within {timeout}s: {tail(logs)}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return
        except OSError:
            time.sleep(0.05)


def tail(path: Path, chars: int = 2000) -> str:
    return path.read_text(errors="replace").strip()[-chars:] if path.exists() else ""


class BackgroundProcess:
    """`argv` as a child process listening on `port`, pinned to `cpus`, stopped at exit."""

    def __init__(
        self,
        name: str,
        argv: Sequence[str],
        port: int,
        *,
        cpus: set[int] | None = None,
        env: Mapping[str, str] | None = None,
        cwd: str | None = None,
    ) -> None:
        self.name = name
        self.argv = list(argv)
        self.port = port
        self.cpus = cpus
        self.env = dict(env) if env is not None else None
        self.cwd = cwd
        self.tmp = Path(tempfile.mkdtemp(prefix=f"meshkit-{name.replace(' ', '-')}-"))
        self.log = self.tmp / "output.log"
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def pid(self) -> int | None:
        return self.proc.pid if self.proc is not None else None

    def start(self, timeout: float = 20.0) -> BackgroundProcess:
        with self.log.open("wb") as log, pinned_to(self.cpus):
            self.proc = subprocess.Popen(
                self.argv,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                env=self.env,
                cwd=self.cwd,
                start_new_session=True,  # Ctrl-C reaches only the benchmark, which stops us
            )
        atexit.register(self.stop)
        try:
            wait_accepting(self.port, timeout, self.proc, self.log)
        except RuntimeError as exc:
            self.stop()
            raise RuntimeError(f"{self.name}: {exc}") from None
        return self

    def stop(self, timeout: float = 10.0) -> int | None:
        """Stop the process (SIGTERM, then SIGKILL after `timeout`); its exit code."""
        proc, self.proc = self.proc, None
        atexit.unregister(self.stop)
        if proc is None:
            return None
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(proc.pid, signal.SIGKILL)
                proc.wait(timeout=5)
        return proc.returncode

    def cleanup(self) -> None:
        self.stop()
        shutil.rmtree(self.tmp, ignore_errors=True)

    def __enter__(self) -> BackgroundProcess:
        return self.start()

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.cleanup()


def _children(pid: int) -> list[int]:
    found: list[int] = []
    try:
        for task in os.listdir(f"/proc/{pid}/task"):
            with open(f"/proc/{pid}/task/{task}/children") as listing:
                found += [int(child) for child in listing.read().split()]
    except OSError:
        pass
    return found


def tree_cpu_seconds(pid: int) -> float:
    """User + system CPU seconds of `pid` and its descendants so far (0 for a process gone)."""
    ticks = os.sysconf("SC_CLK_TCK")
    total, pending = 0.0, [pid]
    while pending:
        current = pending.pop()
        try:
            with open(f"/proc/{current}/stat") as stat:
                fields = stat.read().rsplit(")", 1)[1].split()
        except OSError:
            continue
        total += (int(fields[11]) + int(fields[12])) / ticks  # utime, stime (fields 14, 15)
        pending += _children(current)
    return total
