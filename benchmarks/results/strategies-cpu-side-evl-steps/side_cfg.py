"""side-evl at the `cpu` profile with its side network's shape, step budget, learning rate or pass
precision changed.

    python benchmarks/results/strategies-cpu-side-evl-steps/side_cfg.py LAYERS WIDTH STEPS [--lr LR] [--pass fp32|bf16] [--keep FRACTION] [--ema DECAY] [--cross-frame RADIUS|all] [--seed S] [--from-block I] [--train-twins N] [--clips-per-kind N]

Trains and scores one row exactly as ``workbench bench --profile cpu --strategy side-evl`` does
(:func:`workbench.bench.bench_strategy`), with ``SideEVLConfig(layers=LAYERS, width=WIDTH)``,
``Profile.pass_train_steps=STEPS`` and, when given, the learning rate (``SideEVL.lr``) and the frozen
pass's precision (``SideEVLConfig.pass_bf16``); with ``--keep``, each training step reads only that
fraction of every frame's patch tokens (the CLS token always), drawn afresh at every step, while
evaluation reads them all; with ``--ema``, an exponential moving average of the trained weights
(updated after every optimiser step) replaces them before evaluation; with ``--cross-frame``, the
side network adds EVL's temporal cross attention (``SideEVLConfig.cross_frame``) with that offset
radius (``all``: every offset); ``--seed`` draws other clips and another initialisation, as
``workbench bench --seed``; ``--from-block I`` reads blocks I to I+LAYERS-1 instead of the last
LAYERS; ``--train-twins N`` also scores the twin test on N training clips of every kind (the
clips it trained on, each against its own twin's caption, as the held-out order split asks) and
adds ``train_twin_acc`` and ``train_twin_by_kind`` to the row: how much of the held-out gap is
fitting, how much generalising; ``--clips-per-kind N`` trains on N clips of every kind instead of
the profile's 400 (``workbench bench --clips-per-kind``). Writes the row to ``side-L{LAYERS}-W{WIDTH}-S{STEPS}-{pass}-lr{LR}[-keep{F}][-ema{D}][-xf{R}][-seed{S}][-from{I}][-train{N}][-clips{N}].json``
beside this file (rows without the pass and rate parts were made before those options existed:
fp32 pass, lr 1e-3) and prints its twin accuracy per kind pair. Exploratory: the package's defaults are what these runs chose (README,
side-tuning).
"""
import argparse
import json
import time
from pathlib import Path

import torch

from workbench import train
from workbench.backbones import load_backbone
from workbench.bench import prepare
from workbench.config import cpu_has_fast_bf16, get_profile
from workbench.data.shapes.clips import make_clips, twin_pair
from workbench.strategies.frozen.side_tuning import SideEVL
from workbench.tasks.retrieval import embed_videos, train_and_score

parser = argparse.ArgumentParser()
parser.add_argument("layers", type=int)
parser.add_argument("width", type=int)
parser.add_argument("steps", type=int)
parser.add_argument("--lr", type=float, default=None)
parser.add_argument("--pass", dest="precision", choices=("fp32", "bf16"), default=None)
parser.add_argument("--keep", type=float, default=1.0)
parser.add_argument("--ema", type=float, default=None)
parser.add_argument("--cross-frame", default=None)
parser.add_argument("--seed", type=int, default=0)
parser.add_argument("--from-block", type=int, default=None)
parser.add_argument("--train-twins", type=int, default=0)
parser.add_argument("--clips-per-kind", type=int, default=None)
args = parser.parse_args()
options = {"layers": args.layers, "width": args.width}
if args.cross_frame:
    options.update(cross_frame=True, cross_frame_radius=None if args.cross_frame == "all" else int(args.cross_frame))
if args.precision:
    options["pass_bf16"] = args.precision == "bf16"
if args.lr:
    SideEVL.lr = args.lr
_init = SideEVL.__init__


def init(self, backbone, **cfg):
    _init(self, backbone, **{**options, **cfg})
    if args.from_block is not None:
        self.tapped = list(range(args.from_block, args.from_block + self.cfg.layers))


SideEVL.__init__ = init
_encode_frozen = SideEVL.encode_frozen


