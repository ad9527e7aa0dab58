"""Benchmarks of the platform, each against a baseline measured in the same run."""
