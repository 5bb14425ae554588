"""Merge methods. Importing this package registers every method with `registry.register`."""
from . import registry  # noqa: F401
