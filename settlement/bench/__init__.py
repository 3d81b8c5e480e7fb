"""Benchmark helpers: data sets too large to build through the services one row at a time."""
