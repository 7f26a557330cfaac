"""Bad input: a clear error naming the field, and the registry left unchanged."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from meshkit.registry import EmbeddedRegistry, validate_instance
from meshkit.types import HealthCheck, ServiceInstance
from tests.registry.conftest import inst


def set_field(name: str, value: object) -> Callable[[ServiceInstance], None]:
    return lambda i: setattr(i, name, value)


def set_check_path(path: str) -> Callable[[ServiceInstance], None]:
    def apply(i: ServiceInstance) -> None:
        i.check = HealthCheck()
        i.check.path = path  # built valid, then mutated: the registry must check again

    return apply


BAD = [
    ("service_name", set_field("service_name", "Users_Service")),
    ("service_name", set_field("service_name", "a" * 65)),
    ("port", set_field("port", 0)),
    ("port", set_field("port", 65536)),
    ("port", set_field("port", True)),
    ("weight", set_field("weight", -1)),
    ("address", set_field("address", "http://10.0.0.1")),
    ("address", set_field("address", "10.0.0.1:80")),
    ("address", set_field("address", "bad host")),
    ("address", set_field("address", "-leading.example.com")),
    ("service_id", set_field("service_id", "has/slash")),
    ("tags", set_field("tags", ["ok"] * 33)),
    ("tags", set_field("tags", ["x" * 129])),
    ("tags", set_field("tags", ["white space"])),
    ("tags", set_field("tags", "not-a-list")),
    ("metadata", set_field("metadata", {f"k{i}": "v" for i in range(65)})),
    ("metadata", set_field("metadata", {"k": "v" * 1025})),
    ("metadata", set_field("metadata", {"k": 1})),
    ("metadata", set_field("metadata", {"": "v"})),
    ("zone", set_field("zone", "z" * 65)),
    ("version", set_field("version", "1.0 beta")),
    ("state", set_field("state", "fine")),
    ("ttl", set_field("ttl", 0)),
    ("check.path", set_check_path("http://169.254.169.254/latest")),
    ("check.path", set_check_path("//evil.example.com/")),
]


@pytest.mark.parametrize(("field", "mutate"), BAD, ids=[f"{f}-{n}" for n, (f, _) in enumerate(BAD)])
async def test_bad_instance_is_refused_and_registry_unchanged(
    registry: EmbeddedRegistry, field: str, mutate: Callable[[ServiceInstance], None]
) -> None:
    await registry.register(inst(port=1))
    revision = registry.revision
    bad = inst(port=2)
    mutate(bad)
    with pytest.raises(ValueError, match=f"^{field}: "):
        await registry.register(bad)
    assert registry.revision == revision
    assert [i.port for i in await registry.all_instances()] == [1]


@pytest.mark.parametrize(
    "address", ["10.0.0.1", "::1", "fe80::1%eth0", "users.svc.local", "db_1", "localhost"]
)
def test_good_addresses(address: str) -> None:
    validate_instance(inst(address=address))


def test_limits_are_inclusive() -> None:
    validate_instance(
        inst(
            tags=["t" * 128] * 32,
            metadata={f"k{i}": "v" * 1024 for i in range(64)},
            zone="z" * 64,
            version="v" * 64,
        )
    )


async def test_address_policy_hook_refuses(registry: EmbeddedRegistry) -> None:
    def no_link_local(address: str) -> None:
        if address.startswith("169.254."):
            raise ValueError(f"address: link-local addresses are refused, got {address!r}")

    with pytest.raises(ValueError, match=r"^address: link-local"):
        await registry.register(inst(address="169.254.169.254"), address_policy=no_link_local)
    assert await registry.all_instances() == []
    await registry.register(inst(address="10.1.1.1"), address_policy=no_link_local)
    assert len(await registry.all_instances()) == 1
