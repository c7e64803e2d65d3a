"""Helpers shared by the tests and benchmarks: tiny reference models built with `transformers`."""
