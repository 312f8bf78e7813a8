"""Telemetry, each part switched on by its environment variables: traces, metrics, error reports."""
