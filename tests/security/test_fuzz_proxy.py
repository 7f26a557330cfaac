"""10,000 malformed HTTP requests at a real `meshkit proxy` process: it must not crash, must answer
nothing with a 500, and must serve a good request afterwards.

Requests come from a seeded generator (random bytes, broken request lines, bad header syntax,
truncated bodies, huge headers, invalid chunk sizes, ambiguous framing, and byte-level mutations
of a good request), each on its own connection over a raw socket, at most 64 at a time. Each
connection is read until the proxy closes it or 1 s passes; answers are counted by class.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import time
from collections import Counter
from collections.abc import Callable

import aiohttp
import pytest

from tests.conftest import StartUpstream
from tests.security.conftest import Figures, ProxyProcess, register, status_of
from tests.support.plane import PlaneProcess

CONCURRENCY = 64
GOOD = b"POST /fuzz/a?b=c HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: 5\r\nX-A: b\r\n\r\nhello"
METHODS = [
    b"GET",
    b"POST",
    b"PUT",
    b"DELETE",
    b"PATCH",
    b"HEAD",
    b"OPTIONS",
    b"CONNECT",
    b"TRACE",
    b"PRI",
    b"G\x00T",
    b"",
]
TARGETS = [
    b"/",
    b"/fuzz/x",
    b"*",
    b"http://169.254.169.254/",
    b"//x",
    b"/a/../b",
    b"/%00",
    b"/fuzz/%zz",
    b"",
    b"/\xff\xfe",
]
VERSIONS = [
    b"HTTP/1.1",
    b"HTTP/1.0",
    b"HTTP/2.0",
    b"HTTP/9.9",
    b"HTTP/1.1x",
    b"HTTP/",
    b"http/1.1",
    b"",
    b"HTTP/1.1 extra",
]


def raw_bytes(rng: random.Random) -> bytes:
    return rng.randbytes(rng.randint(0, 2048))


def request_line(rng: random.Random) -> bytes:
    sep = rng.choice([b" ", b"  ", b"\t", b"", b" \x00 "])
    line = rng.choice(METHODS) + sep + rng.choice(TARGETS) + rng.choice([b" ", b""]) + rng.choice(VERSIONS)
    return line + rng.choice([b"\r\n", b"\n", b"\r", b""]) + b"Host: a\r\n\r\n"


def header_syntax(rng: random.Random) -> bytes:
    bad = rng.choice(
        [b"NoColon", b"Bad Name: v", b": empty-name", b"X-A:\x00", b"X-\xff: v", b" leading: space", b"X-A: v\r\n fold",
         b"X-A: v\rX-B: w", b"X" * 300 + b":", b"Content-Length: abc", b"Host: a\r\nHost: b", b"\x7f: del"]
    )  # fmt: skip
    return b"GET /fuzz/h HTTP/1.1\r\nHost: a\r\n" + bad + rng.choice([b"\r\n\r\n", b"\r\n", b""])


def truncated_body(rng: random.Random) -> bytes:
    declared = rng.randint(1, 100_000)
    return b"POST /fuzz/t HTTP/1.1\r\nHost: a\r\nContent-Length: %d\r\n\r\n" % declared + rng.randbytes(
        rng.randint(0, declared - 1)
    )


def huge_headers(rng: random.Random) -> bytes:
    if rng.random() < 0.5:
        return (
            b"GET /fuzz/big HTTP/1.1\r\nHost: a\r\nX-Big: " + b"v" * rng.randint(8_000, 100_000) + b"\r\n\r\n"
        )
    many = b"".join(b"X-%d: v\r\n" % i for i in range(rng.randint(100, 2000)))
    return b"GET /fuzz/many HTTP/1.1\r\nHost: a\r\n" + many + b"\r\n"


def chunk_sizes(rng: random.Random) -> bytes:
    size = rng.choice(
        [b"zz", b"-1", b"ffffffffffffffffffff", b"5 5", b"0x5", b"", b"5;\x00", b"1\r\n\r\n\r\n", b"\xff"]
    )
    tail = rng.choice([b"\r\nhello\r\n0\r\n\r\n", b"\r\nhel", b"\r\n", b"hello"])
    return b"POST /fuzz/c HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n" + size + tail


def framing(rng: random.Random) -> bytes:
    headers = rng.sample(
        [b"Content-Length: 5", b"Content-Length: 6", b"Transfer-Encoding: chunked", b"Transfer-Encoding: gzip",
         b"Transfer-Encoding: chunked, identity", b"Content-Length: -5", b"Transfer-Encoding:\tchunked"],
        rng.randint(1, 3),
    )  # fmt: skip
    return (
        b"POST /fuzz/f HTTP/1.1\r\nHost: a\r\n" + b"\r\n".join(headers) + b"\r\n\r\n5\r\nhello\r\n0\r\n\r\n"
    )


def mutated(rng: random.Random) -> bytes:
    data = bytearray(GOOD)
    for _ in range(rng.randint(1, 8)):
        i = rng.randrange(len(data))
        op = rng.randrange(3)
        if op == 0:
            data[i] = rng.randrange(256)
        elif op == 1:
            data.insert(i, rng.randrange(256))
        elif len(data) > 1:
            del data[i]
    return bytes(data)


GENERATORS: list[Callable[[random.Random], bytes]] = [
    raw_bytes, request_line, header_syntax, truncated_body, huge_headers, chunk_sizes, framing, mutated,
]  # fmt: skip


async def send_one(port: int, data: bytes, half_close: bool) -> str:
    """The answer's class ("2xx".."4xx", 5xx codes exactly), "closed" (no answer) or "timeout"."""
    try:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
    except OSError:
        return "refused"
    try:
        writer.write(data)
        if half_close:
            writer.write_eof()
        await writer.drain()
        async with asyncio.timeout(1.0):
            first = await reader.read(16)
    except TimeoutError:
        return "timeout"
    except ConnectionError:
        return "closed"
    finally:
        writer.close()
        with contextlib.suppress(OSError):
            await writer.wait_closed()
    status = status_of(first + b"\r\n") if first else None
    if status is None:
        return "closed"
    return str(status) if status >= 500 else f"{status // 100}xx"  # 5xx exactly: 503 is a mesh answer


