"""What the app's events do, as plain functions of an :class:`~workbench.app.state.AppState`.

No Gradio here: each handler takes plain values (text, a file path, a strategy name) and returns
plain data (lists of dicts, figures, markdown of our own making), so tests call them directly
and ``ui.py`` only lays them out. Bad input raises: :class:`~workbench.data.video.VideoError`
for a video that cannot give a clip (the message names the file and the reason),
``ValueError`` for anything else; the UI turns both into a message in the page.

User text is data, never markup: it is returned as table cells and figure labels (escaped),
and never interpolated into markdown or HTML.
"""
from __future__ import annotations

import html
import json
from dataclasses import dataclass
from pathlib import Path

import torch

from ..data.features import content_hash
from ..data.video import VideoError
from .collection import decode_for_model
from .state import AppState

MAX_QUERY_CHARS = 500   # longer queries are refused (the tokenizer would cut them anyway)


# --------------------------------------------------------------------------------------------
# Clips: a collection video, or an upload
# --------------------------------------------------------------------------------------------

@dataclass
class Clip:
    """A clip the app works on: decoded frames, and its collection row if it is one."""

    frames: torch.Tensor      # uint8 [T,3,h,w], decoded at the model's preprocessing size
    row: int | None           # index in the collection, None for an upload not in it
    label: str                # video id or uploaded file name
    path: Path                # the file


def check_upload(path: str | Path, max_mb: float) -> Path:
    """The reasons an uploaded file is refused before decoding: missing, empty, too large."""
    path = Path(path)
    if not path.is_file():
        raise VideoError(path, "file not found (the upload did not arrive)")
    size = path.stat().st_size
    if size == 0:
        raise VideoError(path, "file is empty (0 bytes)")
    if size > max_mb * 1e6:
        raise VideoError(path, f"file is {size / 1e6:.0f} MB, over the app's {max_mb:.0f} MB upload limit")
    return path


def load_clip(state: AppState, video: str | Path) -> Clip:
    """A collection video (by id) or a file (an upload; recognised by content if it is one of the
    collection's videos). Raises VideoError for files that cannot give a clip."""
    collection = state.collection
    if not video:
        raise ValueError("no video: upload one or pick one from the collection")
    try:
        row = collection.find(video)
    except KeyError:
        path = check_upload(video, state.max_upload_mb)
        rows = {v.key: i for i, v in enumerate(collection.videos)}
        row = rows.get(content_hash(path))
        if row is None:
            frames = decode_for_model(path, collection.num_frames, state.backbone)
            return Clip(frames, None, path.name, path)
    entry = collection.videos[row]
    return Clip(collection.decode(row), row, entry.video_id, entry.path)


def _candidates(text: str | list[str] | None, fallback: list[str]) -> list[str]:
    """Candidate texts, one per line (blank lines dropped, duplicates once), else ``fallback``."""
    if isinstance(text, str):
        text = text.splitlines()
    lines = list(dict.fromkeys(t.strip() for t in (text or []) if t and t.strip()))
    if not lines and not fallback:
        raise ValueError("no candidate texts: type one per line")
    return lines or list(fallback)


def _check_query(query: str) -> str:
    query = (query or "").strip()
    if not query:
        raise ValueError("type a query, e.g. 'a red circle moves to the left'")
    if len(query) > MAX_QUERY_CHARS:
        raise ValueError(f"the query is {len(query)} characters; at most {MAX_QUERY_CHARS}")
    return query


# --------------------------------------------------------------------------------------------
# Retrieval
# --------------------------------------------------------------------------------------------

def text_to_video(state: AppState, query: str, strategy: str, k: int = 12) -> list[dict]:
    """The ``k`` collection videos closest to ``query``: rank, video id, score, files, captions."""
    query = _check_query(query)
    text = state.encode_texts(strategy, [query])                  # [1,D]
    scores, rows = state.search(strategy, text, k)
    collection = state.collection
    return [{"rank": r + 1, "video": collection.videos[i].video_id, "score": round(float(s), 4),
             "thumbnail": str(collection.videos[i].thumbnail), "path": str(collection.videos[i].path),
             "caption": collection.videos[i].captions[0] if collection.videos[i].captions else ""}
            for r, (s, i) in enumerate(zip(scores[0].tolist(), rows[0]))]


def video_to_text(state: AppState, video: str | Path, strategy: str, candidates: str | list[str] | None = None,
                  k: int = 20) -> list[dict]:
    """Candidate captions (default: the collection's) ranked for one clip, with scores; ``true``
    marks the clip's ground-truth captions where the collection knows them."""
    clip = load_clip(state, video)
    texts = _candidates(candidates, state.collection.captions())
    if clip.row is not None and state.model(strategy).input_level == "features":
        embedding = state.video_embeddings(strategy)[clip.row]
    else:
        embedding = state.encode_clip(strategy, clip.frames)
    scores = state.encode_texts(strategy, texts) @ embedding      # [N]
    truth = set(state.collection.videos[clip.row].captions) if clip.row is not None else set()
    order = scores.argsort(descending=True)[:k].tolist()
    return [{"rank": r + 1, "caption": texts[i], "score": round(float(scores[i]), 4), "true": texts[i] in truth}
            for r, i in enumerate(order)]


