"""Bad input: a JSON 4xx naming what is wrong, never a 500, and nothing changed in the registry."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from tests.plane.api.conftest import ADMIN, Api, StartApi

REGISTER = "/api/v1/mesh/v2/register"
GOOD = {"service_name": "svc", "address": "127.0.0.1", "port": 8080}

RAW_BODIES = [
    b"{",
    b"not json at all",
    b"\x00\xff\xfe\x80binary",
    b'{"service_name": "svc", "address": "127.0.0.1", "port": 8080,}',
    b'{"service_name": "svc\\ud800", "address": "127.0.0.1", "port": 8080}',
    b'{"service_name": "svc", "address": "127.0.0.1", "port": 8080, "metadata": {"k": "\\udc80"}}',
    b'{"service_name": "svc", "address": "127.0.0.1", "port": 8080, "metadata": {"\\ud800": "v"}}',
    b'{"service_name": "svc", "address": "127.0.0.1", "port": NaN}',
    b'{"service_name": "svc", "address": "127.0.0.1", "port": 8080, "ttl": Infinity}',
    b'{"service_name": "svc", "address": "127.0.0.1", "port": 1e400}',
    b"[]",
    b"null",
    b'"string"',
    b"\xef\xbb\xbf{}",
]

JSON_BODIES = [
    {**GOOD, "unknown": 1},
    {**GOOD, "port": "eighty"},
    {**GOOD, "port": 0},
    {**GOOD, "port": 70000},
    {**GOOD, "port": 10**30},
    {**GOOD, "service_name": "Bad_Name"},
    {**GOOD, "service_name": ""},
    {**GOOD, "service_name": "a" * 65},
    {**GOOD, "tags": "notalist"},
    {**GOOD, "tags": ["ok", "bad tag"]},
    {**GOOD, "tags": ["t"] * 33},
    {**GOOD, "metadata": [1, 2]},
    {**GOOD, "metadata": {"k": "v" * 2000}},
    {**GOOD, "address": "http://127.0.0.1"},
    {**GOOD, "address": "169.254.169.254"},
    {**GOOD, "address": "0x7f.1"},
    {**GOOD, "address": "metadata.google.internal"},
    {**GOOD, "weight": -1},
    {**GOOD, "zone": "bad zone"},
    {**GOOD, "check": {"kind": "gopher"}},
    {**GOOD, "check": {"path": "http://evil/"}},
    {**GOOD, "check": {"interval": 0}},
    {**GOOD, "check": {"kind": "ttl"}},
    {**GOOD, "check": {"unknown": True}},
    {**GOOD, "ttl": -5},
    {**GOOD, "service_id": "has space"},
    {
        **GOOD,
        "metadata": {
            "deep": [
                [
                    [
                        [
                            [
                                [
                                    [
                                        [
                                            [
                                                [
                                                    [
                                                        [
                                                            [
                                                                [
                                                                    [
                                                                        [
                                                                            [
                                                                                [
                                                                                    [
                                                                                        [
                                                                                            [
                                                                                                [
                                                                                                    [
                                                                                                        [
                                                                                                            [
                                                                                                                [
                                                                                                                    [
                                                                                                                        [
                                                                                                                            [
                                                                                                                                [
                                                                                                                                    [
                                                                                                                                        [
                                                                                                                                            [
                                                                                                                                                [
                                                                                                                                                    [
                                                                                                                                                        [
                                                                                                                                                            [
                                                                                                                                                                [
                                                                                                                                                                    [
                                                                                                                                                                        [
                                                                                                                                                                            [
                                                                                                                                                                                [
                                                                                                                                                                                    [
                                                                                                                                                                                        [
                                                                                                                                                                                            [
                                                                                                                                                                                                [
                                                                                                                                                                                                    [
                                                                                                                                                                                                        [
                                                                                                                                                                                                            [
                                                                                                                                                                                                                [
                                                                                                                                                                                                                    [
                                                                                                                                                                                                                        [
                                                                                                                                                                                                                            [
                                                                                                                                                                                                                                [
                                                                                                                                                                                                                                    [
                                                                                                                                                                                                                                        [
                                                                                                                                                                                                                                            [
                                                                                                                                                                                                                                                [
                                                                                                                                                                                                                                                    [
                                                                                                                                                                                                                                                        [
                                                                                                                                                                                                                                                            [
                                                                                                                                                                                                                                                                [
                                                                                                                                                                                                                                                                    [
                                                                                                                                                                                                                                                                        [
                                                                                                                                                                                                                                                                            [
                                                                                                                                                                                                                                                                                [
                                                                                                                                                                                                                                                                                    [
                                                                                                                                                                                                                                                                                        [
                                                                                                                                                                                                                                                                                            1
                                                                                                                                                                                                                                                                                        ]
                                                                                                                                                                                                                                                                                    ]
                                                                                                                                                                                                                                                                                ]
                                                                                                                                                                                                                                                                            ]
                                                                                                                                                                                                                                                                        ]
                                                                                                                                                                                                                                                                    ]
                                                                                                                                                                                                                                                                ]
                                                                                                                                                                                                                                                            ]
                                                                                                                                                                                                                                                        ]
                                                                                                                                                                                                                                                    ]
                                                                                                                                                                                                                                                ]
                                                                                                                                                                                                                                            ]
                                                                                                                                                                                                                                        ]
                                                                                                                                                                                                                                    ]
                                                                                                                                                                                                                                ]
                                                                                                                                                                                                                            ]
                                                                                                                                                                                                                        ]
                                                                                                                                                                                                                    ]
                                                                                                                                                                                                                ]
                                                                                                                                                                                                            ]
                                                                                                                                                                                                        ]
                                                                                                                                                                                                    ]
                                                                                                                                                                                                ]
                                                                                                                                                                                            ]
                                                                                                                                                                                        ]
                                                                                                                                                                                    ]
                                                                                                                                                                                ]
                                                                                                                                                                            ]
                                                                                                                                                                        ]
                                                                                                                                                                    ]
                                                                                                                                                                ]
                                                                                                                                                            ]
                                                                                                                                                        ]
                                                                                                                                                    ]
                                                                                                                                                ]
                                                                                                                                            ]
                                                                                                                                        ]
                                                                                                                                    ]
                                                                                                                                ]
                                                                                                                            ]
                                                                                                                        ]
                                                                                                                    ]
                                                                                                                ]
                                                                                                            ]
                                                                                                        ]
                                                                                                    ]
                                                                                                ]
                                                                                            ]
                                                                                        ]
                                                                                    ]
                                                                                ]
                                                                            ]
                                                                        ]
                                                                    ]
                                                                ]
                                                            ]
                                                        ]
                                                    ]
                                                ]
                                            ]
                                        ]
                                    ]
                                ]
                            ]
                        ]
                    ]
                ]
            ]
        },
    },
    {"service_name": "svc"},
    {},
]


@pytest.fixture
async def checked(api: Api) -> AsyncIterator[Api]:
    yield api
    code, found = await api.request("GET", "/discover/svc")
    assert code == 200 and found["total"] == 0, found  # nothing was registered
    code, topo = await api.request("GET", "/topology")
    assert topo["total_instances"] == 0


async def _post_raw(
    api: Api, path: str, data: bytes, content_type: str = "application/json"
) -> tuple[int, object]:
    headers = {"Content-Type": content_type, "Authorization": f"Bearer {ADMIN}"}
    async with api.session.post(api.url + path, data=data, headers=headers) as resp:
        assert resp.headers.get("Content-Type", "").startswith("application/json"), await resp.text()
        return resp.status, await resp.json()


async def test_malformed_bodies_are_422(checked: Api) -> None:
    for raw in RAW_BODIES:
        code, body = await _post_raw(checked, REGISTER, raw)
        assert code == 422, (raw, body)
        assert isinstance(body, dict) and body["detail"]


async def test_invalid_fields_are_422_naming_the_field(checked: Api) -> None:
    fields = {"address", "tags", "metadata", "zone", "check.path", "service_id", "check.ttl"}
    for payload in JSON_BODIES:
        code, body = await checked.request("POST", "/register", json=payload)
        assert code == 422, (payload, body)
        detail = body["detail"]
        if isinstance(detail, list):
            assert all("loc" in e and "msg" in e for e in detail)
        else:
            assert detail.split(":")[0] in fields, detail


async def test_non_json_content_types_are_refused(checked: Api) -> None:
    for ctype in ("text/plain", "application/octet-stream", "multipart/form-data; boundary=x"):
        code, body = await _post_raw(checked, REGISTER, b'{"service_name":"svc"}', ctype)
        assert 400 <= code < 500, (ctype, body)


async def test_oversized_bodies_are_413_json(checked: Api) -> None:
    big = (
        b'{"service_name": "svc", "address": "127.0.0.1", "port": 8080, "tags": ["'
        + b"a" * (2 << 20)
        + b'"]}'
    )
    code, body = await _post_raw(checked, REGISTER, big)
    assert code == 413 and body["detail"].startswith("body:")

    async def chunks():  # type: ignore[no-untyped-def]
        for _ in range(40):
            yield b"x" * 65536

    headers = {"Content-Type": "application/json", "Authorization": f"Bearer {ADMIN}"}
    async with checked.session.post(checked.url + REGISTER, data=chunks(), headers=headers) as resp:
        assert resp.status == 413 and (await resp.json())["detail"].startswith("body:")


async def test_call_input_errors(checked: Api, upstreams) -> None:
    up = await upstreams("u")
    await checked.register("target", up.port)
    cases = [
        ({"service_name": "target", "path": "/../etc/passwd"}, 400, "path:"),
        ({"service_name": "target", "path": "//evil.example/"}, 400, "path:"),
        ({"service_name": "target", "path": "http://169.254.169.254/"}, 400, "path:"),
        ({"service_name": "target", "path": "/a%2f..%2fb"}, 400, "path:"),
        ({"service_name": "target", "headers": {"X-Bad": "a\r\nInjected: 1"}}, 400, "headers:"),
        ({"service_name": "target", "headers": {"Bad Name": "v"}}, 400, "headers:"),
        ({"service_name": "target", "method": "CONNECT"}, 422, "method:"),
        ({"service_name": "target", "timeout": 0}, 422, None),
        ({"service_name": "target", "retry_count": 11}, 422, None),
        ({"service_name": "target", "body": {"n": 10**30}}, 200, None),
        ({"service_name": "target", "extra": 1}, 422, None),
    ]
    for payload, expected, prefix in cases:
        code, body = await checked.request("POST", "/call", json=payload)
        assert code == expected, (payload if len(str(payload)) < 200 else payload.keys(), body)
        if prefix:
            assert body["detail"].startswith(prefix), body
    await checked.request("DELETE", f"/deregister/target-127.0.0.1-{up.port}")
    assert up.paths == ["/"]  # only the big-integer body reached the upstream


async def test_call_body_over_the_forwarding_cap_is_413(start_api: StartApi, upstreams) -> None:
    api = await start_api(max_body_bytes=1024)
    up = await upstreams("u")
    await api.register("target", up.port)
    for body in ("x" * 1025, {"list": ["y"] * 400}):
        code, answer = await api.request("POST", "/call", json={"service_name": "target", "body": body})
        assert code == 413 and answer["detail"].startswith("body:"), answer
    code, _ = await api.request("POST", "/call", json={"service_name": "target", "body": "x" * 1024})
    assert code == 200
    assert up.hits == 1


async def test_bad_query_and_path_parameters(checked: Api) -> None:
    cases = [
        ("GET", "/discover/UPPER", 422),
        ("GET", "/discover/" + "a" * 65, 422),
        ("GET", "/discover/svc?use_cache=maybe", 422),
        ("POST", "/configure/load-balancer?strategy=fastest", 422),
        ("POST", "/configure/load-balancer", 422),
        ("POST", "/configure/circuit-breaker?failure_threshold=0", 422),
        ("POST", "/configure/circuit-breaker?recovery_timeout=abc", 422),
        ("POST", "/configure/retry?max_attempts=12", 422),
        ("POST", "/configure/retry?base_delay=nan", 422),
        ("POST", "/configure/retry?base_delay=5&max_delay=1", 422),
        ("POST", "/configure/health-check?interval=inf", 422),
        ("POST", "/configure/health-check?path=nope", 422),
        ("GET", "/results?topic=BAD TOPIC", 422),
        ("GET", "/traces?limit=0", 422),
        ("GET", "/traces?min_duration=5&max_duration=1", 422),
        ("GET", "/traces/not-hex", 422),
        ("GET", "/traces/" + "0" * 31 + "1", 404),
        ("GET", "/dependencies?window=-1", 422),
        ("DELETE", "/deregister/%ED%A0%80", 404),
        ("GET", "/instances/%00", 404),
        ("GET", "/no-such-endpoint", 404),
        ("PATCH", "/register", 405),
    ]
    for method, path, expected in cases:
        code, body = await checked.request(method, path)
        assert code == expected, (method, path, body)
        assert isinstance(body, dict) and "detail" in body, (path, body)
    code, config = await checked.request("GET", "/config")
    assert config["retry"]["max_attempts"] == 3 and config["load_balancer"]["strategy"] == "p2c_ewma"
