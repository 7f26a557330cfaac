"""The registry: which instances exist and how healthy they are, and a cache that outlives it.

`EmbeddedRegistry` (SQLite in a data directory, or in memory) is the default backend;
`CachedRegistry` sits in front of any backend so discovery keeps answering when it is down.
"""

from meshkit.registry.base import AddressPolicy, Registry, Snapshot, UnknownInstance
from meshkit.registry.cache import CachedRegistry
from meshkit.registry.embedded import EmbeddedRegistry
from meshkit.registry.validation import validate_instance

__all__ = [
    "AddressPolicy",
    "CachedRegistry",
    "EmbeddedRegistry",
    "Registry",
    "Snapshot",
    "UnknownInstance",
    "validate_instance",
]