# --------------------------------------------------------------------------------------------
# Strategy lab: one clip, every strategy
# --------------------------------------------------------------------------------------------

def lab_captions(state: AppState, row: int | None) -> list[str]:
    """A clip's caption, its time-reversed twin's and its same-object siblings, where annotated
    (ShapesWorld's ``clips.jsonl``); else its caption and the start of the collection's pool."""
    pool = state.collection.captions()
    truth = _shapes_clip_annotation(state, row) if row is not None else None
    if truth:
        return [truth["caption"], *truth["hard_negatives"]]
    own = state.collection.videos[row].captions[:1] if row is not None else []
    return list(dict.fromkeys(own + pool))[:8]


def _shapes_clip_annotation(state: AppState, row: int) -> dict | None:
    file = state.collection.root / "shapesworld" / "clips.jsonl"
    if not file.is_file():
        return None
    name = state.collection.videos[row].name
    with open(file) as f:
        for line in f:
            entry = json.loads(line)
            if entry["clip_id"] == name:
                return entry
    return None


def _shuffled_order(num_frames: int) -> torch.Tensor:
    """A fixed permutation of T frames that moves every frame (a derangement) for T > 1."""
    order = torch.arange(num_frames)
    return torch.roll(order, shifts=num_frames // 2) if num_frames > 1 else order


@torch.no_grad()
def strategy_lab(state: AppState, video: str | Path, candidates: str | list[str] | None = None,
                 strategies: list[str] | None = None) -> dict:
    """Every strategy on one clip: a score per candidate caption; trainable and total parameters;
    GFLOPs per clip; and the frame-order test (the clip reversed and shuffled: how far the
    embedding moves, and whether the best caption changes — a model blind to order moves 0).

    Returns ``{"captions": [...], "rows": [{strategy, family, trained, trainable, total, gflops,
    scores: [...], best, reversed_cos, shuffled_cos, uses_order, same_as_mean_pool}]}``.
    """
    from ..strategies import flops_per_clip

    clip = load_clip(state, video)
    texts = _candidates(candidates, lab_captions(state, clip.row))
    variants = torch.stack([clip.frames, clip.frames.flip(0), clip.frames[_shuffled_order(len(clip.frames))]])
    baseline = None
    rows = []
    for name in strategies or state.strategies:
        model = state.model(name)
        pixels = state.backbone.preprocess(variants.to(state.backbone.device)).to(state.backbone.dtype)
        video_emb = model.encode_video(pixels).float().cpu()        # [3,D]: original, reversed, shuffled
        all_scores = video_emb @ state.encode_texts(name, texts).t()  # [3,N]
        scores = all_scores[0]
        baseline = video_emb[0] if name == "mean-pool" else baseline
        counts = model.parameter_counts()
        reversed_cos, shuffled_cos = (float(video_emb[0] @ video_emb[j]) for j in (1, 2))
        best_after = all_scores[1:].argmax(dim=1).tolist()
        rows.append({
            "strategy": name, "family": model.family, "temporal": model.temporal,
            "trained": state.head_status(name).trained,
            "trainable": counts["trainable"], "total": counts["total"],
            "gflops": round(state.cached(("flops", name), lambda: flops_per_clip(model, state.collection.num_frames)) / 1e9, 3),
            "scores": [round(float(s), 4) for s in scores], "best": texts[int(scores.argmax())],
            "reversed_cos": round(reversed_cos, 5), "shuffled_cos": round(shuffled_cos, 5),
            "uses_order": bool(min(reversed_cos, shuffled_cos) < 1 - 1e-5),
            "best_changes": any(b != int(scores.argmax()) for b in best_after),
            "same_as_mean_pool": None if baseline is None else bool(torch.allclose(video_emb[0], baseline, atol=1e-5)),
        })
    return {"captions": texts, "clip": clip.label, "rows": rows}


# --------------------------------------------------------------------------------------------
# Model and bench results
# --------------------------------------------------------------------------------------------

def model_summary(state: AppState) -> list[list]:
    """``backbone.describe()`` as (field, value) rows, parameter counts per tower spelt out."""
    rows = []
    for key, value in state.backbone.describe().items():
        if isinstance(value, dict):
            rows += [[f"{key}: {k}", f"{v:,}" if isinstance(v, int) else str(v)] for k, v in value.items()]
        else:
            rows.append([key, str(value)])
    return rows


def model_folder(state: AppState) -> Path | None:
    """The loaded model's local folder (``local-dir:`` models), where its card lives."""
    name = str(state.backbone.name)
    return Path(name[len("local-dir:"):]) if name.startswith("local-dir:") else None


def model_card(state: AppState) -> str | None:
    """MODEL_CARD.md beside the weights (written by `workbench eval-ilfm`), if there is one."""
    folder = model_folder(state)
    card = folder / "MODEL_CARD.md" if folder else None
    return card.read_text() if card and card.is_file() else None


def model_probes(state: AppState, per_attribute: int | None = None) -> list[dict]:
    """What the model knows: zero-shot accuracy per attribute beside chance.

    Reads ``probes.json`` beside the weights (what `workbench eval-ilfm` measured) unless
    ``per_attribute`` asks for a fresh run of the probes now."""
    folder = model_folder(state)
    stored = folder / "probes.json" if folder else None
    if per_attribute is None and stored and stored.is_file():
        results = json.loads(stored.read_text())
        results = results.get("results", results)
    elif per_attribute is None:
        return []
    else:
        from ..backbones.card import zero_shot_probes

        results = zero_shot_probes(state.backbone, per_attribute)
    return [{"attribute": a, "accuracy": round(r["accuracy"], 1), "chance": round(r["chance"], 1),
             "n": r.get("n")} for a, r in results.items()]


def bench_results(runs_dir: str | Path) -> list[dict]:
    """Every ``workbench bench`` result under ``runs_dir`` (``bench.json``), newest first:
    ``{"path", "meta", "rows"}``."""
    found = sorted(Path(runs_dir).glob("**/bench.json"), key=lambda p: p.stat().st_mtime, reverse=True)
    out = []
    for path in found:
        try:
            payload = json.loads(path.read_text())
            out.append({"path": str(path.parent), "meta": payload["meta"], "rows": payload["rows"]})
        except (json.JSONDecodeError, KeyError, TypeError):
            continue   # a half-written or foreign file: not a bench result
    return out


def plain_label(text: str) -> str:
    """User text made safe for figure labels (plotly renders a subset of HTML in them)."""
    return html.escape(text, quote=False)


def scores_figure(labels: list[str], scores: list[float], title: str, highlight: list[bool] | None = None):
    """Horizontal bars, one per label (user text escaped), best at the top."""
    import plotly.graph_objects as go

    colours = ["#2ca02c" if h else "#1f77b4" for h in (highlight or [False] * len(labels))]
    fig = go.Figure(go.Bar(x=scores[::-1], y=[plain_label(t) for t in labels][::-1], orientation="h",
                           marker_color=colours[::-1], hovertemplate="%{y}: %{x:.3f}<extra></extra>"))
    fig.update_layout(title=title, template="plotly_white", height=max(260, 34 * len(labels) + 100),
                      margin=dict(l=10, r=10, t=50, b=30), xaxis_title="cosine similarity")
    return fig


def probes_figure(rows: list[dict]):
    """Zero-shot accuracy per attribute beside chance."""
    import plotly.graph_objects as go

    names = [r["attribute"] for r in rows]
    fig = go.Figure([go.Bar(name="accuracy %", x=names, y=[r["accuracy"] for r in rows]),
                     go.Bar(name="chance %", x=names, y=[r["chance"] for r in rows], marker_color="#bbbbbb")])
    fig.update_layout(barmode="group", template="plotly_white", yaxis=dict(range=[0, 100]),
                      title="What it knows: zero-shot accuracy on held-out ShapesWorld stills", height=340)
    return fig



# --------------------------------------------------------------------------------------------
# Video QA (workbench.tasks.qa: each answer scored as one statement against the video)
# --------------------------------------------------------------------------------------------

def annotated_questions(state: AppState, video: str) -> list[dict]:
    """The questions the collection's NExT-QA files ask about ``video``: question, choices, answer."""
    if not video:
        return []
    row = state.collection.find(video)
    return [{"question": r.question, "choices": list(r.choices), "answer": r.answer}
            for r in state.collection.annotations_of(row, "nextqa")]


def answer_question(state: AppState, video: str | Path, question: str, answers: str | list[str],
                    strategy: str) -> list[dict]:
    """A score per candidate answer (zero-shot: :func:`workbench.tasks.qa.statement` of question
    and answer, against the clip), best first: ``{answer, statement, score, best}``."""
    from ..tasks.base import Split, VideoSet
    from ..tasks.qa import QA, QAItem, statement

    question = _check_query(question)
    choices = _candidates(answers, [])
    if len(choices) < 2:
        raise ValueError("give at least two candidate answers, one per line")
    clip = load_clip(state, video)
    split = Split(VideoSet([clip.label], clip.frames[None]), [QAItem(0, 0, question, tuple(choices), None, "")])
    scores = QA().predict(state.model(strategy), split)["scores"][0]
    best = int(scores.argmax())
    order = sorted(range(len(choices)), key=lambda i: -scores[i])
    return [{"answer": choices[i], "statement": statement(question, choices[i]),
             "score": round(float(scores[i]), 4), "best": i == best} for i in order]
