"""Write ShapesWorld to disk: real H.264 videos plus annotations in the real datasets' layouts.

``write_shapesworld(out_dir, profile)`` renders every clip and long video of a profile, encodes
it with :func:`workbench.data.video.write_video`, and writes the annotation files that the
loaders of the real datasets read, byte-for-byte in their schema, so the synthetic path runs
through the same readers (:mod:`workbench.data.formats`) and decoder as real data::

    <out_dir>/
      videos/<video_id>.mp4                      every clip and long video (H.264, 8 fps)
      msrvtt/MSRVTT_data.json                    {"info", "videos", "sentences"}: every wording of every clip
      msrvtt/MSRVTT_train.9k.csv                 CLIP4Clip's train list (video_id)
      msrvtt/MSRVTT_JSFUSION_test.csv            CLIP4Clip's test rows (key,vid_key,video_id,sentence)
      kinetics/{train,validate}.csv              label,youtube_id,time_start,time_end,split (action classes)
      charades_sta/charades_sta_{train,test}.txt "vid start end##query" (long videos)
      qvhighlights/highlight_{train,val}_release.jsonl   one query per line, with saliency
      nextqa/{train,val}.csv                     video,frame_count,width,height,question,answer,qid,type,a0-a4
      hcstvg/{train,test}.json                   HC-STVG v1 tubes (one event per long video)
      shapesworld/clips.jsonl, long_videos.jsonl, eval_splits.json   full ground truth
      manifest.json                              what was generated: config, counts, files per layout

Clips of the ``train`` split go to the training files, the ``eval`` split to the test/val files;
long videos are split 3:1 (at least one test video).

Videos are H.264 at crf 18 (near-lossless, High profile: every browser plays them). Lossy coding
depends on frame order, so a twin's decoded frames are only *nearly* the reverse of its clip's;
``lossless=True`` (crf 0) makes them exact — the order split's "an order-blind model scores
exactly chance" then holds for the files too — at ~1.5x the size, in the High 4:4:4 Predictive
profile, which ffmpeg/decord decode but browsers do not play. Every file is written atomically (temporary
file, then rename), so an existing file is complete: re-running skips what exists, and refuses
a folder generated with another seed or profile unless ``overwrite=True``.
"""
from __future__ import annotations

import csv
import io
import json
import math
from dataclasses import asdict, dataclass
from pathlib import Path

from tqdm.auto import tqdm

from ...config import Profile, get_profile
from ...io import atomic_write
from ..video import write_video
from .clips import EVAL_SPLITS, EVENT_KINDS, FPS, Clip, EvalItem, evaluation_split, make_clips
from .long_videos import LongVideo, make_long_videos
from .questions import Question, make_questions

LAYOUTS = ("msrvtt", "kinetics", "charades_sta", "qvhighlights", "nextqa", "hcstvg")
VIDEO_DIR = "videos"


@dataclass
class ShapesWorld:
    """Everything one export holds, in memory: the generator's ground truth."""

    seed: int
    profile: Profile
    clips: list[Clip]              # train clips, then eval clips
    long_videos: list[LongVideo]   # train, then test
    questions: list[Question]
    eval_items: dict[str, list[EvalItem]]

    @property
    def videos(self) -> list[Clip | LongVideo]:
        return [*self.clips, *self.long_videos]