async def fuzz(proxy: ProxyProcess, total: int, seed: int) -> Counter[str]:
    rng = random.Random(seed)
    cases = [(GENERATORS[i % len(GENERATORS)](rng), rng.random() < 0.2) for i in range(total)]
    counts: Counter[str] = Counter()
    pending = iter(cases)

    async def worker() -> None:
        for data, half_close in pending:
            counts[await send_one(proxy.port, data, half_close)] += 1

    await asyncio.gather(*(worker() for _ in range(CONCURRENCY)))
    return counts


async def run(
    plane: PlaneProcess, proxy: ProxyProcess, upstreams: StartUpstream, figures: Figures, total: int
) -> None:
    up = await upstreams("fuzz")
    async with aiohttp.ClientSession() as session:
        await register(session, plane, "fuzz", up.port)
    started = time.perf_counter()
    counts = await fuzz(proxy, total, seed=11)
    elapsed = time.perf_counter() - started
    alive = proxy.alive()
    async with aiohttp.ClientSession() as session, session.get(f"{proxy.url}/fuzz/after") as resp:
        after = resp.status
    log = proxy.output()
    figures(
        f"security/fuzz_proxy[{total}]",
        {"requests": sum(counts.values()), "seconds": round(elapsed, 1), "alive": alive, "good_after": after,
         "aiohttp_parser_error_logs": log.count("Error handling request"),
         "meshkit_frames_in_tracebacks": log.count("/meshkit/"), **dict(sorted(counts.items()))},
    )  # fmt: skip
    assert sum(counts.values()) == total
    assert alive and after == 200
    assert not [k for k in counts if k.startswith("5") and k not in ("503", "504")], counts
    assert "/meshkit/" not in log, log[log.find("/meshkit/") - 2000 :][:4000]  # no error in meshkit's code
    assert counts["refused"] == 0


async def test_10000_malformed_requests_do_not_crash_the_proxy(
    plane: PlaneProcess, proxy: ProxyProcess, upstreams: StartUpstream, figures: Figures
) -> None:
    await run(plane, proxy, upstreams, figures, 10_000)


@pytest.mark.soak
@pytest.mark.timeout(1200)
async def test_100000_malformed_requests_do_not_crash_the_proxy(
    plane: PlaneProcess, proxy: ProxyProcess, upstreams: StartUpstream, figures: Figures
) -> None:
    await run(plane, proxy, upstreams, figures, 100_000)
