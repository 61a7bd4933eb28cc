"""Frozen-feature strategies: the ILFM's features are kept; what is learned sits beside or after it."""
from . import mean_pool  # noqa: F401
from . import post_network  # noqa: F401
from . import side_tuning  # noqa: F401
from . import distillation  # noqa: F401
