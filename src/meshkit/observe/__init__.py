"""Observability: tracing (OpenTelemetry spans, header propagation, server middleware, OTLP export).

Import from the modules: `meshkit.observe.tracing`, `.propagation`, `.server`, `.export`.
"""
