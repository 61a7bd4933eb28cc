"""Readers for the annotation layouts of real video-language datasets, into one record type.

Each reader takes the dataset's own annotation file, unchanged, and the folder of its videos,
and returns a list of :class:`VideoRecord` — one record per annotated item (a video, a caption
row, a query, a question):

=============  =======================================================================  ==========
format         annotation file (as released)                                            one record
=============  =======================================================================  ==========
msrvtt         ``MSRVTT_data.json`` ({"info", "videos", "sentences"}; Xu et al., CVPR    per video
               2016), or CLIP4Clip's ``MSRVTT_train.9k.csv`` (``video_id``) /            / per row
               ``MSRVTT_JSFUSION_test.csv`` (``key,vid_key,video_id,sentence``)
kinetics       ``label,youtube_id,time_start,time_end,split[,is_cc]`` CSV (Kinetics-400/  per clip
               600/700; the test CSV has no ``label``)
charades_sta   ``vid start end##sentence`` lines (Gao et al., TALL, ICCV 2017)           per query
qvhighlights   JSON lines ``{qid, query, duration, vid, relevant_windows,                per query
               relevant_clip_ids, saliency_scores}`` (Lei et al., NeurIPS 2021)
nextqa         ``video,frame_count,width,height,question,answer,qid,type,a0..a4`` CSV     per question
               (Xiao et al., CVPR 2021; an optional ``map_vid_vidorID.json`` beside it)
hcstvg         JSON ``{"<video>.mp4": {bbox [[x,y,w,h]...], st_frame (1-based), st_time,  per video
               ed_time, img_num, caption|English, width,height|img_size [h,w]}}`` (v1/v2)
=============  =======================================================================  ==========

``read_dataset(name, annotation_file, video_dir)`` dispatches through :data:`FORMATS`, a registry
filled by ``@register_format``. A malformed file raises :class:`FormatError`, whose message names
the file and the line (for JSON, the line of the offending entry) and says what is wrong.
Video paths are resolved against ``video_dir`` (the usual names first, then a search of the
tree); a record whose video is missing still gets the expected path, so a batch job can skip
and report it instead of dying.
"""
from __future__ import annotations

import csv
import json
import math
import re
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterator

VIDEO_SUFFIXES = (".mp4", ".webm", ".mkv", ".avi", ".mov")
Box = tuple[float, float, float, float]


@dataclass
class VideoRecord:
    """One annotated item of any dataset; fields a format does not annotate stay empty."""

    video_id: str
    path: Path                                            # the video file (may be missing on disk)
    split: str | None = None                              # as the dataset names it ("train", "val", ...)
    captions: list[str] = field(default_factory=list)     # retrieval / captioning sentences
    label: str | None = None                              # action class (recognition)
    windows: list[tuple[float, float]] = field(default_factory=list)  # [start, end] seconds (grounding)
    query: str | None = None                              # grounding sentence
    tube: dict[int, Box] = field(default_factory=dict)    # 0-based frame -> [x1, y1, x2, y2] pixels
    question: str | None = None                           # QA
    choices: list[str] = field(default_factory=list)
    answer: int | None = None                             # index into choices
    qtype: str | None = None                              # question type, the dataset's code
    duration: float | None = None                         # seconds, where the annotation says
    extra: dict = field(default_factory=dict)             # every other field the file carries


class FormatError(ValueError):
    """A malformed annotation file; the message names the file, the line and the problem."""

    def __init__(self, path: str | Path, line: int | None, reason: str):
        self.path, self.line, self.reason = str(path), line, reason
        where = f"{path}:{line}" if line else str(path)
        super().__init__(f"{where}: {reason}")

    def __reduce__(self):
        return type(self), (self.path, self.line, self.reason)


Reader = Callable[[Path, Path], list[VideoRecord]]
FORMATS: dict[str, Reader] = {}


def register_format(name: str) -> Callable[[Reader], Reader]:
    """Register a reader ``(annotation_file, video_dir) -> list[VideoRecord]`` under ``name``."""
    def decorate(reader: Reader) -> Reader:
        FORMATS[name] = reader
        return reader
    return decorate


def list_formats() -> list[str]:
    return sorted(FORMATS)


def read_dataset(format_name: str, annotation_file: str | Path, video_dir: str | Path) -> list[VideoRecord]:
    """Read ``annotation_file`` in the layout ``format_name`` (see :data:`FORMATS`)."""
    if format_name not in FORMATS:
        raise ValueError(f"unknown dataset format {format_name!r}; choose one of {list_formats()}")
    path = Path(annotation_file)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: annotation file not found")
    return FORMATS[format_name](path, Path(video_dir))


