"""Profiles, paths, seeds and the offline switch: the knobs every other module reads.

One knob, three names (DESIGN §6): ``smoke`` (tests and nbmake: seconds), ``cpu`` (the default
without a GPU: minutes, meaningful numbers on ShapesWorld with the embedded tiny CLIP) and
``gpu`` (real weights, real datasets, real frame counts). Notebooks and the CLI pass a profile
*name*; ``get_profile`` turns it into a :class:`Profile`.
"""
from __future__ import annotations

import hashlib
import json
import os
import random
from dataclasses import asdict, dataclass, replace
from functools import lru_cache
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]
# Where the embedded default ILFM lives (open_clip ``local-dir:`` layout); overridable for installs
# outside the repository.
ASSETS_DIR = Path(os.environ.get("WORKBENCH_ASSETS", REPO_ROOT / "assets"))
MODELS_DIR = ASSETS_DIR / "models"
DEFAULT_MODEL = "shapes-clip-tiny"
# Our own JSON model configs (registered with open_clip on first use).
CONFIGS_DIR = Path(__file__).resolve().parent / "backbones" / "configs"
# Generated data, cached features and trained heads; never committed.
CACHE_DIR = Path(os.environ.get("WORKBENCH_CACHE", REPO_ROOT / "cache"))


@dataclass(frozen=True)
class Profile:
    """How big a run is. Every field is read by at least one module."""

    name: str
    num_frames: int        # frames sampled per clip
    clips_per_kind: int    # ShapesWorld clips generated per event kind (train split)
    eval_clips_per_kind: int  # ... per event kind in each evaluation split
    long_videos: int       # ShapesWorld long videos (grounding)
    train_steps: int       # optimiser steps for strategies on cached features (cheap heads)
    pixel_train_steps: int  # optimiser steps for strategies that run the ILFM on pixels
    pass_train_steps: int  # ... for those that run the frozen ILFM once per clip and train on its
    #                        insides (side-tuning's tokens: ``frozen_backbone_pass``, strategies/base.py)
    student_train_steps: int  # ... for a small network of its own on pixels whose teacher's targets come
    #                        from the feature cache (the distillation student: ``step_budget``)
    batch_size: int        # clips per training batch
    frame_size: int        # pixel size ShapesWorld videos are written at
    device: str            # "cpu" or "cuda"

    @property
    def run_key(self) -> str:
        """The name that keys cached runs (``tasks/base.py:run_folder``): the profile's name, plus a
        digest of its fields when they differ from the named profile's (``get_profile("cpu",
        train_steps=100)`` or the app's demo profile), so a rescaled run never loads as the named one."""
        if PROFILES.get(self.name) == self:
            return self.name
        fields = json.dumps(asdict(self), sort_keys=True)
        return f"{self.name}-{hashlib.sha1(fields.encode()).hexdigest()[:8]}"


PROFILES: dict[str, Profile] = {
    "smoke": Profile("smoke", num_frames=4, clips_per_kind=4, eval_clips_per_kind=2, long_videos=4,
                     train_steps=20, pixel_train_steps=4, pass_train_steps=20, student_train_steps=20,
                     batch_size=16, frame_size=64, device="cpu"),
    "cpu": Profile("cpu", num_frames=8, clips_per_kind=400, eval_clips_per_kind=24, long_videos=60,
                   train_steps=4000, pixel_train_steps=150, pass_train_steps=4000, student_train_steps=800,
                   batch_size=32, frame_size=128, device="cpu"),
    "gpu": Profile("gpu", num_frames=16, clips_per_kind=400, eval_clips_per_kind=50, long_videos=600,
                   train_steps=3000, pixel_train_steps=3000, pass_train_steps=3000, student_train_steps=3000,
                   batch_size=64, frame_size=128, device="cuda"),
}


def get_profile(name: str | None = None, **overrides) -> Profile:
    """The named profile (default: ``$WORKBENCH_PROFILE``, else ``cpu``), with fields overridden."""
    name = name or os.environ.get("WORKBENCH_PROFILE", "cpu")
    if name not in PROFILES:
        raise ValueError(f"unknown profile {name!r}; choose one of {sorted(PROFILES)}")
    return replace(PROFILES[name], **overrides)


# bf16 autocast on a CPU without bf16 instructions is slower, not faster: the shipped tiny CLIP was
# trained where bf16 took 1.6 s/step against 2.55 s in fp32; on an AVX2-only build machine the
# same autocast did not reach 50 steps in 9 minutes, where fp32 took 4.3 (5.2 s/step).
@lru_cache(maxsize=1)
def cpu_has_fast_bf16() -> bool:
    """Does this CPU have bf16 instructions (AVX512-BF16 or AMX), where bf16 autocast pays?"""
    try:
        flags = Path("/proc/cpuinfo").read_text()
    except OSError:
        return False
    return "avx512_bf16" in flags or "amx_bf16" in flags


def seed_everything(seed: int = 0) -> None:
    """Seed Python, NumPy and torch (all devices) for a repeatable run."""
    import numpy as np
    import torch

    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def go_offline() -> None:
    """Make Hugging Face Hub calls fail fast instead of retrying for ~47 s.

    Must run before ``open_clip`` (and so ``huggingface_hub``) is imported; importing ``workbench``
    calls it unless ``WORKBENCH_ONLINE=1``.
    """
    if os.environ.get("WORKBENCH_ONLINE") != "1":
        os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")
