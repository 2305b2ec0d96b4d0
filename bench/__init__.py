"""Benchmarks against the local bed (see `make bench`)."""
