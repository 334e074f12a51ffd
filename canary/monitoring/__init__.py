"""Watching the service run: Prometheus metrics, the JSON request log, and request ids."""
