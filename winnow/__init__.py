"""Winnow: a synthetic-data factory that keeps only verified examples."""

__version__ = "0.1.0"
