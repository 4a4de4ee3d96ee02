"""Load tests and benchmarks (not tests: nothing here asserts on speed)."""
