"""Benchmark scripts (run as files); importable so their tests can reach their helpers."""
