"""The Gradio app: layout and wiring only (DESIGN §8, STYLE 11).

``build_app(state)`` lays out the tabs and binds each event to a handler from
:mod:`workbench.app.handlers` (or the task modules), every event with an explicit ``api_name``
so ``gradio_client`` and the tests call them by name. ``serve(...)`` is what ``workbench app``
runs: the ILFM, the collection (the ShapesWorld demo, generated once, unless ``--videos``),
then ``launch`` on 127.0.0.1, no share link, serving only the collection folder, the app's own
thumbnails and clips, and its uploads.

Handler errors (:class:`~workbench.data.video.VideoError`, ``ValueError``, ``KeyError``) become a
message in the page (``gr.Error``, text escaped: Gradio renders that message as HTML); the server
keeps serving.
"""
from __future__ import annotations

import functools
import html
from pathlib import Path

import gradio as gr
import numpy as np
import torch

from ..data.video import VideoError
from ..explain import METHODS
from . import handlers
from .state import AppState

TITLE = "I2V Workbench"
HANDLED = (VideoError, ValueError, KeyError, FileNotFoundError)
# One intra-op thread per request; requests run side by side (queue concurrency 2). Measured on
# the shared two-core build machine: a one-query text encoding took 6 ms on 1 thread and 630 ms
# on 2 (OpenMP threads spinning against other processes); benchmarks/bench_app_query.py.
SERVER_THREADS = 1


def shown(fn):
    """Run a handler; turn its input errors into a message in the page."""

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        try:
            return fn(*args, **kwargs)
        except HANDLED as error:
            message = error.args[0] if isinstance(error, KeyError) and error.args else str(error)
            raise gr.Error(html.escape(str(message)), print_exception=False) from None

    return wrapper


def _video_choices(state: AppState) -> list[str]:
    return [v.video_id for v in state.collection.videos]


def _intro(state: AppState) -> str:
    collection = state.collection
    skipped = f", {len(collection.skipped)} unreadable files skipped" if collection.skipped else ""
    return (f"# {TITLE}\nImage-to-video transfer learning on `{Path(str(state.backbone.name)).name}`. "
            f"Collection: **{len(collection)} videos** in `{collection.root}`{skipped}.")


# --------------------------------------------------------------------------------------------
# Event functions: plain handler output -> component values
# --------------------------------------------------------------------------------------------

def _search(state: AppState, query: str, strategy: str, k: float):
    hits = handlers.text_to_video(state, query, strategy, int(k))
    gallery = [(h["thumbnail"], f"{h['score']:.3f} · {h['video']}") for h in hits]
    table = [[h["rank"], h["video"], h["score"], h["caption"]] for h in hits]
    first = hits[0]["path"] if hits else None
    return gallery, table, first, [h["path"] for h in hits]


def _pick_hit(paths: list[str], evt: gr.SelectData):
    return paths[evt.index] if paths and evt.index is not None and evt.index < len(paths) else None


def _rank_captions(state: AppState, picked: str, upload: str | None, strategy: str, candidates: str):
    rows = handlers.video_to_text(state, upload or picked, strategy, candidates or None)
    figure = handlers.scores_figure([r["caption"] for r in rows], [r["score"] for r in rows],
                                    "captions ranked for this clip (green: ground truth)",
                                    [r["true"] for r in rows])
    return figure, [[r["rank"], r["caption"], r["score"], "yes" if r["true"] else ""] for r in rows]


def _show_video(state: AppState, video_id: str):
    return str(state.collection.videos[state.collection.find(video_id)].path) if video_id else None


def _lab(state: AppState, picked: str, upload: str | None, candidates: str):
    result = handlers.strategy_lab(state, upload or picked, candidates or None)
    captions = result["captions"]
    header = ["strategy", "family", "trained", "trainable params", "GFLOPs/clip", "uses order",
              "best caption changes", "cos(reversed)", "cos(shuffled)", "best caption"]
    table = [[r["strategy"], r["family"], "yes" if r["trained"] else "no", r["trainable"], r["gflops"],
              "yes" if r["uses_order"] else "no", "yes" if r["best_changes"] else "no",
              r["reversed_cos"], r["shuffled_cos"], r["best"]] for r in result["rows"]]
    from ..figures import similarity_matrix

    figure = similarity_matrix([r["scores"] for r in result["rows"]], [r["strategy"] for r in result["rows"]],
                               [handlers.plain_label(c) for c in captions],
                               title=f"score per candidate caption ({len(captions)} captions)")
    figure.update_layout(height=160 + 26 * len(result["rows"]), xaxis=dict(tickangle=25))
    return {"headers": header, "data": table}, figure


