"""What the app's events do, as plain functions of an :class:`~workbench.app.state.AppState`.

No Gradio here: each handler takes plain values (text, a file path, a strategy name) and returns
plain data (lists of dicts, frames and maps as tensors, figures, markdown of our own making), so
tests call them directly and ``ui.py`` only lays them out. Bad input raises: :class:`~workbench.data.video.VideoError`
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

import numpy as np
import torch

from ..config import REPO_ROOT
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


def find_video(state: AppState, video: str | Path) -> tuple[int | None, str, Path]:
    """``(row, label, path)`` of a collection video (by id) or a file (an upload; recognised by
    content if it is one of the collection's videos, row None otherwise)."""
    collection = state.collection
    if not video:
        raise ValueError("no video: upload one or pick one from the collection")
    try:
        row = collection.find(video)
    except KeyError:
        path = check_upload(video, state.max_upload_mb)
        row = {v.key: i for i, v in enumerate(collection.videos)}.get(content_hash(path))
        if row is None:
            return None, path.name, path
    return row, collection.videos[row].video_id, collection.videos[row].path


def load_clip(state: AppState, video: str | Path) -> Clip:
    """The clip the features saw of a collection video or an upload (see :func:`find_video`).
    Raises VideoError for files that cannot give a clip."""
    row, label, path = find_video(state, video)
    if row is None:
        return Clip(decode_for_model(path, state.collection.num_frames, state.backbone), None, label, path)
    return Clip(state.collection.decode(row), row, label, path)


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
    entry = _shapes_truth(state).get(state.collection.videos[row].name)
    return entry if entry and "clip_id" in entry else None


def _shapes_truth(state: AppState) -> dict[str, dict]:
    """ShapesWorld's full ground truth of the collection (``shapesworld/clips.jsonl`` and
    ``long_videos.jsonl``, where the folder is a ShapesWorld export), by file stem; read once."""

    def read() -> dict[str, dict]:
        out = {}
        for name, key in (("clips.jsonl", "clip_id"), ("long_videos.jsonl", "video_id")):
            file = state.collection.root / "shapesworld" / name
            if file.is_file():
                with open(file) as f:
                    out.update((entry[key], entry) for entry in map(json.loads, f))
        return out

    return state.cached("shapes-truth", read)


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


# The measured tables committed with the project (README "Strategy comparison"): shown after the
# user's own runs, so a fresh clone's lab already has the comparison.
SHIPPED_RESULTS = REPO_ROOT / "benchmarks" / "results"


def bench_results(runs_dir: str | Path, shipped: Path | None = SHIPPED_RESULTS) -> list[dict]:
    """Every ``workbench bench`` result under ``runs_dir`` (``bench.json``), newest first, then
    the shipped ones: ``{"path", "meta", "rows"}``."""
    found = sorted(Path(runs_dir).glob("**/bench.json"), key=lambda p: p.stat().st_mtime, reverse=True)
    if shipped is not None and shipped.is_dir():
        found += sorted(shipped.glob("**/bench.json"))
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


# --------------------------------------------------------------------------------------------
# Grounding and attention: when and where a query happens in one video
# --------------------------------------------------------------------------------------------

GROUNDING_FRAMES = 32       # frames sampled per video to ground a query (the task's default: 4 x an 8-frame clip)
MAX_SAMPLED_FRAMES = 128    # more is refused: the relevancy pass keeps every frame's attention in memory
MAX_SPAN_SECONDS = 120.0    # longest window cut out for playback
PLAYBACK_MAX_SIDE = 640     # a span of a larger video is scaled down to this many pixels a side
GRID_FRAMES = 8             # frames shown in a frame grid


@dataclass
class Sampled:
    """Frames of one video sampled for grounding or explaining, and where in the file they are."""

    frames: torch.Tensor              # uint8 [T,3,S,S] at the model's input size (squashed, as grounding decodes)
    indices: list[int]                # their frame numbers in the file
    fps: float
    duration: float                   # seconds
    scale: tuple[float, float]        # file pixels -> frame pixels, (x, y)

    @property
    def times(self) -> list[float]:
        return [i / self.fps for i in self.indices]

    def boxes(self, tube: dict[int, list[float]]) -> list[list[float] | None]:
        """A tube (file frame -> [x1,y1,x2,y2] file pixels) at the sampled frames, in frame pixels."""
        sx, sy = self.scale
        return [None if (b := tube.get(i)) is None else [b[0] * sx, b[1] * sy, b[2] * sx, b[3] * sy]
                for i in self.indices]


def sample_video(state: AppState, path: str | Path, num_frames: int, start: float = 0.0,
                 end: float | None = None) -> Sampled:
    """``num_frames`` frames sampled uniformly in [start, end) seconds (end None: to the end)."""
    from ..data.video import read_video_span, video_info

    if not 2 <= int(num_frames) <= MAX_SAMPLED_FRAMES:
        raise ValueError(f"sample between 2 and {MAX_SAMPLED_FRAMES} frames, not {num_frames}")
    if end is not None and end <= start:
        raise ValueError(f"the span must end after it starts ({start:g} s to {end:g} s)")
    info = video_info(path)
    size = state.backbone.image_size
    frames, indices, fps = read_video_span(path, start, end, int(num_frames), size=size)
    return Sampled(frames, indices, fps, info["duration"], (size / info["width"], size / info["height"]))


def annotated_moments(state: AppState, video: str | Path | None) -> list[dict]:
    """What the collection's annotations say happens in ``video``, per query: ``{"query",
    "windows": [[start, end], ...] seconds, "boxes": {frame: [x1,y1,x2,y2]} in file pixels}``.

    ShapesWorld's own ground truth where the folder is an export (every event of a long video
    with its tube; a clip's caption over the whole clip, with its box on every frame); else the
    Charades-STA windows and HC-STVG tubes the folder carries. Empty for uploads."""
    if not video:
        return []
    row, _, _ = find_video(state, video)
    if row is None:
        return []
    entry = _shapes_truth(state).get(state.collection.videos[row].name)
    if entry and "events" in entry:
        return [{"query": e["query"], "windows": [[e["start"], e["end"]]],
                 "boxes": {int(f): b for f, b in e["boxes"].items()}} for e in entry["events"]]
    if entry:
        return [{"query": entry["caption"], "windows": [[0.0, entry["num_frames"] / entry["fps"]]],
                 "boxes": dict(enumerate(entry.get("boxes", [])))}]
    moments: dict[str, dict] = {}
    for fmt in ("charades_sta", "hcstvg"):
        for record in state.collection.annotations_of(row, fmt):
            moment = moments.setdefault(record.query or "", {"query": record.query, "windows": [], "boxes": {}})
            moment["windows"] += [list(w) for w in record.windows if list(w) not in moment["windows"]]
            moment["boxes"].update(record.tube)
    return [m for m in moments.values() if m["query"]]


def _moment(state: AppState, video, query: str) -> dict | None:
    """The annotated moment of ``video`` whose query is ``query`` (case and spaces aside)."""
    wanted = " ".join(query.split()).casefold()
    return next((m for m in annotated_moments(state, video) if " ".join(m["query"].split()).casefold() == wanted),
                None)


def ground(state: AppState, video: str | Path, query: str, strategy: str,
           num_frames: int = GROUNDING_FRAMES) -> dict:
    """Zero-shot spatio-temporal grounding of ``query`` in one video
    (:class:`workbench.tasks.st_grounding.STGrounding`): the strategy's query similarity over time
    and the query's activity give ranked windows; the query's relevancy map gives a box on each
    frame of the top window.

    Returns ``times`` (seconds of the sampled frames), the ``similarity`` and ``activity`` curves,
    ``windows`` (``{rank, start, end, score, iou}``, iou against the true window where the query
    is annotated, else None), ``true_windows``, ``span`` (sampled frames [start, end) of the top
    window), per sampled frame the predicted ``boxes`` (inside the span) and ``true_boxes``,
    ``box_iou`` (mean over frames with both, or None), and the ``frames`` and relevancy ``maps``
    ``[T,rows,cols]`` for :func:`frames_figure`.
    """
    from .. import metrics
    from ..tasks.base import Split, VideoSet
    from ..tasks.st_grounding import STGrounding
    from ..tasks.temporal_grounding import GroundingConfig, GroundingItem

    query = _check_query(query)
    _, label, path = find_video(state, video)
    sampled = sample_video(state, path, num_frames)
    truth = _moment(state, video, query)
    true_boxes = sampled.boxes(truth["boxes"]) if truth else [None] * len(sampled.indices)
    true_windows = [list(w) for w in truth["windows"]] if truth else []
    backbone = state.backbone
    with torch.no_grad():
        pixels = backbone.preprocess(sampled.frames[None].to(backbone.device)).to(backbone.dtype)
        features = backbone.encode_frames(pixels).float().cpu()                     # [1,T,D]
    videos = VideoSet([label], sampled.frames[None], [sampled.times], [sampled.duration], features=features)
    item = GroundingItem(0, label, query, [tuple(w) for w in true_windows],
                         tube={i: tuple(b) for i, b in enumerate(true_boxes) if b is not None})
    task = STGrounding(GroundingConfig(frames_per_video=len(sampled.indices)))
    task.num_frames = state.collection.num_frames    # the clip length the strategy embeds at once
    split = Split(videos, [item])
    model = state.model(strategy)
    predicted = task.predict(model, split)
    tube = predicted["tubes"][0]
    windows = []
    for rank, (start, end, score) in enumerate(predicted["temporal"]["rows"][0]["pred_relevant_windows"], 1):
        iou = float(metrics.temporal_iou([[start, end]], true_windows).max()) if true_windows else None
        windows.append({"rank": rank, "start": start, "end": end, "score": score, "iou": iou})
    boxes = [tube["boxes"].get(i) for i in range(len(sampled.indices))]
    both = [(b, t) for b, t in zip(boxes, true_boxes) if b is not None and t is not None]
    return {"video": label, "query": query, "times": sampled.times, "duration": sampled.duration,
            "similarity": task.curves(model, split)[0][0].tolist(),
            "activity": task.activities(model, split)[0].tolist(),
            "windows": windows, "true_windows": true_windows, "span": [tube["start_frame"], tube["end_frame"]],
            "boxes": boxes, "true_boxes": true_boxes,
            "box_iou": float(np.mean([metrics.box_iou(b, t) for b, t in both])) if both else None,
            "frames": sampled.frames, "maps": task.relevancy_maps(model, split)[0]}


def cut_window(state: AppState, video: str | Path, start: float, end: float) -> Path:
    """The video's frames in [start, end) seconds as an H.264 MP4 at the video's own frame rate,
    written once under ``state.output_dir``: what the page plays when a window is chosen."""
    from ..data.video import read_video_span, video_info, write_video

    row, _, path = find_video(state, video)
    start, end = float(start), float(end)
    if not 0 <= start < end:
        raise ValueError(f"a window runs from a start >= 0 to a later end, not {start:g} s to {end:g} s")
    if end - start > MAX_SPAN_SECONDS:
        raise ValueError(f"the window is {end - start:.0f} s long; at most {MAX_SPAN_SECONDS:.0f} s are played")
    key = state.collection.videos[row].key if row is not None else content_hash(path)
    out = Path(state.output_dir) / f"{key[:20]}-{start:.3f}-{end:.3f}.mp4"
    if not out.is_file():
        info = video_info(path)
        shrink = min(1.0, PLAYBACK_MAX_SIDE / max(info["width"], info["height"]))
        size = None if shrink == 1 else (round(info["height"] * shrink), round(info["width"] * shrink))
        frames, _, fps = read_video_span(path, start, end, size=size)
        write_video(out, frames.permute(0, 2, 3, 1), fps)                      # [T,3,H,W] -> [T,H,W,3]
    return out


def attention_layout(state: AppState) -> dict | None:
    """``{"blocks", "heads", "grid"}`` of the image tower (what the layer and head pickers offer),
    or None for a model whose attention cannot be tapped."""
    from ..backbones.taps import TapError, vision_tower

    try:
        visual = vision_tower(state.backbone)
    except TapError:
        return None
    blocks = visual.transformer.resblocks
    return {"blocks": len(blocks), "heads": blocks[0].attn.num_heads, "grid": tuple(visual.grid_size)}


def attention_maps(state: AppState, video: str | Path, query: str | None, strategy: str,
                   method: str = "relevancy", layer: int | None = None, head: int | None = None,
                   num_frames: int | None = None, start: float = 0.0, end: float | None = None) -> dict:
    """Where the strategy looks on each of ``num_frames`` frames sampled in [start, end) seconds
    (:func:`workbench.explain.explain`: one block's raw attention, attention rollout, or the
    query's gradient relevancy; ``layer`` and ``head`` as there, None for their defaults).

    Returns ``frames``, ``maps`` ``[T,rows,cols]`` scaled to [0, 1] over the whole clip (so the
    strength between frames shows), ``times``, the resolved ``layer`` and ``head``, the
    strategy's ``score`` for the query (relevancy), and where the query is annotated the
    ``true_boxes`` and per frame ``inside`` (share of the map in the true box) beside ``area``
    (the box's share of the frame): ``inside`` > ``area`` means it looks at the named thing.
    """
    from ..backbones.taps import TapError
    from ..explain import explain, mass_inside

    query = _check_query(query) if (query or "").strip() or method == "relevancy" else None
    _, label, path = find_video(state, video)
    sampled = sample_video(state, path, num_frames or state.collection.num_frames, start, end)
    try:
        explanation = explain(state.model(strategy), sampled.frames, query, method,
                              None if layer is None else int(layer), None if head is None else int(head))
    except TapError as error:
        raise ValueError(f"{state.backbone.name}: its attention cannot be shown ({error})") from None
    truth = _moment(state, video, query) if query else None
    true_boxes = sampled.boxes(truth["boxes"]) if truth else [None] * len(sampled.indices)
    size = sampled.frames.shape[-1]
    inside, area = [], []
    for m, box in zip(explanation.maps, true_boxes):
        known = box is not None
        inside.append(float(mass_inside(m[None], [box], size)[0]) if known else None)
        area.append(float((box[2] - box[0]) * (box[3] - box[1]) / size ** 2) if known else None)
    return {"video": label, "query": query, "method": explanation.method, "layer": explanation.layer,
            "head": explanation.head, "score": explanation.score, "times": sampled.times,
            "frames": sampled.frames, "maps": explanation.normalized(), "true_boxes": true_boxes,
            "inside": inside, "area": area}


def frames_figure(result: dict, picks: list[int] | None = None, boxes: list | None = None, title: str = ""):
    """A frame grid (:func:`workbench.figures.frame_grid`) of a grounding or attention result:
    the ``picks`` frames (default: up to GRID_FRAMES spread evenly) with their maps, predicted
    boxes (orange) and true boxes (green); each titled with its time."""
    from ..figures import OVERLAY_COLOURS, frame_grid

    picks = picks if picks is not None else _spread(list(range(len(result["times"]))))
    select = lambda values: None if values is None else [values[i] for i in picks]  # noqa: E731
    figure = frame_grid(result["frames"][picks], result["maps"][picks], select(boxes), select(result["true_boxes"]),
                        titles=[f"{result['times'][i]:.2f} s" for i in picks], opacity=1.0,
                        colorscale=OVERLAY_COLOURS)
    figure.update_layout(title=title)
    return figure


def grounding_figures(result: dict):
    """The timeline (query similarity and activity over time, predicted and true windows) and the
    frame grid of the top window and the true one (relevancy, predicted and true boxes)."""
    from ..figures import grounding_timeline

    windows = [[w["start"], w["end"]] for w in result["windows"]]
    timeline = grounding_timeline(result["similarity"], result["times"], windows, result["true_windows"],
                                  plain_label(result["query"]), second_curve=result["activity"])
    timeline.update_layout(height=340, margin=dict(l=10, r=10, t=50, b=10))
    start, end = result["span"]
    shown = set(range(start, end))
    for s, e in result["true_windows"]:
        shown |= {i for i, t in enumerate(result["times"]) if s <= t < e}
    grid = frames_figure(result, _spread(sorted(shown)), result["boxes"], "frames of the top window and the true "
                         "one: relevancy, predicted box (orange), true box (green)")
    return timeline, grid


def _spread(items: list, count: int = GRID_FRAMES) -> list:
    """At most ``count`` of ``items``, evenly spread, first and last included."""
    return [items[i] for i in np.linspace(0, len(items) - 1, min(count, len(items))).round().astype(int)]


def grounding_example(state: AppState) -> str | None:
    """The collection video with the most annotated moments (a ShapesWorld long video in the
    demo): what the Grounding and Attention tabs open on."""
    collection = state.collection
    truth = _shapes_truth(state)
    counts = {v.video_id: len(truth.get(v.name, {}).get("events", [])) for v in collection.videos}
    by_path = {v.path: v.video_id for v in collection.videos}
    for fmt in ("charades_sta", "hcstvg"):
        for record in collection.records.get(fmt, []):
            video = by_path.get(Path(record.path).resolve())
            if video is not None:
                counts[video] += 1
    best = max(counts, key=counts.get, default=None)
    return best if best is not None and counts[best] > 0 else None
