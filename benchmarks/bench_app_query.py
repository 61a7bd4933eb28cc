"""Text-query latency of the app over a 1,000-clip collection on a two-core CPU.

Run it as the app runs: one intra-op thread per request (``workbench.app.ui.SERVER_THREADS``),
pinned to two cores with ``taskset -c 0,1`` where the machine has more.

The app answers a text query by encoding the text once and searching precomputed, normalised
video embeddings (``workbench.index``), then building the ranked gallery
(``workbench.app.handlers.text_to_video``: the whole handler is timed). Baseline in the same
run: the naive path that re-pools every clip's frame features for each query (what an app
without an embedding index does for a feature-level strategy), and, extrapolated from one
32-clip batch, re-encoding every clip's pixels per query.

The collection: the ShapesWorld demo's real frame features (``workbench app``'s default
collection), repeated with small noise up to N clips. Target (issue 6): p50 under 300 ms.

    python benchmarks/bench_app_query.py [--clips 1000] [--queries 50]
"""
from __future__ import annotations

import argparse
import time
from dataclasses import replace
from pathlib import Path

import numpy as np
import torch

from workbench.app import handlers
from workbench.app.collection import index_folder, prepare_demo
from workbench.app.state import AppState
from workbench.app.ui import SERVER_THREADS
from workbench.backbones import load_backbone

QUERIES = ["a red circle moves to the left", "a blue square grows", "a green star spins clockwise",
           "a yellow triangle disappears", "two shapes swap places", "a purple cross moves up"]


def synthetic_collection(collection, n: int, seed: int = 0):
    """``collection`` repeated (features with 1% noise) up to ``n`` videos, unique ids."""
    rng = torch.Generator().manual_seed(seed)
    picks = [i % len(collection) for i in range(n)]
    videos = [replace(collection.videos[i], video_id=f"{collection.videos[i].video_id}#{k}")
              for k, i in enumerate(picks)]
    base = collection.features[picks]
    features = base + 0.01 * base.norm(dim=-1, keepdim=True) * torch.randn(base.shape, generator=rng) / base.shape[-1] ** 0.5
    return replace(collection, videos=videos, features=features)


def timed(fn, repeats: int) -> np.ndarray:
    out = []
    for r in range(repeats):
        started = time.perf_counter()
        fn(r)
        out.append(time.perf_counter() - started)
    return np.array(out) * 1000


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clips", type=int, default=1000)
    parser.add_argument("--queries", type=int, default=50)
    parser.add_argument("--threads", type=int, default=SERVER_THREADS, help="intra-op threads (the app's: 1)")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)

    backbone = load_backbone()
    demo = index_folder(prepare_demo(progress=False), backbone, progress=False)
    collection = synthetic_collection(demo, args.clips)
    state = AppState(backbone, collection, runs_dir=Path("/nonexistent"))
    text = lambda r: QUERIES[r % len(QUERIES)] + f" {r}"  # noqa: E731  (distinct texts: no caching)

    started = time.perf_counter()
    state.search("mean-pool", state.encode_texts("mean-pool", ["warm up"]), 1)
    setup_ms = (time.perf_counter() - started) * 1000
    app = timed(lambda r: handlers.text_to_video(state, text(r), "mean-pool", 12), args.queries)

    model = state.model("mean-pool")

    @torch.no_grad()
    def naive(r):
        query = model.encode_text([text(r)])[0]
        videos = model.pool(collection.features)                 # [N,T,D] -> [N,D] every query
        (videos @ query).topk(12)

    repool = timed(naive, max(5, args.queries // 5))
    frames = torch.stack([collection.decode(i) for i in range(32)])
    pixels = backbone.preprocess(frames)

    @torch.no_grad()
    def reencode(r):
        model.encode_video(pixels)

    batch = timed(reencode, 3)
    reencode_ms = np.median(batch) * args.clips / 32

    p = lambda a, q: float(np.percentile(a, q))  # noqa: E731
    print(f"collection: {args.clips} clips, {collection.features.shape[1]} frames, D={backbone.embed_dim}; "
          f"{torch.get_num_threads()} threads; index built once in {setup_ms:.0f} ms")
    print(f"app text query (handler: encode text + index search + gallery rows): "
          f"p50 {p(app, 50):.1f} ms, p99 {p(app, 99):.1f} ms over {len(app)} queries "
          f"({'meets' if p(app, 50) < 300 else 'MISSES'} the 300 ms target)")
    print(f"baseline, re-pool every clip per query: p50 {p(repool, 50):.1f} ms, p99 {p(repool, 99):.1f} ms "
          f"-> app is {p(repool, 50) / p(app, 50):.1f}x faster")
    print(f"baseline, re-encode every clip's pixels per query (extrapolated from 32 clips): "
          f"{reencode_ms:.0f} ms -> app is {reencode_ms / p(app, 50):.0f}x faster")


if __name__ == "__main__":
    main()
