"""Benchmarks of the database layer; not tests. Run with python -m benchmarks.db."""
