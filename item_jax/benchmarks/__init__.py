"""Benchmarks of item_jax's parts, run through `python -m item_jax.cli.bench`."""
