"""Where does the frozen tiny CLIP lose spin direction? Ridge-logistic probes per block."""
import torch, numpy as np
from workbench import load_backbone
from workbench.backbones.taps import layer_tokens
from workbench.data.shapes.clips import make_clips
torch.manual_seed(0)
bb = load_backbone()
def spins(split, per_kind):
    cl = make_clips(0, per_kind, 8, split)
    cl = [c for c in cl if c.event.startswith("spin")]
    x = torch.from_numpy(np.stack([c.frames(bb.image_size) for c in cl])).permute(0,1,4,2,3)
    y = torch.tensor([1.0 if c.event=="spin_clockwise" else 0.0 for c in cl])
    return x, y
def reps(x):
    out = {}
    with torch.no_grad(), layer_tokens(bb.clip) as rec:
        px = bb.preprocess(x)
        feats = bb.encode_frames(px)          # [B,T,D]
    b,t = x.shape[:2]
    out["pixels"] = px.reshape(b,t,-1)
    for i,tok in enumerate(rec.tokens):
        tok = tok.reshape(b,t,*tok.shape[1:])
        out[f"block{i} cls"] = tok[:,:,0]
        out[f"block{i} patches"] = tok[:,:,1:].reshape(b,t,-1)
    out["output feature"] = feats
    return out
xtr,ytr = spins("train", 400); xte,yte = spins("eval", 48)
print(len(ytr), len(yte))
rtr, rte = reps(xtr), reps(xte)
def probe(a, b, ya, yb, kind):
    def f(r):
        if kind=="last-first": z = r[:,-1]-r[:,0]
        else: z = (r[:,1:]-r[:,:-1]).reshape(len(r),-1)   # consecutive differences, all
        return z
    za, zb = f(a), f(b)
    mu, sd = za.mean(0), za.std(0)+1e-6
    za, zb = (za-mu)/sd, (zb-mu)/sd
    best=None
    for wd in [1e-3,1e-2,1e-1,1.0]:
        w = torch.zeros(za.shape[1], requires_grad=True); c=torch.zeros(1,requires_grad=True)
        opt = torch.optim.LBFGS([w,c], max_iter=200)
        def closure():
            opt.zero_grad(); l = torch.nn.functional.binary_cross_entropy_with_logits(za@w+c, ya)+wd*w.pow(2).sum(); l.backward(); return l
        opt.step(closure)
        with torch.no_grad():
            tr = ((za@w+c>0).float()==ya).float().mean().item(); te=((zb@w+c>0).float()==yb).float().mean().item()
        best = max(best or (0,0,0), (te,tr,wd))
    return best
for k in rtr:
    for kind in ["last-first","consecutive"]:
        te,tr,wd = probe(rtr[k].float(), rte[k].float(), ytr, yte, kind)
        print(f"{k:20s} {kind:12s} held-out {100*te:5.1f} train {100*tr:5.1f} wd {wd}", flush=True)
