"""Benchmarks, run from the project root as modules: ``python -m bench.invoke --help`` (see docs/performance.md).

Each prints its figures and their ratio to a baseline measured in the same run."""
