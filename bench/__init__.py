"""Benchmarks that run against the embedded stack and print JSON figures."""
