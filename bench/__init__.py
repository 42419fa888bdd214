"""Benchmarks, run by hand or in CI's bench job (`make bench`), never as timed tests."""
