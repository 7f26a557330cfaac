"""`make run`: three local services called through the client stack, with what the mesh did.

Starts three instances of a `catalog` service on 127.0.0.1 (one of them starts failing
part-way through), sends a bounded run of calls through a `MeshClient`, and prints
which instance served each share, every breaker transition and every retry.
"""

from __future__ import annotations

import asyncio
import collections
import random

from aiohttp import web
from rich.console import Console
from rich.table import Table

from meshkit.client import MeshClient
from meshkit.errors import MeshError
from meshkit.events import BreakerTransition, Ejection, Event, RetryAttempt
from meshkit.resilience.breaker import BreakerPolicy
from meshkit.types import Request

console = Console()


async def start_instance(name: str, fail_after: int | None) -> tuple[web.AppRunner, int]:
    served = 0

    async def handle(request: web.Request) -> web.Response:
        nonlocal served
        served += 1
        if fail_after is not None and served > fail_after:
            return web.Response(status=503, text=f"{name} is overloaded")
        return web.json_response({"instance": name, "item": request.match_info["item"]})

    app = web.Application()
    app.router.add_get("/items/{item}", handle)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    return runner, int(port)


def describe_event(event: Event) -> str | None:
    if isinstance(event, BreakerTransition):
        return f"[yellow]breaker[/] {event.instance_id}: {event.old} -> {event.new} ({event.reason})"
    if isinstance(event, RetryAttempt):
        return f"[cyan]retry[/] {event.service_name} attempt {event.attempt} after {event.reason}"
    if isinstance(event, Ejection) and event.ejected:
        return f"[magenta]ejected[/] {event.instance_id} for {event.duration:.0f}s"
    return None


async def main(calls: int = 60) -> None:
    instances = [await start_instance(n, f) for n, f in (("a", None), ("b", None), ("c", 5))]
    addresses = [("127.0.0.1", port) for _, port in instances]
    client = MeshClient.static(
        {"catalog": addresses},
        strategy="round_robin",
        breaker=BreakerPolicy(failure_threshold=3, recovery_timeout=60.0),
        rng=random.Random(7),
    )
    def show(event: Event) -> None:
        line = describe_event(event)
        if line:
            console.print("  " + line)

    client.bus.subscribe(show)
    console.print(
        f"[bold]meshkit demo[/]: 3 instances of 'catalog' on {', '.join(str(p) for _, p in addresses)}"
    )
    console.print("instance c starts answering 503 after 5 requests\n")
    console.print("[bold]client stack[/] (outermost first):")
    console.print(client.describe(), highlight=False)
    console.print()
    served: collections.Counter[str] = collections.Counter()
    try:
        async with client:
            for i in range(calls):
                try:
                    resp = await client.call(Request("GET", f"/items/{i}", service="catalog"))
                    key = resp.instance.endpoint if resp.instance else "?"
                    served[f"{key} -> {resp.status}"] += 1
                except MeshError as exc:
                    served[f"error: {type(exc).__name__}"] += 1
            states = client.parts.breakers.states()
    finally:
        for runner, _ in instances:
            await runner.cleanup()
    table = Table(title=f"{calls} calls to 'catalog'")
    table.add_column("instance -> status")
    table.add_column("calls", justify="right")
    for key, count in sorted(served.items()):
        table.add_row(key, str(count))
    console.print(table)
    console.print("breaker states:", states or "all closed")


def run() -> None:
    asyncio.run(main())


if __name__ == "__main__":
    run()
