"""Builders for tests and benchmarks: tiny random models of the real architectures, synthetic stores.

Kept out of the shipped packages; benchmarks import them from here (they run from the repo root).
"""
