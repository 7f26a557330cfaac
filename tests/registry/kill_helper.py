"""Registers instances forever, printing each id once its registration is acknowledged.

Run by test_durability.py as `python kill_helper.py DATA_DIR`, which kills it with SIGKILL.
"""

from __future__ import annotations

import asyncio
import itertools
import sys

from meshkit.registry import EmbeddedRegistry
from meshkit.types import ServiceInstance

WORKERS = 32


async def main(data_dir: str) -> None:
    registry = EmbeddedRegistry(data_dir)
    await registry.start()
    counter = itertools.count()

    async def worker() -> None:
        while True:
            n = next(counter)
            name = f"svc-{n % 50}"
            record = await registry.register(ServiceInstance(f"{name}-{n}", name, "10.0.0.1", 1 + n % 65535))
            sys.stdout.write(record.service_id + "\n")
            sys.stdout.flush()

    await asyncio.gather(*(worker() for _ in range(WORKERS)))


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1]))
