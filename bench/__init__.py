"""Benchmarks and one-off studies: run each from the repository root as `python -m bench.NAME`."""
