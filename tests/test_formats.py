"""Dataset-layout readers (workbench.data.formats): on ShapesWorld's export, checked against the
generator's ground truth, and on small hand-written files in each real dataset's schema."""
from pathlib import Path

import pytest

from workbench.data.formats import FORMATS, FormatError, VideoRecord, read_dataset
from workbench.data.shapes.export import build_shapesworld, tube_event, write_shapesworld
from workbench.data.shapes.questions import NEXTQA_TYPES

FIXTURES = Path(__file__).parent / "fixtures" / "formats"


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    out = tmp_path_factory.mktemp("shapesworld")
    manifest = write_shapesworld(out, "smoke", seed=0, progress=False)
    return out, manifest, build_shapesworld("smoke", seed=0)


def _read(exported, layout: str, name: str) -> list[VideoRecord]:
    out, manifest, _ = exported
    (file,) = [f for f in manifest["layouts"][layout]["files"] if f.endswith(name)]
    return read_dataset(layout, out / file, out / manifest["video_dir"])


# --------------------------------------------------------------------------------------------
# ShapesWorld written in every layout, read back
# --------------------------------------------------------------------------------------------

def test_every_layout_of_the_export_reads_back(exported):
    out, manifest, _ = exported
    assert set(manifest["layouts"]) == set(FORMATS)
    for layout, entry in manifest["layouts"].items():
        for file in entry["files"]:
            records = read_dataset(layout, out / file, out / "videos")
            assert records, file
            assert all(r.path.is_file() for r in records), file


def test_msrvtt_records_hold_every_caption(exported):
    world = exported[2]
    records = {r.video_id: r for r in _read(exported, "msrvtt", "MSRVTT_data.json")}
    assert len(records) == len(world.clips)
    for clip in world.clips:
        record = records[clip.clip_id]
        assert record.captions == clip.captions()
        assert record.split == ("train" if clip.split[0] == "train" else "test")
        assert record.duration == pytest.approx(clip.duration)
    test_rows = _read(exported, "msrvtt", "MSRVTT_JSFUSION_test.csv")
    assert {(r.video_id, r.captions[0]) for r in test_rows} == \
        {(c.clip_id, c.caption) for c in world.clips if c.split[0] == "eval"}
    train_rows = _read(exported, "msrvtt", "MSRVTT_train.9k.csv")
    assert all(r.captions == records[r.video_id].captions for r in train_rows)


def test_kinetics_labels_are_the_action_classes(exported):
    world = exported[2]
    actions = {c.clip_id: c.action for c in world.clips}
    records = _read(exported, "kinetics", "train.csv") + _read(exported, "kinetics", "validate.csv")
    assert len(records) == sum(a is not None for a in actions.values())
    assert all(r.label == actions[r.video_id] for r in records)


def _long_events(world):
    return {(v.video_id, e.query): e for v in world.long_videos for e in v.events}


def test_charades_sta_windows_match_the_events(exported):
    events = _long_events(exported[2])
    records = _read(exported, "charades_sta", "train.txt") + _read(exported, "charades_sta", "test.txt")
    assert len(records) == len(events)
    for record in records:
        event = events[(record.video_id, record.query)]
        assert record.windows == [pytest.approx((event.start, event.end), abs=1e-3)]


def test_qvhighlights_windows_and_saliency_match(exported):
    world = exported[2]
    videos = {v.video_id: v for v in world.long_videos}
    records = (_read(exported, "qvhighlights", "train_release.jsonl")
               + _read(exported, "qvhighlights", "val_release.jsonl"))
    assert len({r.extra["qid"] for r in records}) == len(records) == len(_long_events(world))
    for record in records:
        video = videos[record.video_id]
        k = [e.query for e in video.events].index(record.query)
        assert record.windows == [(video.events[k].start, video.events[k].end)]
        assert record.duration == video.duration
        saliency = video.saliency(k)
        assert record.extra["relevant_clip_ids"] == [c for c, _ in saliency]
        assert record.extra["saliency_scores"] == [[s] * 3 for _, s in saliency]


def test_nextqa_questions_match(exported):
    world = exported[2]
    records = _read(exported, "nextqa", "train.csv") + _read(exported, "nextqa", "val.csv")
    assert len(records) == len(world.questions)
    expected = {(q.video_id, q.qid): q for q in world.questions}
    for record in records:
        q = expected[(record.video_id, record.extra["qid"])]
        assert (record.question, record.choices, record.answer) == (q.question, list(q.choices), q.answer)
        assert record.qtype == NEXTQA_TYPES[q.qtype]


