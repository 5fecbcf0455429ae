"""Backends: one file per inference library, all behind the `Backend` protocol."""
