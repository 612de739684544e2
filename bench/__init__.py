"""The benchmark harness (`python -m bench.run`): not part of the test suite; see BENCHMARKS.md."""
