"""Benchmarks of the worker against Celery's own ceiling; they print figures, never pass or fail on time."""