def _qa(state: AppState, picked: str, upload: str | None, question: str, answers: str, strategy: str):
    rows = handlers.answer_question(state, upload or picked, question, answers, strategy)
    figure = handlers.scores_figure([r["answer"] for r in rows], [r["score"] for r in rows],
                                    "score per answer (green: the model's answer)", [r["best"] for r in rows])
    return figure, [[r["answer"], r["statement"], r["score"]] for r in rows]


def _qa_examples(state: AppState, video: str):
    asked = handlers.annotated_questions(state, video)
    labels = [q["question"] for q in asked]
    return gr.update(choices=labels, value=labels[0] if labels else None)


def _qa_fill(state: AppState, video: str, question: str):
    for asked in handlers.annotated_questions(state, video):
        if asked["question"] == question:
            right = asked["choices"][asked["answer"]] if asked["answer"] is not None else "unknown"
            return asked["question"], "\n".join(asked["choices"]), f"annotated answer: {right}"
    return gr.update(), gr.update(), ""


def _moments(state: AppState, picked: str, upload: str | None):
    """The annotated queries of the chosen video, as choices of the "annotated" dropdown."""
    queries = [m["query"] for m in handlers.annotated_moments(state, upload or picked)]
    return gr.update(choices=queries, value=queries[0] if queries else None)


def _ground(state: AppState, picked: str, upload: str | None, query: str, strategy: str, frames: float):
    result = handlers.ground(state, upload or picked, query, strategy, int(frames))
    timeline, grid = handlers.grounding_figures(result)
    table = [[w["rank"], w["start"], w["end"], w["score"], "" if w["iou"] is None else round(w["iou"], 3)]
             for w in result["windows"]]
    choices = [(f"#{w['rank']}  {w['start']:.2f}-{w['end']:.2f} s", f"{w['start']},{w['end']}")
               for w in result["windows"]]
    choices += [(f"true  {s:.2f}-{e:.2f} s", f"{s},{e}") for s, e in result["true_windows"]]
    if result["true_windows"]:
        top = result["windows"][0]["iou"] if result["windows"] else 0.0
        box = "no frame with both boxes" if result["box_iou"] is None else f"mean box IoU {result['box_iou']:.2f}"
        note = (f"Annotated query: top window IoU with the true one **{top:.2f}**; {box} "
                f"(frames of the top window that have a true box).")
    else:
        note = "This query is not annotated for this video: no true window to compare with."
    return (timeline, {"headers": ["rank", "start (s)", "end (s)", "score", "IoU with true"], "data": table},
            gr.update(choices=choices, value=choices[0][1] if choices else None), grid, note)


def _window_bounds(window: str | None):
    """A window chosen in the list ("start,end" seconds) -> the span's from / to fields."""
    return tuple(float(v) for v in window.split(",")) if window else (None, None)


def _play_window(state: AppState, picked: str, upload: str | None, start: float | None, end: float | None):
    """The span [start, end) seconds cut out for the player (nothing while a bound is empty)."""
    if start is None or end is None:
        return None
    return str(handlers.cut_window(state, upload or picked, start, end))


def _default_layer(state: AppState, method: str):
    """Each method's own default block: the last for attention and rollout, the first for relevancy."""
    layout = handlers.attention_layout(state)
    return gr.update(value=0 if method == "relevancy" or layout is None else layout["blocks"] - 1)


def _fill_attention(state: AppState, picked: str, upload: str | None, query: str | None):
    """An annotated query fills the query and the span (its true window)."""
    moment = next((m for m in handlers.annotated_moments(state, upload or picked) if m["query"] == query), None)
    if moment is None or not moment["windows"]:
        return gr.update(), gr.update(), gr.update()
    start, end = moment["windows"][0]
    return moment["query"], start, end