# --------------------------------------------------------------------------------------------
# Shared parsing helpers
# --------------------------------------------------------------------------------------------

class _VideoFinder:
    """Resolves video names under a folder: the usual paths first, then a search of the tree."""

    def __init__(self, root: Path):
        self.root = root
        self._by_stem: dict[str, Path] | None = None

    def find(self, *names: str) -> Path:
        for name in names:
            for candidate in self._candidates(name):
                if candidate.is_file():
                    return candidate
        for name in names:
            found = self._index().get(_stem(Path(name).name))
            if found:
                return found
        return next(iter(self._candidates(names[0])))

    def _candidates(self, name: str) -> list[Path]:
        if Path(name).suffix.lower() in VIDEO_SUFFIXES:
            return [self.root / name]
        return [self.root / f"{name}{suffix}" for suffix in VIDEO_SUFFIXES]

    def _index(self) -> dict[str, Path]:
        if self._by_stem is None:
            files = self.root.rglob("*") if self.root.is_dir() else []
            self._by_stem = {_stem(p.name): p for p in sorted(files)
                             if p.suffix.lower() in VIDEO_SUFFIXES and p.is_file()}
        return self._by_stem


def _stem(name: str) -> str:
    suffix = Path(name).suffix
    return name[: -len(suffix)] if suffix.lower() in VIDEO_SUFFIXES else name


def _split_from_name(path: Path) -> str | None:
    """"train" / "val" / "validate" / "test" when the file name says so."""
    for token in re.split(r"[^a-z]+", path.stem.lower()):
        if token in ("train", "val", "validate", "validation", "test"):
            return token
    return None


def _read_text(path: Path) -> str:
    try:
        return path.read_text(encoding="utf-8")
    except UnicodeDecodeError as error:
        raise FormatError(path, None, f"not UTF-8 text ({error.reason} at byte {error.start})") from None


def _text_lines(path: Path) -> Iterator[tuple[int, str]]:
    """``(line number, text)`` of every non-blank line."""
    for line, text in enumerate(_read_text(path).splitlines(), start=1):
        if text.strip():
            yield line, text


def _load_json(path: Path) -> tuple[object, str]:
    text = _read_text(path)
    try:
        return json.loads(text), text
    except json.JSONDecodeError as error:
        raise FormatError(path, error.lineno, f"invalid JSON: {error.msg}") from None


def _line_of(text: str, needle: str) -> int | None:
    """1-based line of the first occurrence of ``needle`` in ``text`` (None if absent)."""
    at = text.find(needle)
    return text.count("\n", 0, at) + 1 if at >= 0 else None


def _csv_rows(path: Path, required: tuple[str, ...]) -> Iterator[tuple[int, dict[str, str]]]:
    """``(line, row)`` for every data row; the header must hold ``required``."""
    with path.open(newline="", encoding="utf-8") as handle:
        reader = csv.DictReader(handle)
        try:
            header = reader.fieldnames or []
            missing = [c for c in required if c not in header]
            if missing:
                raise FormatError(path, 1, f"header {header} lacks column(s) {missing}")
            for row in reader:
                if None in row or any(row[c] is None for c in header):
                    raise FormatError(path, reader.line_num,
                                      f"expected the {len(header)} fields of the header, got another count")
                yield reader.line_num, row
        except UnicodeDecodeError as error:
            raise FormatError(path, None, f"not UTF-8 text ({error.reason} at byte {error.start})") from None
        except csv.Error as error:
            raise FormatError(path, reader.line_num, f"not valid CSV: {error}") from None


def _number(value, path: Path, line: int | None, name: str, kind: type = float) -> float | int:
    try:
        number = float(value)
    except (TypeError, ValueError):
        number = math.nan
    if not math.isfinite(number):
        raise FormatError(path, line, f"{name} must be a number, got {value!r}")
    if kind is int:
        if not number.is_integer():
            raise FormatError(path, line, f"{name} must be an integer, got {value!r}")
        return int(number)
    return number


def _item_line(text: str, key: str, index: int) -> int | None:
    """Line where item ``index`` of the top-level array ``key`` starts (None if not found)."""
    decoder, at = json.JSONDecoder(), text.find(json.dumps(key))
    try:
        at = text.index("[", at) + 1
        for _ in range(index + 1):
            while text[at] in " \t\r\n,":
                at += 1
            start = at
            _, at = decoder.raw_decode(text, at)
    except (ValueError, IndexError):
        return None
    return text.count("\n", 0, start) + 1


