"""Kong as the edge: keep Kong's services, routes, upstreams and targets in step with the registry.

`KongAdmin` talks to the Admin API (client.py), `plan`/`format_diff` compute and show the
diff (plan.py), and `KongSync` reconciles round after round (sync.py).
"""

from meshkit.plane.kong.client import KongAdmin, KongError, KongUnavailable
from meshkit.plane.kong.plan import Change, KongState, desired_state, format_diff, plan
from meshkit.plane.kong.sync import KongSync

__all__ = [
    "Change",
    "KongAdmin",
    "KongError",
    "KongState",
    "KongSync",
    "KongUnavailable",
    "desired_state",
    "format_diff",
    "plan",
]
