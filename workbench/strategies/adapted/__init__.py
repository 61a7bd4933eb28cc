"""Adapted-feature strategies: the ILFM's features themselves are changed."""
from . import full_finetune  # noqa: F401
from . import partial  # noqa: F401
from . import extra_model  # noqa: F401
from . import lora  # noqa: F401
from . import adapter  # noqa: F401
from . import prompt  # noqa: F401
