"""TTL-check reports as etcd writes, so the elected control plane hears heartbeats sent to any plane.

In Consul a TTL check update (`PUT /v1/agent/check/pass/:id`) is a write that the check's
owner sees, whichever agent received it. Here the owner is the control plane elected to run
the health checker (`LeaderElection`); a plane that is standing by writes each report as a
key `ttl-reports/{id}` holding `{"status", "note"}` on the instance's lease (so it disappears
with the instance), and the elected plane follows that prefix with an etcd watch and hands
every report to its checker. Only PUTs are reports; deletions (expiry, deregistration) are not.

`follow_reports` starts at the store's revision when it is first awaited (or at a revision
it is given) and yields each report put after it, in order. Its progress is the mod_revision of the last event it yielded, not
a response header (a header may run ahead of events still being replayed), so when the
stream breaks the watch is opened again on another member from there and etcd replays what
was missed. If that history was compacted meanwhile, the reports in between are lost (they
are heartbeats, and the next one comes within the ttl) and the watch goes on from the
compaction point. When no member will take the watch, RegistryUnavailable ends the stream.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import AsyncGenerator

import orjson

from meshkit.registry.base import UnknownInstance
from meshkit.registry.etcd import keys
from meshkit.registry.etcd.client import EtcdClient, EtcdRequestFailed, prefix_end, unb64
from meshkit.registry.etcd.watch import Compacted, watch_events

log = logging.getLogger(__name__)

STATUSES = ("pass", "warn", "fail")  # what a TTL check may report, as HealthChecker.report_ttl takes it
MAX_NOTE = 1024  # characters

Report = tuple[str, str, str]  # (service_id, status, note)


def encode_report(status: str, note: str) -> bytes:
    """The value of a report key; ValueError naming the field for a bad status or note."""
    if status not in STATUSES:
        raise ValueError(f"status: must be one of {', '.join(STATUSES)}, got {status!r}")
    if not isinstance(note, str) or len(note) > MAX_NOTE:
        raise ValueError(f"note: must be a string of at most {MAX_NOTE} characters, got {note!r:.60}")
    return orjson.dumps({"status": status, "note": note})


async def put_report(client: EtcdClient, space: keys.Keyspace, service_id: str, value: bytes) -> None:
    """Write a report on the instance's lease, guarded by its id key; UnknownInstance if it is gone.

    The id key's mod_revision guards the write, so a report never outlives a deregistration
    that happened between the read and the write (nor lands on a re-registration's old lease).
    """
    id_key, key = space.id(service_id), space.report(service_id)
    while True:
        kvs, _ = await client.range(id_key)
        if not kvs:
            raise UnknownInstance(service_id)
        put = keys.put(key, value, int(kvs[0].get("lease", 0)))
        try:
            reply = await client.txn([keys.unchanged(id_key, int(kvs[0]["mod_revision"]))], [put], [])
        except EtcdRequestFailed:  # etcd refused the lease: it expired between the read and the write
            if (await client.range(id_key))[0]:
                raise
            raise UnknownInstance(service_id) from None
        if reply.get("succeeded"):
            return


async def follow_reports(
    client: EtcdClient, prefix: bytes, after: int | None = None
) -> AsyncGenerator[Report, None]:
    """Every report put under `prefix` after revision `after` (None: now), across member failures."""
    if after is not None and (isinstance(after, bool) or not isinstance(after, int) or after < 0):
        raise ValueError(f"after: must be None or an etcd revision >= 0, got {after!r}")
    end = prefix_end(prefix)
    if after is None:
        _, after = await client.range(prefix)  # one key, only for the revision "now"
    revision = after
    while True:
        try:
            async with contextlib.aclosing(watch_events(client, prefix, end, revision)) as stream:
                async for events, last in stream:
                    revision = last  # where a compaction leaves us
                    for event in events:
                        if event.get("type") == "DELETE":
                            continue
                        report = _decode(event["kv"], len(prefix))
                        if report is not None:
                            yield report
        except Compacted as e:
            log.warning(
                "ttl reports: history compacted at %d; reports after %d are lost", e.revision, revision
            )
            revision = max(revision, e.revision - 1)


def _decode(kv: dict[str, str], skip: int) -> Report | None:
    service_id = unb64(kv["key"])[skip:].decode()
    try:
        value = orjson.loads(unb64(kv.get("value")))
        status, note = str(value["status"]), str(value.get("note", ""))
    except (orjson.JSONDecodeError, KeyError, TypeError) as e:
        log.warning("ttl reports: ignoring a malformed report for %r: %s", service_id, e)
        return None
    return service_id, status, note
