"""Benchmarks: each is a command that prints its figures and saves them under `benchmarks/results/` (see README.md)."""
