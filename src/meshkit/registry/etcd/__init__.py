"""The etcd v3 registry backend: `EtcdRegistry`, and `EtcdClient` that it and `LeaderElection` share.

`client.py` speaks etcd's JSON gateway with failover between members, `keys.py` lays out the
keyspace, `registry.py` is the `Registry`, and `watch.py` turns an etcd watch into snapshots.
"""

from meshkit.registry.etcd.client import EtcdClient, EtcdRequestFailed, parse_endpoints
from meshkit.registry.etcd.registry import EtcdRegistry

__all__ = ["EtcdClient", "EtcdRegistry", "EtcdRequestFailed", "parse_endpoints"]