@contextmanager
def _entry(path: Path, locate: Callable[[], int | None]) -> Iterator[None]:
    """Give errors raised while parsing one JSON entry the entry's line (found only on error)."""
    try:
        yield
    except FormatError as error:
        if error.line is not None:
            raise
        raise FormatError(path, locate(), error.reason) from None


def _window(value, path: Path, line: int | None, name: str) -> tuple[float, float]:
    if not isinstance(value, (list, tuple)) or len(value) != 2:
        raise FormatError(path, line, f"{name} must be a [start, end] pair, got {value!r}")
    start, end = (_number(v, path, line, name) for v in value)
    if end < start:
        raise FormatError(path, line, f"{name} ends before it starts: {value!r}")
    return start, end


def _require(entry: dict, keys: tuple[str, ...], path: Path, line: int | None) -> None:
    if not isinstance(entry, dict):
        raise FormatError(path, line, f"expected a JSON object, got {type(entry).__name__}")
    missing = [k for k in keys if k not in entry]
    if missing:
        raise FormatError(path, line, f"missing key(s) {missing}")


# --------------------------------------------------------------------------------------------
# MSR-VTT
# --------------------------------------------------------------------------------------------

@register_format("msrvtt")
def read_msrvtt(annotation_file: Path, video_dir: Path) -> list[VideoRecord]:
    """MSR-VTT: ``MSRVTT_data.json`` (one record per video, all its captions), CLIP4Clip's
    ``MSRVTT_JSFUSION_test.csv`` (one record per row) or ``MSRVTT_train.9k.csv`` (one record per
    video, captions from the ``MSRVTT_data.json`` beside it when there is one)."""
    path, finder = Path(annotation_file), _VideoFinder(Path(video_dir))
    if path.suffix.lower() == ".csv":
        return _msrvtt_csv(path, finder)
    data, text = _load_json(path)
    _require(data, ("sentences",), path, 1)
    for key in ("sentences", "videos"):
        if not isinstance(data.get(key, []), list):
            raise FormatError(path, _line_of(text, json.dumps(key)), f"{key!r} must be a list")
    captions: dict[str, list[str]] = {}
    for i, sentence in enumerate(data["sentences"]):
        with _entry(path, lambda i=i: _item_line(text, "sentences", i)):
            _require(sentence, ("video_id", "caption"), path, None)
            captions.setdefault(str(sentence["video_id"]), []).append(str(sentence["caption"]))
    records = []
    for i, video in enumerate(data.get("videos", [])):
        with _entry(path, lambda i=i: _item_line(text, "videos", i)):
            records.append(_msrvtt_video(video, path, finder, captions))
    records += [VideoRecord(vid, finder.find(vid), captions=texts) for vid, texts in captions.items()]
    return records


def _msrvtt_video(video: dict, path: Path, finder: _VideoFinder,
                  captions: dict[str, list[str]]) -> VideoRecord:
    _require(video, ("video_id",), path, None)
    vid = str(video["video_id"])
    start = _number(video.get("start time", 0.0), path, None, "start time")
    end = video.get("end time")
    duration = None if end is None else _number(end, path, None, "end time") - start
    return VideoRecord(vid, finder.find(vid), video.get("split"), captions.pop(vid, []),
                       duration=duration,
                       extra={k: v for k, v in video.items() if k not in ("video_id", "split")})


def _msrvtt_csv(path: Path, finder: _VideoFinder) -> list[VideoRecord]:
    records = []
    with path.open(newline="", encoding="utf-8") as handle:
        header = next(csv.reader(handle), [])
    if "sentence" in header:
        split = _split_from_name(path) or "test"
        for _, row in _csv_rows(path, ("video_id", "sentence")):
            extra = {k: v for k, v in row.items() if k not in ("video_id", "sentence")}
            records.append(VideoRecord(row["video_id"], finder.find(row["video_id"]), split,
                                       [row["sentence"]], extra=extra))
        return records
    sibling = path.with_name("MSRVTT_data.json")
    known = read_msrvtt(sibling, finder.root) if sibling.is_file() else []
    captions = {r.video_id: r.captions for r in known}
    split = _split_from_name(path) or "train"
    for _, row in _csv_rows(path, ("video_id",)):
        vid = row["video_id"]
        records.append(VideoRecord(vid, finder.find(vid), split, list(captions.get(vid, []))))
    return records


