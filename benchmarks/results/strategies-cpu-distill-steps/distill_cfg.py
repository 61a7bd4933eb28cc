"""Exploratory (not in the package): distill-student at the cpu profile with its step budget and input
size changed. Run from the repository root: python benchmarks/results/strategies-cpu-distill-steps/distill_cfg.py 1000:48 1000:56
(steps:input_size pairs; one data preparation shared by all)."""
import dataclasses, json, sys, time
from workbench import load_backbone
from workbench.bench import bench_strategy, prepare
from workbench.config import get_profile
from workbench.strategies.frozen import distillation as D

orig = D.DistillStudent.__init__
OVR = {}
def init(self, backbone, teacher=None, **cfg):
    orig(self, backbone, teacher, **{**OVR, **cfg})
D.DistillStudent.__init__ = init

base = get_profile("cpu")
backbone = load_backbone("shapes-clip-tiny")
t = time.perf_counter(); prepared = prepare(base, backbone); print("prepare", round(time.perf_counter() - t), flush=True)
for spec in sys.argv[1:]:        # e.g. 1000:48
    steps, size = map(int, spec.split(":"))
    OVR.clear(); OVR["input_size"] = size
    profile = dataclasses.replace(base, student_train_steps=steps)
    row = bench_strategy("distill-student", backbone, prepared, profile)
    print(json.dumps({"steps": steps, "input_size": size, **{k: row[k] for k in ("twin_acc", "motion_acc", "appearance_acc", "appearance_R1", "motion_R1", "order_R1", "train_s", "gflops_per_clip", "twin_by_kind")}}), flush=True)
