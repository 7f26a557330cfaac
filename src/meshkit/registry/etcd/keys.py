"""Where the etcd registry keeps things, and how an instance is written into a value.

Layout under the prefix (default `/meshkit/`), as etcd users lay out a keyspace:

    instances/{service}/{id}   the instance, as the embedded store's JSON plus "since"
    ids/{id}                   the service the id belongs to, so calls by id find its key
    settings/{key}             the control plane's JSON settings
    ttl-reports/{id}           the last TTL-check report sent through a standby plane (`reports.py`)
    election/{name}            the holder of a LeaderElection

An instance with a `ttl` has both of its keys (and its TTL report) on one lease of that TTL,
so etcd removes them together when heartbeats stop. "since" is the wall time of the last
state change: several control planes share the registry, so the critical timer cannot live
in one of them.
"""

from __future__ import annotations

from typing import Any

import orjson

from meshkit.registry.etcd.client import b64, prefix_end, unb64
from meshkit.registry.store import decode_instance, encode_instance
from meshkit.types import ServiceInstance


class Keyspace:
    __slots__ = ("ids", "instances", "prefix", "reports", "settings")

    def __init__(self, prefix: str) -> None:
        if not isinstance(prefix, str) or not prefix.startswith("/") or not prefix.endswith("/"):
            raise ValueError(f"prefix: must start and end with '/', got {prefix!r}")
        self.prefix = prefix.encode()
        self.instances = self.prefix + b"instances/"
        self.ids = self.prefix + b"ids/"
        self.settings = self.prefix + b"settings/"
        self.reports = self.prefix + b"ttl-reports/"

    def instance(self, service: str, service_id: str) -> bytes:
        return self.instances + f"{service}/{service_id}".encode()

    def id(self, service_id: str) -> bytes:
        return self.ids + service_id.encode()

    def report(self, service_id: str) -> bytes:
        return self.reports + service_id.encode()

    def service_range(self, service: str | None) -> tuple[bytes, bytes]:
        """[start, end) of one service's instances, or of every instance for None."""
        start = self.instances if service is None else self.instances + f"{service}/".encode()
        return start, prefix_end(start)

    def election(self, name: str) -> bytes:
        return self.prefix + f"election/{name}".encode()


def encode(inst: ServiceInstance, since: float) -> bytes:
    return encode_instance(inst)[:-1] + b',"since":' + orjson.dumps(since) + b"}"


def decode(kv: dict[str, Any]) -> ServiceInstance:
    return decode_instance(unb64(kv.get("value")))


def since(kv: dict[str, Any]) -> float:
    return float(orjson.loads(unb64(kv.get("value"))).get("since", 0.0))


def put(key: bytes, value: bytes, lease: int = 0, *, ignore_lease: bool = False) -> dict[str, Any]:
    request: dict[str, Any] = {"key": b64(key), "value": b64(value)}
    if lease:
        request["lease"] = str(lease)
    if ignore_lease:
        request["ignore_lease"] = True
    return {"request_put": request}


def delete(key: bytes) -> dict[str, Any]:
    return {"request_delete_range": {"key": b64(key)}}


def get(key: bytes) -> dict[str, Any]:
    return {"request_range": {"key": b64(key)}}


def absent(key: bytes) -> dict[str, Any]:
    return {"key": b64(key), "target": "VERSION", "result": "EQUAL", "version": "0"}


def unchanged(key: bytes, mod_revision: int) -> dict[str, Any]:
    return {"key": b64(key), "target": "MOD", "result": "EQUAL", "mod_revision": str(mod_revision)}


def first_range(reply: dict[str, Any]) -> list[dict[str, Any]]:
    """The kvs of a txn's first (range) response."""
    responses = reply.get("responses") or [{}]
    kvs: list[dict[str, Any]] = responses[0].get("response_range", {}).get("kvs", [])
    return kvs
