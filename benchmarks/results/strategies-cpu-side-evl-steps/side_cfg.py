"""side-evl at the `cpu` profile with its side network's shape and step budget changed.

    python benchmarks/results/strategies-cpu-side-evl-steps/side_cfg.py LAYERS WIDTH STEPS

Trains and scores one row exactly as ``workbench bench --profile cpu --strategy side-evl`` does
(:func:`workbench.bench.bench_strategy`), with ``SideEVLConfig(layers=LAYERS, width=WIDTH)`` and
``Profile.pass_train_steps=STEPS``; writes the row to ``side-L{LAYERS}-W{WIDTH}-S{STEPS}.json``
beside this file and prints its twin accuracy per kind pair. Exploratory: the package's defaults
are what these runs chose (README, side-tuning).
"""
import json
import sys
import time
from pathlib import Path

from workbench.backbones import load_backbone
from workbench.bench import bench_strategy, prepare
from workbench.config import get_profile
from workbench.strategies.frozen.side_tuning import SideEVL

layers, width, steps = (int(a) for a in sys.argv[1:4])
_init = SideEVL.__init__


def init(self, backbone, **cfg):
    _init(self, backbone, **{"layers": layers, "width": width, **cfg})


SideEVL.__init__ = init
profile = get_profile("cpu", pass_train_steps=steps)
backbone = load_backbone(device="cpu")
started = time.perf_counter()
prepared = prepare(profile, backbone, 0)
print(f"data and frame features ready in {time.perf_counter() - started:.0f} s", flush=True)
row = bench_strategy("side-evl", backbone, prepared, profile, progress=True)
out = Path(__file__).with_name(f"side-L{layers}-W{width}-S{steps}.json")
out.write_text(json.dumps(row, indent=1, default=str))
print({k: row[k] for k in ("twin_acc", "appearance_acc", "motion_acc", "train_s", "trainable_params")})
print(row["twin_by_kind"])
