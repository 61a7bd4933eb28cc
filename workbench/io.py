"""Atomic file writes: every file the workbench stores (weights, checkpoints, features, videos).

A write goes to a temporary file in the target's folder and is renamed over the target, so a
kill mid-write never leaves a half file where a complete one is expected (DESIGN §9). The temp
name keeps the target's extension, since some writers (PyAV) pick the format from it.
"""
from __future__ import annotations

import os
import tempfile
from pathlib import Path
from typing import Callable


def atomic_write(target: str | os.PathLike, write: Callable[[str], object]) -> Path:
    """Call ``write(tmp_path)``, then rename ``tmp_path`` over ``target``; clean up on failure."""
    target = Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=f".{target.stem}.", suffix=f".tmp{target.suffix}")
    os.close(fd)
    try:
        write(tmp)
        os.replace(tmp, target)
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)
    return target
