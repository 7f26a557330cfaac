"""The control plane: the process that runs the registry, health checker, API, collector and dashboard."""