def _attention(state: AppState, picked: str, upload: str | None, query: str, strategy: str, method: str,
               layer: float, head: str, frames: float, start: float | None, end: float | None):
    head_index = None if head in (None, "", "mean") else int(head)
    result = handlers.attention_maps(state, upload or picked, query, strategy, method, int(layer), head_index,
                                     int(frames), float(start or 0), float(end) if end else None)
    heads = "mean over heads" if result["head"] is None else f"head {result['head']}"
    grid = handlers.frames_figure(result, title=f"{result['method']}, block {result['layer']}, {heads}")
    table = [[i, round(t, 3), "" if m is None else round(100 * m, 1), "" if a is None else round(100 * a, 1)]
             for i, (t, m, a) in enumerate(zip(result["times"], result["inside"], result["area"]))]
    known = [(m, a) for m, a in zip(result["inside"], result["area"]) if m is not None]
    note = (f"Share of the map inside the true box: **{100 * np.mean([m for m, _ in known]):.0f} %**, where the "
            f"box covers {100 * np.mean([a for _, a in known]):.0f} % of the frame ({len(known)} frames)."
            if known else "No true box for this query on these frames (type or pick an annotated query).")
    return grid, {"headers": ["frame", "time (s)", "map inside true box %", "box area %"], "data": table}, note


def _bench(state: AppState, which: str | None):
    results = handlers.bench_results(state.runs_dir)
    if not results:
        return (None, None,
                f"No `workbench bench` results under `{state.runs_dir}` yet: run "
                "`workbench bench --profile cpu --out runs/bench` and restart the app.")
    chosen = next((r for r in results if r["path"] == which), results[0])
    from ..bench import COLUMNS
    from ..figures import strategy_comparison

    rows = [[row.get(c) for c in COLUMNS] for row in chosen["rows"]]
    meta = chosen["meta"]
    note = (f"`{chosen['path']}`: profile {meta.get('profile')}, backbone `{meta.get('backbone')}`, "
            f"{meta.get('num_frames')} frames per clip, {meta.get('device')}.")
    return {"headers": list(COLUMNS), "data": rows}, strategy_comparison(chosen["rows"]), note


def _probes(state: AppState, per_attribute: float | None = None):
    rows = handlers.model_probes(state, None if per_attribute is None else int(per_attribute))
    return handlers.probes_figure(rows) if rows else None


# --------------------------------------------------------------------------------------------
# Layout
# --------------------------------------------------------------------------------------------