def encode_frozen(self, frozen):
    if self.training and args.keep < 1:
        features, tokens = frozen                                        # tokens [B,T,k,L,W]
        patches = tokens.shape[3] - 1
        kept = 1 + torch.randperm(patches)[:max(1, round(patches * args.keep))].sort().values
        tokens = tokens[:, :, :, torch.cat([torch.zeros(1, dtype=torch.long), kept])]
        frozen = features, tokens
    return _encode_frozen(self, frozen)


SideEVL.encode_frozen = encode_frozen
_build_optimizer, _train_retrieval, averaged = train.build_optimizer, train.train_retrieval, {}


def build_optimizer(model, cfg):
    optimizer = _build_optimizer(model, cfg)
    params = averaged["params"] = [p for group in optimizer.param_groups for p in group["params"]]
    average = averaged["average"] = [p.detach().clone() for p in params]
    step = optimizer.step

    def step_and_average(*a, **kw):
        out = step(*a, **kw)
        with torch.no_grad():
            torch._foreach_lerp_(average, [p.detach() for p in params], 1 - args.ema)
        return out

    optimizer.step = step_and_average
    return optimizer


def train_retrieval(*a, **kw):
    log = _train_retrieval(*a, **kw)
    with torch.no_grad():
        for p, mean in zip(averaged["params"], averaged["average"]):
            p.copy_(mean)
    return log


if args.ema:
    train.build_optimizer, train.train_retrieval = build_optimizer, train_retrieval
profile = get_profile("cpu", pass_train_steps=args.steps,
                      **({"clips_per_kind": args.clips_per_kind} if args.clips_per_kind else {}))
backbone = load_backbone(device="cpu")
started = time.perf_counter()
prepared = prepare(profile, backbone, args.seed)
print(f"data and frame features ready in {time.perf_counter() - started:.0f} s", flush=True)
model, row = train_and_score("side-evl", backbone, prepared, profile, args.seed, cache=False, progress=True)


def train_twins(per_kind: int) -> tuple[float, dict]:
    """Twin-test credit on the first ``per_kind`` training clips of each kind that have a twin."""
    data, taken, chosen = prepared["train"], {}, []
    clips = make_clips(args.seed, profile.clips_per_kind, profile.num_frames, "train")   # data's order
    for i, clip in enumerate(clips):
        if data.twin[i] is not None and taken.get(clip.event, 0) < per_kind:
            taken[clip.event] = taken.get(clip.event, 0) + 1
            chosen.append(i)
    with torch.no_grad():
        video = embed_videos(model, data.subset(chosen))
        own = model.encode_text([data.captions[i] for i in chosen]).float().cpu()
        twin = model.encode_text([data.captions[data.twin[i]] for i in chosen]).float().cpu()
    credit = ((video * own).sum(-1) > (video * twin).sum(-1)).float().tolist()
    kinds = {}
    for i, c in zip(chosen, credit):
        kinds.setdefault(twin_pair(clips[i].event), []).append(c)
    return (round(100 * sum(credit) / len(credit), 1),
            {k: round(100 * sum(v) / len(v), 1) for k, v in kinds.items()})


if args.train_twins:
    row["train_twin_acc"], row["train_twin_by_kind"] = train_twins(args.train_twins)
precision = args.precision or ("bf16" if cpu_has_fast_bf16() else "fp32")   # SideEVL.pass_bf16's default
keep = (f"-keep{args.keep:g}" if args.keep < 1 else "") + (f"-ema{args.ema:g}" if args.ema else "")
keep += (f"-xf{args.cross_frame}" if args.cross_frame else "") + (f"-seed{args.seed}" if args.seed else "")
keep += f"-from{args.from_block}" if args.from_block is not None else ""
keep += f"-train{args.train_twins}" if args.train_twins else ""
keep += f"-clips{args.clips_per_kind}" if args.clips_per_kind else ""
out = Path(__file__).with_name(f"side-L{args.layers}-W{args.width}-S{args.steps}-{precision}-lr{SideEVL.lr:g}{keep}.json")
out.write_text(json.dumps(row, indent=1, default=str))
print({k: row[k] for k in ("twin_acc", "appearance_acc", "motion_acc", "train_s", "trainable_params")})
print(row["twin_by_kind"])
if args.train_twins:
    print("training clips:", row["train_twin_acc"], row["train_twin_by_kind"])
