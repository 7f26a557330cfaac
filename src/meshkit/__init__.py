"""meshkit: a service mesh for Python, embedded in the service instead of beside it.

The public names live here; modules behind them may move.
"""

from meshkit.client import MeshClient, default_stack
from meshkit.clock import FakeClock, SystemClock
from meshkit.errors import (
    CircuitOpen,
    ConnectError,
    ConnectionReset,
    DeadlineExceeded,
    MeshError,
    NoHealthyInstances,
    RequestTimeout,
    RetryBudgetExhausted,
    TransportError,
)
from meshkit.mesh import ServiceMesh, ServiceRequest
from meshkit.outcome import Outcome, classify
from meshkit.service import Service, service_fn
from meshkit.stack import Layer, Stack
from meshkit.transport import AiohttpTransport, H1Transport, MockTransport, Transport
from meshkit.types import (
    HealthCheck,
    LoadBalancerStrategy,
    Request,
    Response,
    ServiceInstance,
    ServiceState,
)

__version__ = "0.1.0"

__all__ = [
    "AiohttpTransport",
    "CircuitOpen",
    "ConnectError",
    "ConnectionReset",
    "DeadlineExceeded",
    "FakeClock",
    "H1Transport",
    "HealthCheck",
    "Layer",
    "LoadBalancerStrategy",
    "MeshClient",
    "MeshError",
    "MockTransport",
    "NoHealthyInstances",
    "Outcome",
    "Request",
    "RequestTimeout",
    "Response",
    "RetryBudgetExhausted",
    "Service",
    "ServiceInstance",
    "ServiceMesh",
    "ServiceRequest",
    "ServiceState",
    "Stack",
    "SystemClock",
    "Transport",
    "TransportError",
    "__version__",
    "classify",
    "default_stack",
    "service_fn",
]