# --------------------------------------------------------------------------------------------
# Kinetics
# --------------------------------------------------------------------------------------------

@register_format("kinetics")
def read_kinetics(annotation_file: Path, video_dir: Path) -> list[VideoRecord]:
    """Kinetics CSV; videos as ``[<label>/]<youtube_id>_<start:06d>_<end:06d>.mp4`` (the download
    scripts' names) or ``<youtube_id>.mp4``."""
    path, finder = Path(annotation_file), _VideoFinder(Path(video_dir))
    records = []
    for line, row in _csv_rows(path, ("youtube_id", "time_start", "time_end")):
        start = _number(row["time_start"], path, line, "time_start", int)
        end = _number(row["time_end"], path, line, "time_end", int)
        if end < start:
            raise FormatError(path, line, f"time_end {end} is before time_start {start}")
        vid, label = row["youtube_id"], row.get("label")
        clip = f"{vid}_{start:06d}_{end:06d}"
        names = ([f"{label}/{clip}"] if label else []) + [clip, vid]
        extra = {"time_start": start, "time_end": end}
        if "is_cc" in row:
            extra["is_cc"] = _number(row["is_cc"], path, line, "is_cc", int)
        records.append(VideoRecord(vid, finder.find(*names), row.get("split") or _split_from_name(path),
                                   label=label or None, duration=float(end - start), extra=extra))
    return records


# --------------------------------------------------------------------------------------------
# Charades-STA
# --------------------------------------------------------------------------------------------

@register_format("charades_sta")
def read_charades_sta(annotation_file: Path, video_dir: Path) -> list[VideoRecord]:
    """Charades-STA: ``<video_id> <start> <end>##<sentence>`` per line, times in seconds."""
    return _per_line(Path(annotation_file), Path(video_dir), _charades_sta_line)


def _charades_sta_line(path: Path, line: int, text: str, finder: _VideoFinder,
                       split: str | None) -> VideoRecord:
    head, sep, sentence = text.partition("##")
    fields = head.split()
    if not sep or len(fields) != 3 or not sentence.strip():
        raise FormatError(path, line, f"expected 'video_id start end##sentence', got {text!r}")
    window = _window(fields[1:], path, line, "window")
    return VideoRecord(fields[0], finder.find(fields[0]), split, windows=[window], query=sentence.strip())


def _per_line(path: Path, video_dir: Path, parse) -> list[VideoRecord]:
    """One record per non-blank line: ``parse(path, line, text, finder, split)``."""
    finder, split = _VideoFinder(video_dir), _split_from_name(path)
    return [parse(path, line, text, finder, split) for line, text in _text_lines(path)]


# --------------------------------------------------------------------------------------------
# QVHighlights
# --------------------------------------------------------------------------------------------

@register_format("qvhighlights")
def read_qvhighlights(annotation_file: Path, video_dir: Path) -> list[VideoRecord]:
    """QVHighlights JSON lines; the test release has no windows or scores, and they stay empty."""
    return _per_line(Path(annotation_file), Path(video_dir), _qvhighlights_line)


def _qvhighlights_line(path: Path, line: int, text: str, finder: _VideoFinder,
                       split: str | None) -> VideoRecord:
    try:
        entry = json.loads(text)
    except json.JSONDecodeError as error:
        raise FormatError(path, line, f"invalid JSON: {error.msg}") from None
    _require(entry, ("qid", "query", "vid", "duration"), path, line)
    windows = [_window(w, path, line, "relevant_windows") for w in entry.get("relevant_windows", [])]
    clip_ids = entry.get("relevant_clip_ids", [])
    scores = entry.get("saliency_scores", [])
    if len(scores) != len(clip_ids):
        raise FormatError(path, line, f"{len(clip_ids)} relevant_clip_ids but "
                                      f"{len(scores)} saliency_scores")
    vid = str(entry["vid"])
    return VideoRecord(vid, finder.find(vid), split, windows=windows, query=str(entry["query"]),
                       duration=_number(entry["duration"], path, line, "duration"),
                       extra={"qid": entry["qid"], "relevant_clip_ids": clip_ids,
                              "saliency_scores": scores})


# --------------------------------------------------------------------------------------------
# NExT-QA
# --------------------------------------------------------------------------------------------

NEXTQA_CHOICES = ("a0", "a1", "a2", "a3", "a4")


