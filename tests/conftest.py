"""Shared pytest setup: offline switches, CPU threads, and the `gpu` marker's automatic skip.

Markers (declared in pyproject.toml):
- ``slow``: seconds to minutes (the real ViT-B-32 architecture with random weights, training runs).
  ``make test`` runs them; ``make test-fast`` leaves them out.
- ``gpu``: needs CUDA; skipped automatically where ``torch.cuda.is_available()`` is false.
- ``e2e``: drives the running app in headless Chromium (installed by ``.ci/run``).
"""
import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")
os.environ.setdefault("WORKBENCH_PROFILE", "smoke")

import pytest  # noqa: E402


def pytest_collection_modifyitems(config, items):
    import torch

    if torch.cuda.is_available():
        return
    skip = pytest.mark.skip(reason="needs CUDA (gpu marker)")
    for item in items:
        if "gpu" in item.keywords:
            item.add_marker(skip)