def build_app(state: AppState) -> gr.Blocks:
    """The app's Blocks for ``state`` (not launched)."""
    bind = lambda fn: shown(functools.partial(fn, state))  # noqa: E731
    videos = _video_choices(state)
    first_video = videos[0] if videos else None
    strategies = state.strategies
    example_video = handlers.grounding_example(state) or first_video
    layout = handlers.attention_layout(state)
    blocks, heads = (layout["blocks"], layout["heads"]) if layout else (1, 1)

    with gr.Blocks(title=TITLE, analytics_enabled=False) as demo:
        gr.Markdown(_intro(state))
        with gr.Tabs():
            # ---------------- Retrieval ----------------
            with gr.Tab("Retrieval", id="retrieval"):
                with gr.Row():
                    strategy = gr.Dropdown(strategies, value=state.default_strategy, label="strategy", scale=1)
                    status = gr.Textbox(state.head_status(state.default_strategy).note, label="strategy status",
                                        interactive=False, scale=3)
                gr.Markdown("### Text → videos")
                with gr.Row():
                    query = gr.Textbox(label="query", placeholder="a red circle moves to the left", scale=4,
                                       elem_id="query")
                    k = gr.Slider(1, 48, value=12, step=1, label="results", scale=1)
                    search = gr.Button("Search", variant="primary", scale=1, elem_id="search")
                with gr.Row():
                    gallery = gr.Gallery(label="ranked videos (frames left to right)", columns=2, height=460,
                                         object_fit="contain", elem_id="gallery", scale=3)
                    player = gr.Video(label="selected video", interactive=False, autoplay=True, loop=True, scale=2)
                hits_table = gr.Dataframe(headers=["rank", "video", "score", "ground-truth caption"],
                                          datatype=["number", "str", "number", "str"], interactive=False,
                                          elem_id="hits")
                hit_paths = gr.State([])
                gr.Markdown("### Video → captions")
                with gr.Row():
                    with gr.Column():
                        pick = gr.Dropdown(videos, value=first_video, label="pick a collection video")
                        upload = gr.Video(label="... or upload one (takes precedence)", sources=["upload"])
                        picked_player = gr.Video(value=_show_video(state, first_video), label="picked video",
                                                 interactive=False, loop=True)
                    with gr.Column():
                        candidates = gr.Textbox(label="candidate captions, one per line (empty: the collection's)",
                                                lines=5, elem_id="candidates")
                        rank = gr.Button("Rank captions", variant="primary", elem_id="rank")
                        caption_plot = gr.Plot(label="scores")
                caption_table = gr.Dataframe(headers=["rank", "caption", "score", "ground truth"],
                                             datatype=["number", "str", "number", "str"], interactive=False,
                                             elem_id="captions")

            # ---------------- Video QA ----------------
            with gr.Tab("Video QA", id="qa"):
                gr.Markdown("A video, a question and candidate answers: each answer is turned into one "
                            "statement with the question and scored against the video (zero-shot QA).")
                with gr.Row():
                    with gr.Column():
                        qa_pick = gr.Dropdown(videos, value=first_video, label="collection video")
                        qa_upload = gr.Video(label="... or upload one", sources=["upload"])
                        qa_asked = gr.Dropdown([], label="questions annotated for this video (fills the form)")
                        qa_truth = gr.Textbox(label="ground truth", interactive=False)
                    with gr.Column():
                        qa_question = gr.Textbox(label="question", placeholder="which way does the red circle move",
                                                 elem_id="qa-question")
                        qa_answers = gr.Textbox(label="candidate answers, one per line", lines=5, elem_id="qa-answers")
                        qa_run = gr.Button("Score the answers", variant="primary", elem_id="qa-run")
                qa_plot = gr.Plot(label="score per answer")
                qa_table = gr.Dataframe(headers=["answer", "statement scored", "score"],
                                        datatype=["str", "str", "number"], interactive=False, elem_id="qa-table")

            # ---------------- Grounding ----------------
            with gr.Tab("Grounding", id="grounding"):
                gr.Markdown("When and where a query happens in one video, zero-shot "
                            "(`workbench.tasks.st_grounding`): the query's similarity to the strategy's "
                            "sliding window and its activity over time give ranked windows; the query's "
                            "relevancy gives a box on each frame. Choose a window to play that span.")
                with gr.Row():
                    with gr.Column(scale=2):
                        g_pick = gr.Dropdown(videos, value=example_video, label="video")
                        g_upload = gr.Video(label="... or upload one", sources=["upload"], height=150)
                        g_asked = gr.Dropdown([], label="queries annotated for this video (fills the query)")
                        g_query = gr.Textbox(label="query", placeholder="the red circle moves to the left",
                                             elem_id="g-query")
                        with gr.Row():
                            g_strategy = gr.Dropdown(strategies, value=state.default_strategy, label="strategy")
                            g_frames = gr.Slider(8, 96, value=handlers.GROUNDING_FRAMES, step=4,
                                                 label="frames sampled")
                        g_run = gr.Button("Ground the query", variant="primary", elem_id="g-run")
                    with gr.Column(scale=3):
                        g_plot = gr.Plot(label="query over time", elem_id="g-plot")
                        g_windows = gr.Radio([], label="windows (choose one to play it)", elem_id="g-windows")
                        with gr.Row():
                            g_start = gr.Number(None, label="from (s)", minimum=0, elem_id="g-start")
                            g_end = gr.Number(None, label="to (s)", minimum=0, elem_id="g-end")
                            g_play = gr.Button("Play this span", elem_id="g-play")
                        g_span = gr.Video(label="the chosen window", interactive=False, autoplay=True, loop=True,
                                          height=260, elem_id="g-span")
                g_note = gr.Markdown(elem_id="g-note")
                g_grid = gr.Plot(label="where: relevancy and boxes per frame", elem_id="g-grid")
                g_table = gr.Dataframe(headers=["rank", "start (s)", "end (s)", "score", "IoU with true"],
                                       interactive=False, elem_id="g-table")

            # ---------------- Attention ----------------
            with gr.Tab("Attention", id="attention"):
                gr.Markdown("Where the image tower looks on each frame (`workbench.explain`): one block's raw "
                            "attention of the CLS token, attention rollout up to a block, or the query's "
                            "gradient relevancy from a block on (Chefer et al. 2021), for one head or their "
                            "mean." + ("" if layout else "\n\n**This model's attention cannot be tapped.**"))
                with gr.Row():
                    a_pick = gr.Dropdown(videos, value=example_video, label="video")
                    a_upload = gr.Video(label="... or upload one", sources=["upload"], height=150)
                    a_asked = gr.Dropdown([], label="annotated queries (fill the query and the span)")
                with gr.Row():
                    a_query = gr.Textbox(label="query (relevancy explains its score)", scale=3, elem_id="a-query")
                    a_strategy = gr.Dropdown(strategies, value=state.default_strategy, label="strategy", scale=1)
                with gr.Row():
                    a_method = gr.Radio(list(METHODS), value="relevancy", label="method")
                    a_layer = gr.Slider(0, max(0, blocks - 1), value=0, step=1, label="layer (block)")
                    a_head = gr.Dropdown(["mean"] + [str(h) for h in range(heads)], value="mean", label="head")
                with gr.Row():
                    a_frames = gr.Slider(2, 16, value=state.collection.num_frames, step=1, label="frames")
                    a_start = gr.Number(0, label="from (s)", minimum=0)
                    a_end = gr.Number(None, label="to (s; empty: the end)", minimum=0)
                    a_run = gr.Button("Show the maps", variant="primary", elem_id="a-run")
                a_note = gr.Markdown(elem_id="a-note")
                a_grid = gr.Plot(label="maps over time", elem_id="a-grid")
                a_table = gr.Dataframe(interactive=False, elem_id="a-table")

            # ---------------- Strategy lab ----------------
            with gr.Tab("Strategy lab", id="lab"):
                gr.Markdown("One clip, every strategy: its scores for candidate captions, what it trains, "
                            "what it costs, and whether it uses frame order (the clip reversed and shuffled: "
                            "an order-blind model gives the same embedding, cos = 1).")
                with gr.Row():
                    lab_pick = gr.Dropdown(videos, value=first_video, label="clip")
                    lab_upload = gr.Video(label="... or upload one", sources=["upload"])
                    lab_captions = gr.Textbox(label="candidate captions, one per line (empty: the clip's caption, "
                                                    "its reversed twin's and its siblings')", lines=4)
                lab_run = gr.Button("Run every strategy", variant="primary", elem_id="lab-run")
                lab_table = gr.Dataframe(interactive=False, elem_id="lab-table", wrap=True)
                lab_plot = gr.Plot(label="scores per strategy and caption")
                gr.Markdown("### Measured comparison (`workbench bench`)")
                bench_found = handlers.bench_results(state.runs_dir)
                bench_pick = gr.Dropdown([r["path"] for r in bench_found],
                                         value=bench_found[0]["path"] if bench_found else None,
                                         label="bench result", allow_custom_value=False)
                bench_note = gr.Markdown()
                bench_table = gr.Dataframe(interactive=False, elem_id="bench-table")
                bench_plot = gr.Plot()

            # ---------------- Model ----------------
            with gr.Tab("Model", id="model"):
                gr.Markdown("### Which ILFM is loaded")
                gr.Dataframe(value=handlers.model_summary(state), headers=["field", "value"],
                             datatype=["str", "str"], interactive=False, elem_id="model-table")
                gr.Markdown("### What it knows")
                probes_plot = gr.Plot(value=_probes(state))
                with gr.Row():
                    per_attribute = gr.Slider(20, 300, value=50, step=10, label="probe images per attribute")
                    probe_run = gr.Button("Run the zero-shot probes now")
                card = handlers.model_card(state)
                gr.Markdown("### Model card\n\n" + (card if card is not None else
                            "No MODEL_CARD.md beside these weights (write one with `workbench eval-ilfm`)."))

        # ---------------- wiring ----------------
        strategy.change(bind(lambda s, name: s.head_status(name).note), strategy, status, api_name="head_status")
        for trigger in (search.click, query.submit):
            trigger(bind(_search), [query, strategy, k], [gallery, hits_table, player, hit_paths],
                    api_name="text_to_video" if trigger == search.click else False)
        gallery.select(_pick_hit, hit_paths, player, api_name="select_hit")
        pick.change(bind(_show_video), pick, picked_player, api_name="show_video")
        rank.click(bind(_rank_captions), [pick, upload, strategy, candidates], [caption_plot, caption_table],
                   api_name="video_to_text")
        lab_run.click(bind(_lab), [lab_pick, lab_upload, lab_captions], [lab_table, lab_plot], api_name="strategy_lab")
        qa_pick.change(bind(_qa_examples), qa_pick, qa_asked, api_name="qa_examples")
        qa_asked.change(bind(_qa_fill), [qa_pick, qa_asked], [qa_question, qa_answers, qa_truth], api_name="qa_fill")
        qa_run.click(bind(_qa), [qa_pick, qa_upload, qa_question, qa_answers, strategy], [qa_plot, qa_table],
                     api_name="answer_question")
        for pick_video, upload_video, asked in ((g_pick, g_upload, g_asked), (a_pick, a_upload, a_asked)):
            for trigger in (pick_video.change, upload_video.change):
                trigger(bind(_moments), [pick_video, upload_video], asked,
                        api_name="annotated_moments" if asked is g_asked and trigger == pick_video.change else False)
            demo.load(bind(_moments), [pick_video, upload_video], asked, api_name=False)
        g_asked.change(lambda text: text or gr.update(), g_asked, g_query, api_name=False)
        for trigger in (g_run.click, g_query.submit):
            trigger(bind(_ground), [g_pick, g_upload, g_query, g_strategy, g_frames],
                    [g_plot, g_table, g_windows, g_grid, g_note],
                    api_name="ground" if trigger == g_run.click else False)
        # choosing a window fills the span fields, which the player cuts: typed bounds play the same way
        g_windows.change(_window_bounds, g_windows, [g_start, g_end], api_name=False).then(
            bind(_play_window), [g_pick, g_upload, g_start, g_end], g_span, api_name="play_window")
        g_play.click(bind(_play_window), [g_pick, g_upload, g_start, g_end], g_span, api_name=False)
        a_asked.change(bind(_fill_attention), [a_pick, a_upload, a_asked], [a_query, a_start, a_end], api_name=False)
        a_method.change(bind(_default_layer), a_method, a_layer, api_name=False)
        a_run.click(bind(_attention), [a_pick, a_upload, a_query, a_strategy, a_method, a_layer, a_head, a_frames,
                                       a_start, a_end], [a_grid, a_table, a_note], api_name="attention")
        bench_pick.change(bind(_bench), bench_pick, [bench_table, bench_plot, bench_note], api_name="bench")
        probe_run.click(bind(_probes), per_attribute, probes_plot, api_name="run_probes")
        demo.load(bind(_bench), bench_pick, [bench_table, bench_plot, bench_note], api_name=False)
        demo.load(bind(_qa_examples), qa_pick, qa_asked, api_name=False)
    return demo


