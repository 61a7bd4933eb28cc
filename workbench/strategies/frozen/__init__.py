"""Frozen-feature strategies: the ILFM's features are kept; what is learned sits beside or after it."""
from . import mean_pool  # noqa: F401
