"""The survey's taxonomy as code: one file per leaf, registered by name (see base.py)."""
from .base import (FAMILIES, VideoTextModel, create_strategy, flops_per_clip, list_strategies,
                   register_strategy, strategy_class)
