"""Metrics (Prometheus) and structured request logs."""
