"""Checks an instance must pass before the registry accepts it.

`ServiceInstance` and `HealthCheck` validate their own core fields when built; they are
mutable, so the registry runs those checks again and adds the caps that keep one bad
registration from bloating every snapshot: tags, metadata, address syntax, zone and
version. Each error is a ValueError that starts with the field's name; nothing is clamped.
Address *policy* (refusing link-local or cloud-metadata targets) is a separate hook,
`AddressPolicy`, supplied by the caller.
"""

from __future__ import annotations

import ipaddress
import re
from dataclasses import replace

from meshkit.registry.base import AddressPolicy
from meshkit.types import ServiceInstance, ServiceState

MAX_TAGS = 32
MAX_TAG_LEN = 128
MAX_METADATA_KEYS = 64
MAX_METADATA_KEY_LEN = 128
MAX_METADATA_VALUE_LEN = 1024
MAX_LABEL_LEN = 64  # zone and version

TAG_RE = re.compile(r"^[A-Za-z0-9._:/=+@-]{1,128}$")
LABEL_RE = re.compile(r"^[A-Za-z0-9._:+-]{0,64}$")
SERVICE_ID_RE = re.compile(r"^[A-Za-z0-9._:%@\[\]-]{1,256}$")
HOST_LABEL_RE = re.compile(r"^(?!-)[A-Za-z0-9_-]{1,63}(?<!-)$")  # _ for container names
SAFE_CHARS = "letters, digits and . _ : / = + @ -"


def validate_instance(instance: ServiceInstance) -> ServiceInstance:
    """Raise ValueError naming the first bad field; return the instance unchanged when valid."""
    if not isinstance(instance, ServiceInstance):
        raise ValueError(f"instance: must be a ServiceInstance, got {type(instance).__name__}")
    instance.__post_init__()  # name, port, weight, non-empty address and id, again
    if instance.check is not None:
        instance.check.__post_init__()
    if not isinstance(instance.service_id, str) or not SERVICE_ID_RE.match(instance.service_id):
        raise ValueError(
            "service_id: must be 1-256 characters of letters, digits and . _ : % @ [ ] -, "
            f"got {instance.service_id!r}"
        )
    validate_address(instance.address)
    validate_tags(instance.tags)
    validate_metadata(instance.metadata)
    for name in ("zone", "version"):
        value = getattr(instance, name)
        if not isinstance(value, str) or not LABEL_RE.match(value):
            raise ValueError(f"{name}: must be at most 64 letters, digits or . _ : + -, got {value!r}")
    if not isinstance(instance.state, ServiceState):
        allowed = ", ".join(s.value for s in ServiceState)
        raise ValueError(f"state: must be one of {allowed}, got {instance.state!r}")
    ttl = instance.ttl
    if ttl is not None and (isinstance(ttl, bool) or not isinstance(ttl, int | float) or ttl <= 0):
        raise ValueError(f"ttl: must be None or a number of seconds > 0, got {ttl!r}")
    return instance


def validate_address(address: str) -> str:
    """A host name (RFC 1123) or an IP literal; not a URL, not bracketed, no port."""
    try:
        ipaddress.ip_address(address)
        return address
    except ValueError:
        pass
    labels = address.rstrip(".").split(".") if len(address) <= 253 else []
    if not labels or not all(HOST_LABEL_RE.match(label) for label in labels):
        raise ValueError(
            f"address: must be a host name or an IP address (no scheme or port), got {address!r}"
        )
    return address


def validate_tags(tags: object) -> None:
    if not isinstance(tags, list):
        raise ValueError(f"tags: must be a list of strings, got {type(tags).__name__}")
    if len(tags) > MAX_TAGS:
        raise ValueError(f"tags: at most {MAX_TAGS} tags, got {len(tags)}")
    for tag in tags:
        if not isinstance(tag, str) or not TAG_RE.match(tag):
            raise ValueError(f"tags: each tag must be 1-{MAX_TAG_LEN} {SAFE_CHARS}, got {tag!r:.80}")


def validate_metadata(metadata: object) -> None:
    if not isinstance(metadata, dict):
        raise ValueError(f"metadata: must be a mapping of strings, got {type(metadata).__name__}")
    if len(metadata) > MAX_METADATA_KEYS:
        raise ValueError(f"metadata: at most {MAX_METADATA_KEYS} keys, got {len(metadata)}")
    for key, value in metadata.items():
        if not isinstance(key, str) or not TAG_RE.match(key):
            raise ValueError(
                f"metadata: each key must be 1-{MAX_METADATA_KEY_LEN} {SAFE_CHARS}, got {key!r:.80}"
            )
        if not isinstance(value, str) or len(value) > MAX_METADATA_VALUE_LEN:
            raise ValueError(
                f"metadata: value of {key!r} must be a string of at most {MAX_METADATA_VALUE_LEN} "
                f"characters, got {type(value).__name__} of length {len(str(value))}"
            )


def admit(instance: ServiceInstance, policy: AddressPolicy | None) -> ServiceInstance:
    """What every backend does before a write: validate each field, ask the address policy,
    and return a copy the caller can no longer change under the registry's feet."""
    validate_instance(instance)
    if policy is not None:
        policy(instance.address)
    return replace(
        instance,
        tags=list(instance.tags),
        metadata=dict(instance.metadata),
        check=replace(instance.check) if instance.check is not None else None,
        connections=0,
    )
