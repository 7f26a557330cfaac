"""Consul as the registry: `ConsulRegistry` speaks Consul's HTTP API (see registry.py)."""

from meshkit.registry.consul.registry import ConsulRegistry

__all__ = ["ConsulRegistry"]