def test_hcstvg_tubes_match_the_boxes(exported):
    world = exported[2]
    size = world.profile.frame_size
    videos = {v.video_id: v for v in world.long_videos}
    records = _read(exported, "hcstvg", "train.json") + _read(exported, "hcstvg", "test.json")
    assert len(records) == len(videos)
    for record in records:
        video = videos[record.video_id]
        k = tube_event(video)
        truth = video.tube(k, size)
        assert record.query == video.events[k].query
        assert sorted(record.tube) == sorted(truth)
        for t, box in record.tube.items():
            assert box == pytest.approx(truth[t], abs=1.0)  # the file stores whole pixels


def test_a_record_path_decodes(exported):
    from workbench.data.video import read_video

    record = _read(exported, "charades_sta", "test.txt")[0]
    frames = read_video(record.path, num_frames=4)
    assert frames.shape[0] == 4 and frames.shape[1] == 3


# --------------------------------------------------------------------------------------------
# Hand-written files in each real dataset's schema
# --------------------------------------------------------------------------------------------

def test_msrvtt_fixtures():
    videos = FIXTURES / "msrvtt"
    records = {r.video_id: r for r in read_dataset("msrvtt", videos / "MSRVTT_data.json", "/videos")}
    assert records["video0"].captions == ["a cartoon car drives down a road",
                                          "a red car is shown in an animation"]
    assert records["video0"].split == "train" and records["video9770"].split == "test"
    assert records["video0"].duration == pytest.approx(149.44 - 137.72)
    assert records["video0"].extra["category"] == 9
    assert records["video0"].path == Path("/videos/video0.mp4")
    rows = read_dataset("msrvtt", videos / "MSRVTT_JSFUSION_test.csv", "/videos")
    assert [(r.video_id, r.captions, r.extra["key"]) for r in rows] == [
        ("video9770", ["a person is connecting something to system"], "ret0"),
        ("video7606", ["a man talks, then he points at a map"], "ret1")]
    train = read_dataset("msrvtt", videos / "MSRVTT_train.9k.csv", "/videos")
    assert [(r.video_id, len(r.captions)) for r in train] == [("video0", 2), ("video1", 1)]


def test_kinetics_fixtures(tmp_path):
    (tmp_path / "air drumming").mkdir()
    (tmp_path / "air drumming" / "_dbcJuKJQNs_000040_000050.mp4").touch()
    records = read_dataset("kinetics", FIXTURES / "kinetics700_train.csv", tmp_path)
    assert [(r.label, r.video_id, r.split, r.extra["is_cc"]) for r in records] == [
        ("abseiling", "-3B32lodo2M", "train", 0), ("air drumming", "_dbcJuKJQNs", "train", 1)]
    assert records[1].path == tmp_path / "air drumming" / "_dbcJuKJQNs_000040_000050.mp4"
    validate = read_dataset("kinetics", FIXTURES / "kinetics400_validate.csv", tmp_path)
    assert [r.label for r in validate] == ["testifying", "washing feet", "air drumming"]
    assert validate[0].duration == 10 and validate[0].extra == {"time_start": 84, "time_end": 94}
    test = read_dataset("kinetics", FIXTURES / "kinetics400_test.csv", tmp_path)
    assert test[0].label is None and test[0].split == "test"


def test_charades_sta_fixture():
    records = read_dataset("charades_sta", FIXTURES / "charades_sta_test.txt", "/charades")
    assert [(r.video_id, r.windows, r.query) for r in records] == [
        ("AO8RW", [(0.0, 6.9)], "a person is putting a book on a shelf."),
        ("AO8RW", [(10.2, 16.5)], "person opens the door."),
        ("Y6R7T", [(1.3, 8.75)], "the person takes a cup from the table.")]
    assert records[0].split == "test" and records[0].path == Path("/charades/AO8RW.mp4")


def test_qvhighlights_fixtures():
    records = read_dataset("qvhighlights", FIXTURES / "highlight_val_release.jsonl", "/qvh")
    assert records[0].video_id == "bP5KfdFJzC4_660.0_810.0" and records[0].duration == 126
    assert records[0].path == Path("/qvh/bP5KfdFJzC4_660.0_810.0.mp4")
    assert records[1].windows == [(26, 36), (38, 42)] and records[1].extra["qid"] == 7803
    assert records[1].extra["saliency_scores"][0] == [4, 4, 2]
    test = read_dataset("qvhighlights", FIXTURES / "highlight_test_release.jsonl", "/qvh")
    assert test[0].windows == [] and test[0].split == "test"


