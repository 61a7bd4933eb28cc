"""A post-network head at the `cpu` profile with a regulariser or a smaller shape.

    python benchmarks/results/strategies-cpu-post-network/post_cfg.py [--strategy post-transformer]
        [--layers N] [--width W] [--wd WD] [--lr LR] [--dropout P] [--noise S] [--steps N] [--seed K] [--antisymmetric] --tag NAME

Trains and scores one row exactly as ``workbench bench --profile cpu --strategy post-transformer``
does (:func:`workbench.bench.bench_strategy`), with the head's config (``layers``, ``width``), the
optimiser's weight decay or learning rate changed, or, during training only, dropout on the
LayerNorm'd frame features the head reads (``--dropout``) or Gaussian noise added to the frozen
features, ``S`` times each feature vector's standard deviation (``--noise``); or, in training and
evaluation alike, with the head's residual made odd under time reversal (``--antisymmetric``: the
residual of the clip minus the residual of its frames reversed, so a clip and its twin get the
same mean-pooled part and opposite residuals, and every parameter of the head serves order). Writes the row to
``{strategy}-{tag}.json`` beside this file and prints its twin accuracy per kind pair.
Exploratory: none of these changed the package's defaults (README, "Regularising the head").
"""
import argparse
import json
import time
from pathlib import Path

import torch
import torch.nn.functional as F

from workbench import bench
from workbench.backbones import load_backbone
from workbench.config import get_profile
from workbench.strategies.frozen.post_network import PostNetwork

parser = argparse.ArgumentParser()
parser.add_argument("--strategy", default="post-transformer")
parser.add_argument("--layers", type=int)
parser.add_argument("--width", type=int)
parser.add_argument("--wd", type=float)
parser.add_argument("--lr", type=float)
parser.add_argument("--dropout", type=float, default=0.0)
parser.add_argument("--noise", type=float, default=0.0)
parser.add_argument("--steps", type=int, default=4000)
parser.add_argument("--seed", type=int, default=0)
parser.add_argument("--antisymmetric", action="store_true")
parser.add_argument("--tag", required=True)
args = parser.parse_args()
shape = {k: v for k, v in (("layers", args.layers), ("width", args.width)) if v}
_init, _pool, _train_config = PostNetwork.__init__, PostNetwork.pool, bench.train_config


def init(self, backbone, **cfg):
    _init(self, backbone, **{**shape, **cfg})
    dropout = torch.nn.Dropout(args.dropout)
    self.norm.register_forward_hook(lambda module, inputs, out: dropout(out) if self.training else out)


def pool(self, features):
    if self.training and args.noise:
        features = features.float()
        features = features + args.noise * features.std(-1, keepdim=True) * torch.randn_like(features)
    if not args.antisymmetric:
        return _pool(self, features)
    t = features.shape[1]
    features = features.to(self.out.weight.dtype)

    def residual(x):
        return self.out(self.head(self.norm(x) + self.frame_position[:t])).mean(1)

    mean = features.sort(dim=1).values.mean(1)                 # as VideoTextModel.pool: exactly order-blind
    return F.normalize(mean + residual(features) - residual(features.flip(1)), dim=-1)


def train_config(*a, **kw):
    cfg = _train_config(*a, **kw)
    cfg.weight_decay = cfg.weight_decay if args.wd is None else args.wd
    cfg.lr = cfg.lr if args.lr is None else args.lr
    return cfg


PostNetwork.__init__, PostNetwork.pool, bench.train_config = init, pool, train_config
profile = get_profile("cpu", train_steps=args.steps)
backbone = load_backbone(device="cpu")
started = time.perf_counter()
prepared = bench.prepare(profile, backbone, args.seed)
print(f"data and frame features ready in {time.perf_counter() - started:.0f} s", flush=True)
row = bench.bench_strategy(args.strategy, backbone, prepared, profile, seed=args.seed)
Path(__file__).with_name(f"{args.strategy}-{args.tag}.json").write_text(json.dumps(row, indent=1, default=str))
print({k: row[k] for k in ("twin_acc", "appearance_acc", "motion_acc", "train_s", "trainable_params")})
print(row["twin_by_kind"])
