"""Text-video retrieval, both ways, and the time-reversed twin test.

Metrics follow CLIP4Clip's conventions (``workbench.metrics.retrieval_metrics``). The twin test
is the survey's central point made measurable: for every clip whose time-reversed twin is in the
gallery, does the model score its own caption above its twin's? Ties count one half, so a model
that cannot see order (mean pooling) scores exactly 50%.
"""
from __future__ import annotations

import numpy as np
import torch

from .. import metrics
from ..train import RetrievalData


@torch.no_grad()
def embed_videos(model, data: RetrievalData, batch_size: int = 32) -> torch.Tensor:
    """Normalised video embeddings [N,D]; feature-level strategies use ``data.features``."""
    model.eval()
    out = []
    for start in range(0, len(data), batch_size):
        if model.input_level == "features" and data.features is not None:
            out.append(model.pool(data.features[start:start + batch_size].to(model.backbone.device)))
        else:
            frames = data.frames[start:start + batch_size].to(model.backbone.device)
            out.append(model.encode_video(model.backbone.preprocess(frames)))
    return torch.cat(out).float().cpu()


@torch.no_grad()
def similarity(model, data: RetrievalData) -> tuple[torch.Tensor, list[str]]:
    """[N clips, U distinct captions] similarities and the caption list (column order)."""
    texts = list(dict.fromkeys(data.captions))
    video = embed_videos(model, data)
    text = model.encode_text(texts).float().cpu()
    return video @ text.t(), texts


def twin_accuracy(sim: torch.Tensor, texts: list[str], data: RetrievalData) -> float | None:
    """% of clips (with a twin) that prefer their own caption to their twin's; ties count half."""
    column = {t: i for i, t in enumerate(texts)}
    scores = []
    for i, j in enumerate(data.twin):
        if j is None or data.captions[i] == data.captions[j]:
            continue
        own, other = sim[i, column[data.captions[i]]], sim[i, column[data.captions[j]]]
        scores.append(1.0 if own > other else 0.5 if own == other else 0.0)
    return 100.0 * float(np.mean(scores)) if scores else None


def evaluate_retrieval(model, data: RetrievalData) -> dict:
    """t2v and v2t R@1/5/10, MdR, MnR, plus twin accuracy, on one gallery."""
    sim, texts = similarity(model, data)
    column = {t: i for i, t in enumerate(texts)}
    caption_of_clip = np.array([column[c] for c in data.captions])
    correct = caption_of_clip[:, None] == np.arange(len(texts))[None, :]    # [N clips, U texts]
    result = {"t2v": metrics.retrieval_metrics(sim.t().numpy(), correct.T),
              "v2t": metrics.retrieval_metrics(sim.numpy(), correct)}
    result["twin_accuracy"] = twin_accuracy(sim, texts, data)
    return result