def test_nextqa_fixture(tmp_path):
    records = read_dataset("nextqa", FIXTURES / "nextqa_val.csv", tmp_path)
    first = records[0]
    assert (first.video_id, first.question, first.answer, first.qtype) == \
        ("4010069381", "how do the two man play the instrument", 0, "CH")
    assert first.choices[2] == "strum the string" and first.extra == {
        "frame_count": 369, "width": 640, "height": 480, "qid": 6}
    assert records[1].choices[records[1].answer] == "throws it to the dog"


def test_nextqa_finds_videos_through_its_map(tmp_path):
    (tmp_path / "0000").mkdir()
    (tmp_path / "0000" / "2440175990.mp4").touch()
    csv = tmp_path / "val.csv"
    csv.write_text((FIXTURES / "nextqa_val.csv").read_text())
    (tmp_path / "map_vid_vidorID.json").write_text('{"4010069381": "0000/2440175990"}')
    assert read_dataset("nextqa", csv, tmp_path)[0].path == tmp_path / "0000" / "2440175990.mp4"


def test_hcstvg_v1_and_v2_fixtures():
    v1 = read_dataset("hcstvg", FIXTURES / "hcstvg_v1_test.json", "/hc")[0]
    assert v1.video_id == "55_vfjywN5CN0Y" and v1.path == Path("/hc/55_vfjywN5CN0Y.mp4")
    assert v1.tube[156] == (194, 0, 434, 359) and sorted(v1.tube) == [156, 157, 158]
    assert v1.extra["width"] == 480 and v1.windows[0][0] == pytest.approx(6.5019, abs=1e-4)
    v2 = read_dataset("hcstvg", FIXTURES / "hcstvg_v2_val.json", "/hc")[0]
    assert v2.query.startswith("The woman in white") and v2.split == "val"
    assert (v2.extra["height"], v2.extra["width"]) == (360, 640) and v2.tube[61] == (12, 21, 113, 220)


# --------------------------------------------------------------------------------------------
# Bad files
# --------------------------------------------------------------------------------------------

@pytest.mark.parametrize("layout, name, text, line, reason", [
    ("charades_sta", "sta.txt", "AO8RW 0.0 6.9##ok\nAO8RW 1.0 2.0 no separator\n", 2, "video_id start end"),
    ("charades_sta", "sta.txt", "AO8RW 5.0 1.0##backwards\n", 1, "ends before it starts"),
    ("qvhighlights", "q.jsonl", '{"qid": 1, "query": "q", "vid": "v", "duration": 10}\n{"qid": 2,\n', 2,
     "invalid JSON"),
    ("qvhighlights", "q.jsonl", '{"qid": 1, "query": "q", "vid": "v"}\n', 1, "duration"),
    ("nextqa", "n.csv", "video,question,answer,qid,type,a0,a1,a2,a3,a4\n1,q,7,0,CH,a,b,c,d,e\n", 2,
     "not an index"),
    ("kinetics", "k.csv", "label,youtube_id,time_start\nx,y,1\n", 1, "time_end"),
    ("kinetics", "k.csv", "label,youtube_id,time_start,time_end,split\nx,y,ten,20,train\n", 2, "number"),
    ("msrvtt", "m.json", '{"videos": [],\n "sentences": [\n  {"caption": "a", "video_id": "v"},\n'
     '  {"video_id": "v"}\n]}', 4, "caption"),
    ("hcstvg", "h.json", '{\n "a.mp4": {"bbox": [], "st_frame": 1, "st_time": 0, "ed_time": 1,'
     ' "caption": "x"},\n "b.mp4": {"bbox": [[1, 2, 3]], "st_frame": 1, "st_time": 0, "ed_time": 1,'
     ' "caption": "x"}\n}', 3, "x, y, w, h"),
])
def test_bad_files_name_the_file_and_line(tmp_path, layout, name, text, line, reason):
    path = tmp_path / name
    path.write_text(text)
    with pytest.raises(FormatError, match=reason) as caught:
        read_dataset(layout, path, tmp_path)
    assert caught.value.line == line and str(caught.value).startswith(f"{path}:{line}: ")


def test_unknown_format_and_missing_file(tmp_path):
    with pytest.raises(ValueError, match="msrvtt"):
        read_dataset("youcook", tmp_path / "a.json", tmp_path)
    with pytest.raises(FileNotFoundError, match="a.json"):
        read_dataset("msrvtt", tmp_path / "a.json", tmp_path)