@register_format("nextqa")
def read_nextqa(annotation_file: Path, video_dir: Path) -> list[VideoRecord]:
    """NExT-QA multiple-choice CSV. Videos are ``<video>.mp4``, or found through
    ``map_vid_vidorID.json`` (video -> ``<folder>/<vidor id>``) next to the CSV or one level up."""
    path, finder = Path(annotation_file), _VideoFinder(Path(video_dir))
    mapping = _nextqa_map(path)
    split, records = _split_from_name(path), []
    for line, row in _csv_rows(path, ("video", "question", "qid", "type") + NEXTQA_CHOICES):
        answer = row.get("answer")
        answer = None if answer in (None, "") else _number(answer, path, line, "answer", int)
        if answer is not None and not 0 <= answer < len(NEXTQA_CHOICES):
            raise FormatError(path, line, f"answer {answer} is not an index into a0..a4")
        vid = row["video"]
        extra = {k: _number(row[k], path, line, k, int) for k in ("frame_count", "width", "height")
                 if row.get(k) not in (None, "")}
        extra["qid"] = _number(row["qid"], path, line, "qid", int)
        names = [mapping[vid]] if vid in mapping else []
        records.append(VideoRecord(vid, finder.find(*names, vid), split, question=row["question"],
                                   choices=[row[c] for c in NEXTQA_CHOICES], answer=answer,
                                   qtype=row["type"], extra=extra))
    return records


def _nextqa_map(path: Path) -> dict[str, str]:
    for folder in (path.parent, path.parent.parent):
        candidate = folder / "map_vid_vidorID.json"
        if candidate.is_file():
            mapping, _ = _load_json(candidate)
            return {str(k): str(v) for k, v in mapping.items()}
    return {}


# --------------------------------------------------------------------------------------------
# HC-STVG
# --------------------------------------------------------------------------------------------

@register_format("hcstvg")
def read_hcstvg(annotation_file: Path, video_dir: Path) -> list[VideoRecord]:
    """HC-STVG v1 or v2 annotations: one record per video, the tube in 0-based frame indices and
    ``[x1, y1, x2, y2]`` pixels (the file stores 1-based ``st_frame`` and ``[x, y, w, h]``)."""
    path, finder = Path(annotation_file), _VideoFinder(Path(video_dir))
    data, text = _load_json(path)
    if not isinstance(data, dict):
        raise FormatError(path, 1, "expected a JSON object mapping video file names to annotations")
    split, records = _split_from_name(path), []
    for name, entry in data.items():
        with _entry(path, lambda name=name: _line_of(text, json.dumps(name))):
            records.append(_hcstvg_video(name, entry, path, finder, split))
    return records


def _hcstvg_video(name: str, entry: dict, path: Path, finder: _VideoFinder,
                  split: str | None) -> VideoRecord:
    _require(entry, ("bbox", "st_frame", "st_time", "ed_time"), path, None)
    query = entry.get("caption", entry.get("English"))
    if query is None:
        raise FormatError(path, None, "missing the sentence: neither 'caption' (v1) nor 'English' (v2)")
    first = _number(entry["st_frame"], path, None, "st_frame", int)
    if first < 1:
        raise FormatError(path, None, f"st_frame counts from 1, got {first}")
    if not isinstance(entry["bbox"], list):
        raise FormatError(path, None, f"bbox must be a list of [x, y, w, h], got {entry['bbox']!r}")
    tube = {first - 1 + i: _xywh_to_xyxy(box, path) for i, box in enumerate(entry["bbox"])}
    window = _window([entry["st_time"], entry["ed_time"]], path, None, "st_time/ed_time")
    return VideoRecord(_stem(name), finder.find(name), split, windows=[window], query=str(query),
                       tube=tube, extra=_hcstvg_size(entry, path))


def _xywh_to_xyxy(box, path: Path) -> Box:
    if not isinstance(box, (list, tuple)) or len(box) != 4:
        raise FormatError(path, None, f"a bbox must be [x, y, w, h], got {box!r}")
    x, y, w, h = (_number(v, path, None, "bbox") for v in box)
    return (x, y, x + w, y + h)


def _hcstvg_size(entry: dict, path: Path) -> dict:
    extra = {"st_frame": entry["st_frame"]}
    if "img_num" in entry:
        extra["img_num"] = _number(entry["img_num"], path, None, "img_num", int)
    if "width" in entry and "height" in entry:
        extra["width"], extra["height"] = entry["width"], entry["height"]
    elif "img_size" in entry:  # v2 stores [height, width]
        extra["height"], extra["width"] = entry["img_size"]
    return extra
