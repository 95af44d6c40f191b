"""Benchmarks, run on demand from the repository root: `uv run python -m bench.<name>`."""