def allowed_paths(state: AppState) -> list[str]:
    """What the server may serve besides its uploads: the collection folder and the app's own files."""
    return [str(state.collection.root), str(state.collection.thumbnail_dir), str(state.output_dir)]


def launch(demo: gr.Blocks, state: AppState, host: str = "127.0.0.1", port: int | None = None,
           block: bool = True, quiet: bool = False):
    """Start serving ``demo``: no share link, only ``allowed_paths(state)``, uploads up to the limit."""
    demo.queue(default_concurrency_limit=2)
    return demo.launch(server_name=host, server_port=port, share=False, inbrowser=False,
                       allowed_paths=allowed_paths(state), max_file_size=f"{state.max_upload_mb:.0f}mb",
                       prevent_thread_lock=not block, quiet=quiet, show_error=True)


def serve(videos: Path | None = None, model: str | None = None, pretrained: str | None = None,
          strategy: str = "mean-pool", host: str = "127.0.0.1", port: int | None = None,
          runs_dir: Path = Path("runs"), num_frames: int = 8, block: bool = True, quiet: bool = False):
    """Load the ILFM, index the collection (the demo unless ``videos``), build and launch the app."""
    from ..backbones import load_backbone
    from ..strategies import strategy_class
    from .collection import index_folder, prepare_demo

    strategy_class(strategy)   # an unknown name fails here, before minutes of indexing
    torch.set_num_threads(SERVER_THREADS)
    backbone = load_backbone(model, pretrained)
    root = Path(videos) if videos is not None else prepare_demo()
    collection = index_folder(root, backbone, num_frames=num_frames, progress=not quiet)
    for path, reason in collection.skipped:
        print(f"skipped {path}: {reason}")
    state = AppState(backbone, collection, runs_dir=Path(runs_dir), default_strategy=strategy)
    demo = build_app(state)
    launch(demo, state, host, port, block=block, quiet=quiet)
    return demo, state
