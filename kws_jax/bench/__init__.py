"""Benchmarks: speed figures always printed as ratios against a baseline run side by side."""
