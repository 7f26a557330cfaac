"""A stack: an ordered list of named layers that, built over a transport, makes a client.

A `Layer` takes the inner `Service` and returns a new one (tower's `Layer::layer`, a
Finagle `Filter`). The stack keeps each layer under a role name so a user can replace,
remove or insert one (`stack.replace("balancer", ...)`) and print what a call passes
through. Layers are listed outermost first: a request meets `stack.roles[0]` first.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass

from meshkit.service import Service

Layer = Callable[[Service], Service]


@dataclass(frozen=True, slots=True)
class StackEntry:
    role: str
    layer: Layer
    description: str = ""


class Stack:
    """Named layers, outermost first. `push` adds a new outermost layer (build bottom-up)."""

    def __init__(self, entries: list[StackEntry] | None = None) -> None:
        self._entries: list[StackEntry] = list(entries or [])
        self.version = 0  # bumped on every change, so a client knows to rebuild

    def _changed(self) -> Stack:
        self.version += 1
        return self

    @property
    def roles(self) -> list[str]:
        return [e.role for e in self._entries]

    def __iter__(self) -> Iterator[StackEntry]:
        return iter(self._entries)

    def __len__(self) -> int:
        return len(self._entries)

    def __contains__(self, role: object) -> bool:
        return any(e.role == role for e in self._entries)

    def _index(self, role: str) -> int:
        for i, entry in enumerate(self._entries):
            if entry.role == role:
                return i
        raise KeyError(f"role: no layer named {role!r} in stack; roles: {', '.join(self.roles)}")

    def _check_new(self, role: str) -> None:
        if not role or not isinstance(role, str):
            raise ValueError("role: must be a non-empty string")
        if role in self:
            raise ValueError(f"role: {role!r} is already in the stack")

    def push(self, role: str, layer: Layer, description: str = "") -> Stack:
        """Add `layer` outside every layer already pushed."""
        self._check_new(role)
        self._entries.insert(0, StackEntry(role, layer, description))
        return self._changed()

    def insert_before(self, role: str, new_role: str, layer: Layer, description: str = "") -> Stack:
        """Insert so a request meets `new_role` just before `role` (outside it)."""
        self._check_new(new_role)
        self._entries.insert(self._index(role), StackEntry(new_role, layer, description))
        return self._changed()

    def insert_after(self, role: str, new_role: str, layer: Layer, description: str = "") -> Stack:
        """Insert so a request meets `new_role` just after `role` (inside it)."""
        self._check_new(new_role)
        self._entries.insert(self._index(role) + 1, StackEntry(new_role, layer, description))
        return self._changed()

    def replace(self, role: str, layer: Layer, description: str | None = None) -> Stack:
        i = self._index(role)
        old = self._entries[i]
        desc = old.description if description is None else description
        self._entries[i] = StackEntry(role, layer, desc)
        return self._changed()

    def remove(self, role: str) -> Stack:
        del self._entries[self._index(role)]
        return self._changed()

    def describe(self) -> str:
        """One line per layer, outermost first, ending at the transport."""
        width = max((len(e.role) for e in self._entries), default=0)
        lines = [f"{e.role:<{width}}  {e.description}".rstrip() for e in self._entries]
        return "\n".join([*lines, f"{'transport':<{width}}  network I/O"])

    def build(self, transport: Service) -> Service:
        """Wrap the transport, innermost layer first, and return the outermost service."""
        service = transport
        for entry in reversed(self._entries):
            service = entry.layer(service)
        return service

    def copy(self) -> Stack:
        return Stack(list(self._entries))
