"""I2V Workbench: image-to-video transfer learning on image-language foundation models.

Public API (re-exports only; DESIGN §2). Users, notebooks, the app and outside checks rely on
these names: keep them stable.
"""
from .config import go_offline as _go_offline

_go_offline()  # before open_clip / huggingface_hub are imported anywhere

from . import metrics  # noqa: E402
from .backbones import Backbone, BackboneError, load_backbone  # noqa: E402
from .config import PROFILES, get_profile  # noqa: E402
from .data.video import VideoError, read_video, write_video  # noqa: E402
from .strategies import VideoTextModel, create_strategy, list_strategies, register_strategy  # noqa: E402

__all__ = ["metrics", "Backbone", "BackboneError", "load_backbone", "PROFILES", "get_profile",
           "VideoError", "read_video", "write_video", "VideoTextModel", "create_strategy",
           "list_strategies", "register_strategy"]
__version__ = "0.1.0"
