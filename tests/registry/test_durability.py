"""kill -9 after 1,000 acknowledged registrations: every acknowledged one is there after restart."""

from __future__ import annotations

import asyncio
import signal
import subprocess
import sys
from pathlib import Path

from meshkit.registry import EmbeddedRegistry

HELPER = Path(__file__).with_name("kill_helper.py")


async def stored_ids(data_dir: Path) -> set[str]:
    async with EmbeddedRegistry(data_dir) as registry:
        return {i.service_id for i in await registry.all_instances()}


def test_acknowledged_registrations_survive_kill_9(tmp_path: Path) -> None:
    # A plain Popen (not asyncio's child watcher): the kill and the exit status are exact.
    proc = subprocess.Popen([sys.executable, str(HELPER), str(tmp_path)], stdout=subprocess.PIPE, text=True)
    assert proc.stdout is not None
    acked: list[str] = []
    try:
        for line in proc.stdout:
            acked.append(line.strip())
            if len(acked) == 1000:
                proc.send_signal(signal.SIGKILL)
                break
        acked += [line.strip() for line in proc.stdout]  # acks printed before the kill landed count too
    finally:
        proc.kill()
        proc.wait(timeout=30)
    assert proc.returncode == -signal.SIGKILL, "the helper exited on its own before 1,000 acknowledgements"
    assert len(acked) >= 1000
    stored = asyncio.run(stored_ids(tmp_path))
    missing = [sid for sid in acked if sid not in stored]
    assert not missing, f"{len(missing)} acknowledged registrations lost, e.g. {missing[:3]}"