def build_shapesworld(profile: str | Profile = "smoke", seed: int = 0) -> ShapesWorld:
    """The clips, long videos, questions and evaluation items of a profile (no files)."""
    profile = _profile(profile)
    train = make_clips(seed, profile.clips_per_kind, profile.num_frames, "train")
    held_out = make_clips(seed, profile.eval_clips_per_kind, profile.num_frames, "eval")
    n_test = max(1, profile.long_videos // 4) if profile.long_videos else 0
    long_videos = (make_long_videos(seed, profile.long_videos - n_test, "train")
                   + make_long_videos(seed, n_test, "test"))
    items = {name: evaluation_split(name, seed, clips=held_out) for name in EVAL_SPLITS}
    return ShapesWorld(seed, profile, train + held_out, long_videos,
                       make_questions(train + held_out, long_videos, seed), items)


def write_shapesworld(out_dir: str | Path, profile: str | Profile = "smoke", seed: int = 0,
                      progress: bool = True, overwrite: bool = False, lossless: bool = False) -> dict:
    """Render and write ShapesWorld for ``profile`` under ``out_dir``; returns the manifest plus
    ``written`` / ``skipped`` file counts. See the module docstring for the layout."""
    out, world = Path(out_dir), build_shapesworld(profile, seed)
    config = {**_config(world), "lossless": lossless}
    options = {"crf": "0"} if lossless else None
    _claim(out, config, overwrite)
    written = skipped = 0
    for video in tqdm(world.videos, desc="ShapesWorld videos", unit="video", disable=not progress):
        path = out / VIDEO_DIR / f"{_video_id(video)}.mp4"
        if path.exists() and not overwrite:
            skipped += 1
            continue
        write_video(path, video.frames(world.profile.frame_size), fps=video.fps, options=options)
        written += 1
    layouts = {name: _LAYOUT_WRITERS[name](world) for name in LAYOUTS}
    truth = _ground_truth(world)
    for files in [*layouts.values(), truth]:
        for relative, text in files.items():
            done = _write_text(out / relative, text, overwrite)
            written, skipped = written + done, skipped + (not done)
    manifest = _manifest(world, config, layouts, truth)
    _write_text(out / "manifest.json", json.dumps(manifest, indent=1), overwrite=True)
    return {**manifest, "written": written, "skipped": skipped}


# --------------------------------------------------------------------------------------------
# Bookkeeping
# --------------------------------------------------------------------------------------------

def _profile(profile: str | Profile) -> Profile:
    return profile if isinstance(profile, Profile) else get_profile(profile)


def _config(world: ShapesWorld) -> dict:
    p = world.profile
    return {"seed": world.seed, "profile": p.name, "num_frames": p.num_frames,
            "clips_per_kind": p.clips_per_kind, "eval_clips_per_kind": p.eval_clips_per_kind,
            "long_videos": p.long_videos, "frame_size": p.frame_size, "fps": FPS}


def _claim(out: Path, config: dict, overwrite: bool) -> None:
    """Mark ``out`` as holding this config (refusing one made with another, unless overwriting)."""
    manifest = out / "manifest.json"
    if manifest.exists() and not overwrite:
        try:
            previous = json.loads(manifest.read_text()).get("config")
        except (json.JSONDecodeError, AttributeError):
            previous = None
        if previous != config:
            raise ValueError(f"{out} holds ShapesWorld generated with {previous}, not {config}; "
                             "choose another folder or pass overwrite=True")
    _write_text(manifest, json.dumps({"dataset": "ShapesWorld", "complete": False, "config": config},
                                     indent=1), overwrite=True)


def _write_text(path: Path, text: str, overwrite: bool) -> bool:
    """Write atomically; False (and nothing written) if the file exists and not ``overwrite``."""
    if path.exists() and not overwrite:
        return False
    atomic_write(path, lambda temp: Path(temp).write_text(text, encoding="utf-8"))
    return True


def _manifest(world: ShapesWorld, config: dict, layouts: dict[str, dict], truth: dict) -> dict:
    clips, videos = world.clips, world.long_videos
    return {
        "dataset": "ShapesWorld", "complete": True, "config": config, "video_dir": VIDEO_DIR,
        "counts": {
            "videos": len(world.videos),
            "clips": {s: sum(c.split[0] == s for c in clips) for s in ("train", "eval")},
            "long_videos": {s: sum(v.split == s for v in videos) for s in ("train", "test")},
            "grounded_events": sum(len(v.events) for v in videos),
            "questions": len(world.questions),
            "eval_splits": {name: len(items) for name, items in world.eval_items.items()},
        },
        "layouts": {name: {"format": name, "files": sorted(files)} for name, files in layouts.items()},
        "ground_truth": sorted(truth),
        "profile": asdict(world.profile),
    }


def _video_id(video: Clip | LongVideo) -> str:
    return video.clip_id if isinstance(video, Clip) else video.video_id


def _csv_text(header: list[str], rows: list[list]) -> str:
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(header)
    writer.writerows(rows)
    return buffer.getvalue()


def _jsonl(entries: list[dict]) -> str:
    return "".join(json.dumps(e) + "\n" for e in entries)


def _seconds(value: float) -> str:
    """Seconds as Charades-STA writes them: at least one decimal, no float noise."""
    text = f"{value:.3f}".rstrip("0")
    return text + "0" if text.endswith(".") else text


def _split_of(clip: Clip) -> str:
    return clip.split[0]


# --------------------------------------------------------------------------------------------
# Layouts: each returns {relative path: file text}
# --------------------------------------------------------------------------------------------

def _msrvtt(world: ShapesWorld) -> dict[str, str]:
    info = {"year": "2025", "version": "1.0", "contributor": "I2V Workbench",
            "description": "ShapesWorld clips in the MSR-VTT layout (workbench.data.shapes.export)",
            "data_created": f"seed {world.seed}, profile {world.profile.name}"}
    videos, sentences = [], []
    for i, clip in enumerate(world.clips):
        videos.append({"category": EVENT_KINDS.index(clip.event),
                       "url": f"shapesworld://seed{world.seed}/{clip.clip_id}",
                       "video_id": clip.clip_id, "start time": 0.0, "end time": clip.duration,
                       "split": "train" if _split_of(clip) == "train" else "test", "id": i})
        sentences += [{"caption": text, "video_id": clip.clip_id, "sen_id": len(sentences) + k}
                      for k, text in enumerate(clip.captions())]
    train = [[c.clip_id] for c in world.clips if _split_of(c) == "train"]
    test = [[f"ret{i}", f"msr{i}", c.clip_id, c.caption]
            for i, c in enumerate(c for c in world.clips if _split_of(c) == "eval")]
    data = {"info": info, "videos": videos, "sentences": sentences}
    return {"msrvtt/MSRVTT_data.json": json.dumps(data),
            "msrvtt/MSRVTT_train.9k.csv": _csv_text(["video_id"], train),
            "msrvtt/MSRVTT_JSFUSION_test.csv": _csv_text(["key", "vid_key", "video_id", "sentence"], test)}


def _kinetics(world: ShapesWorld) -> dict[str, str]:
    header = ["label", "youtube_id", "time_start", "time_end", "split"]
    files = {}
    for split, name in (("train", "train"), ("eval", "validate")):
        rows = [[c.action, c.clip_id, 0, max(1, math.ceil(c.duration)), name]
                for c in world.clips if _split_of(c) == split and c.action]
        files[f"kinetics/{name}.csv"] = _csv_text(header, rows)
    return files


def _long(world: ShapesWorld, split: str) -> list[LongVideo]:
    return [v for v in world.long_videos if v.split == split]


def _charades_sta(world: ShapesWorld) -> dict[str, str]:
    return {f"charades_sta/charades_sta_{split}.txt": "".join(
        f"{v.video_id} {_seconds(e.start)} {_seconds(e.end)}##{e.query}\n"
        for v in _long(world, split) for e in v.events) for split in ("train", "test")}


def _qvhighlights(world: ShapesWorld) -> dict[str, str]:
    files, qid = {}, 0
    for split, name in (("train", "train"), ("test", "val")):
        entries = []
        for video in _long(world, split):
            for k, event in enumerate(video.events):
                saliency = video.saliency(k)
                entries.append({"qid": qid, "query": event.query, "duration": video.duration,
                                "vid": video.video_id, "relevant_windows": [[event.start, event.end]],
                                "relevant_clip_ids": [c for c, _ in saliency],
                                "saliency_scores": [[s] * 3 for _, s in saliency]})
                qid += 1
        files[f"qvhighlights/highlight_{name}_release.jsonl"] = _jsonl(entries)
    return files


def _nextqa(world: ShapesWorld) -> dict[str, str]:
    frames = {_video_id(v): v.num_frames for v in world.videos}
    in_train = {c.clip_id for c in world.clips if _split_of(c) == "train"}
    in_train |= {v.video_id for v in _long(world, "train")}
    header = ["video", "frame_count", "width", "height", "question", "answer", "qid", "type",
              "a0", "a1", "a2", "a3", "a4"]
    size = world.profile.frame_size
    files = {}
    for name, keep in (("train", True), ("val", False)):
        rows = [[q.video_id, frames[q.video_id], size, size, q.question, q.answer, q.qid,
                 q.nextqa_type, *q.choices] for q in world.questions if (q.video_id in in_train) == keep]
        files[f"nextqa/{name}.csv"] = _csv_text(header, rows)
    return files


def tube_event(video: LongVideo) -> int:
    """The event a long video's HC-STVG entry grounds: its first move, else its first event."""
    moves = [i for i, e in enumerate(video.events) if e.kind.startswith("move")]
    return moves[0] if moves else 0


def _hcstvg(world: ShapesWorld) -> dict[str, str]:
    size, files = world.profile.frame_size, {}
    for split in ("train", "test"):
        entries = {}
        for video in _long(world, split):
            k = tube_event(video)
            event = video.events[k]
            boxes = [_xywh(box) for box in video.tube(k, size).values()]
            entries[f"{video.video_id}.mp4"] = {
                "bbox": boxes, "st_time": event.start, "ed_time": event.end,
                "img_num": video.num_frames, "caption": event.query, "width": size,
                "height": size, "st_frame": event.start_frame + 1}
        files[f"hcstvg/{split}.json"] = json.dumps(entries)
    return files


def _xywh(box: tuple[float, float, float, float]) -> list[int]:
    x1, y1, x2, y2 = (round(v) for v in box)
    return [x1, y1, x2 - x1, y2 - y1]


def _ground_truth(world: ShapesWorld) -> dict[str, str]:
    size = world.profile.frame_size
    splits = {name: [{"video_id": item.clip.clip_id, "candidates": list(item.candidates),
                      "answer": item.answer} for item in items]
              for name, items in world.eval_items.items()}
    return {"shapesworld/clips.jsonl": _jsonl([c.annotation(size) for c in world.clips]),
            "shapesworld/long_videos.jsonl": _jsonl([v.annotation(size) for v in world.long_videos]),
            "shapesworld/eval_splits.json": json.dumps(splits, indent=1)}


_LAYOUT_WRITERS = {"msrvtt": _msrvtt, "kinetics": _kinetics, "charades_sta": _charades_sta,
                   "qvhighlights": _qvhighlights, "nextqa": _nextqa, "hcstvg": _hcstvg}
