"""ShapesWorld clips, long videos, questions and the on-disk export (workbench.data.shapes)."""
import zlib

import numpy as np
import pytest

from workbench.config import get_profile
from workbench.data.shapes.clips import (ACTION_CLASSES, EVAL_SPLITS, EVENT_KINDS, MOVE_KINDS,
                                         REVERSE_KIND, EventSpec, caption, evaluation_split,
                                         make_clips, reverse_spec)
from workbench.data.shapes.long_videos import make_long_videos
from workbench.data.shapes.questions import NUM_CHOICES, clip_questions, long_video_questions

SIZE = 32  # pixels; enough to test exact reversal and box motion, fast on one core


@pytest.fixture(scope="module")
def clips():
    return make_clips(seed=0, per_kind=2, num_frames=4)


@pytest.fixture(scope="module")
def by_id(clips):
    return {c.clip_id: c for c in clips}


@pytest.fixture(scope="module")
def long_videos():
    return make_long_videos(seed=0, n=6)


def _steps(values):
    return [b - a for a, b in zip(values, values[1:], strict=False)]


def _centre(box):
    return (box[0] + box[2]) / 2, (box[1] + box[3]) / 2


# --------------------------------------------------------------------------------------------
# Clips
# --------------------------------------------------------------------------------------------

def test_same_seed_gives_identical_annotations_and_frames(clips):
    again = make_clips(seed=0, per_kind=2, num_frames=4)
    assert again == clips  # captions, twins, scenes, backgrounds, splits
    for a, b in zip(clips[::7], again[::7], strict=True):
        assert np.array_equal(a.frames(SIZE), b.frames(SIZE))


def test_different_seed_gives_different_clips(clips):
    other = make_clips(seed=1, per_kind=2, num_frames=4)
    assert [c.caption for c in other] != [c.caption for c in clips]
    assert not np.array_equal(other[0].frames(SIZE), clips[0].frames(SIZE))


def test_a_clip_does_not_depend_on_how_many_are_generated(by_id):
    fewer = make_clips(seed=0, per_kind=1, num_frames=4)
    assert all(by_id[c.clip_id] == c for c in fewer)


def test_train_and_eval_clips_are_disjoint(clips):
    held_out = make_clips(seed=0, per_kind=2, num_frames=4, split="eval")
    assert not {c.scenes for c in held_out} & {c.scenes for c in clips}
    assert all(c.split[0] == "eval" for c in held_out) and all(c.split == ("train",) for c in clips)
    assert not {c.clip_id for c in held_out} & {c.clip_id for c in clips}


def test_every_kind_is_generated_with_the_requested_count(clips):
    counts = {kind: sum(c.event == kind for c in clips) for kind in EVENT_KINDS}
    assert all(n >= 2 for n in counts.values()), counts


def test_twins_are_exact_reversals_with_other_captions(clips, by_id):
    for clip in clips:
        if clip.twin_id is None:
            continue
        twin = by_id[clip.twin_id]
        assert twin.twin_id == clip.clip_id
        assert np.array_equal(twin.frames(SIZE), clip.frames(SIZE)[::-1])
        assert twin.caption == clip.twin_caption and twin.twin_caption == clip.caption
        assert twin.caption != clip.caption
        assert twin.event == REVERSE_KIND[clip.event]


def test_every_directional_kind_has_a_twin_and_stays_still_has_none(clips):
    for clip in clips:
        if clip.event == "stay":
            assert clip.twin_id is None and clip.twin_caption is None
        else:
            assert clip.twin_id is not None, clip.clip_id


def test_reversed_captions_swap_the_directional_words():
    red_circle, blue_square = ("red", "circle"), ("blue", "square")
    assert caption(reverse_spec(EventSpec("move_left", (red_circle,)))) == "a red circle moves to the right"
    assert caption(reverse_spec(EventSpec("grow", (red_circle,)))) == "a red circle shrinks"
    assert caption(reverse_spec(EventSpec("appear", (red_circle,)))) == "a red circle disappears"
    assert caption(reverse_spec(EventSpec("spin_clockwise", (blue_square,)))) == \
        "a blue square spins counterclockwise"
    assert caption(reverse_spec(EventSpec("change_colour", (red_circle,), colours=("red", "blue")))) == \
        "a circle turns from blue to red"
    assert caption(reverse_spec(EventSpec("approach", (red_circle, blue_square)))) == \
        "a red circle and a blue square move apart"
    assert caption(reverse_spec(EventSpec("swap", (red_circle, blue_square), direction="left"))) == \
        "a red circle and a blue square swap places, the red circle moving to the right"
    assert reverse_spec(EventSpec("stay", (red_circle,))) is None


def test_reversed_ordered_pair_reverses_and_swaps_its_parts():
    look = ("red", "circle")
    pair = EventSpec("sequence", (look,), parts=(EventSpec("move_left", (look,)), EventSpec("grow", (look,))))
    assert caption(pair) == "first a red circle moves to the left, then it grows"
    assert caption(reverse_spec(pair)) == "first a red circle shrinks, then it moves to the right"
    recolour = EventSpec("sequence", (look,), parts=(
        EventSpec("change_colour", (look,), colours=("red", "blue")),
        EventSpec("grow", (("blue", "circle"),))))
    assert caption(reverse_spec(recolour), template=2) == \
        "a blue circle first becomes smaller, then turns red"


def test_boxes_follow_the_acting_object(clips):
    for clip in clips:
        boxes = clip.boxes(SIZE)
        if clip.event in MOVE_KINDS:
            axis = 0 if clip.event in ("move_left", "move_right") else 1
            sign = -1 if clip.event in ("move_left", "move_up") else 1
            path = [_centre(b)[axis] for b in boxes]
            assert all(sign * step > 0 for step in _steps(path)), (clip.clip_id, path)
        elif clip.event in ("grow", "shrink"):
            widths = [b[2] - b[0] for b in boxes]
            sign = 1 if clip.event == "grow" else -1
            assert all(sign * step > 0 for step in _steps(widths)), clip.clip_id
        elif clip.event == "appear":
            assert boxes[0] is None and boxes[-1] is not None
        elif clip.event == "disappear":
            assert boxes[0] is not None and boxes[-1] is None


def test_spin_direction_matches_the_caption(clips):
    for clip in clips:
        if clip.event.startswith("spin"):
            angles = [scene[clip.actor].angle for scene in clip.scenes]
            turn = angles[-1] - angles[0]  # Obj.angle is counterclockwise
            assert (turn < 0) == (clip.event == "spin_clockwise"), clip.clip_id


def test_ordered_pairs_do_the_first_event_in_the_first_half():
    clips = make_clips(seed=3, per_kind=8, num_frames=9)
    checked = 0
    for clip in clips:
        if clip.event == "sequence" and clip.spec.parts[0].kind in MOVE_KINDS:
            centres = [(scene[clip.actor].x, scene[clip.actor].y) for scene in clip.scenes]
            assert centres[4] != centres[0] and centres[4] == pytest.approx(centres[8])
            checked += 1
    assert checked


def test_hard_negatives_are_twin_then_same_object_siblings(clips):
    for clip in clips:
        negatives = clip.hard_negatives()
        assert clip.caption not in negatives and len(set(negatives)) == len(negatives)
        if clip.twin_caption:
            assert negatives[0] == clip.twin_caption
        if clip.event in MOVE_KINDS + ("grow", "shrink", "stay"):
            assert all(clip.spec.looks[0][1] in text for text in clip.siblings)


def test_actions_cover_every_kind_but_ordered_pairs(clips):
    assert 12 <= len(ACTION_CLASSES) <= 16
    for clip in clips:
        assert (clip.action is None) == (clip.event == "sequence")
        assert clip.action is None or clip.action in ACTION_CLASSES


# --------------------------------------------------------------------------------------------
# Evaluation splits
# --------------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def splits():
    held_out = make_clips(seed=0, per_kind=2, num_frames=4, split="eval")
    return {name: evaluation_split(name, seed=0, clips=held_out) for name in EVAL_SPLITS}


def test_every_item_has_exactly_one_true_candidate(splits):
    for name, items in splits.items():
        assert items, name
        for item in items:
            assert item.candidates[item.answer] == item.clip.caption
            assert len(set(item.candidates)) == len(item.candidates) == (2 if name == "order" else 4)


def test_order_split_is_exactly_chance_for_a_frame_order_blind_model(splits):
    def bag_of_frames_choice(item):  # sees the frames as a set: sorting removes their order
        frames = item.clip.frames(SIZE).reshape(item.clip.num_frames, -1)
        key = np.sort(frames, axis=0).tobytes()
        return int(np.argmax([zlib.crc32(key + text.encode()) for text in item.candidates]))

    items = splits["order"]
    right = sum(bag_of_frames_choice(item) == item.answer for item in items)
    assert right * 2 == len(items)


def test_appearance_and_motion_candidates_isolate_their_cue(splits):
    for item in splits["appearance"]:
        wrong = [c for i, c in enumerate(item.candidates) if i != item.answer]
        if item.clip.event in MOVE_KINDS:
            assert not any(" ".join(item.clip.spec.looks[0]) in text for text in wrong)
    for item in splits["motion"]:
        look = " ".join(item.clip.spec.looks[0])
        assert all(look in text for text in item.candidates)
        assert item.clip.twin_caption not in item.candidates


# --------------------------------------------------------------------------------------------
# Long videos
# --------------------------------------------------------------------------------------------

def test_long_videos_are_deterministic(long_videos):
    assert make_long_videos(seed=0, n=6) == long_videos
    assert make_long_videos(seed=1, n=6) != long_videos


def test_windows_are_inside_the_video_and_do_not_overlap(long_videos):
    for video in long_videos:
        assert 3 <= len(video.events) <= 5 and 3.0 <= video.duration <= 10.0
        previous_end = 0
        for event in video.events:
            assert previous_end <= event.start_frame < event.end_frame <= video.num_frames
            assert event.start == event.start_frame / video.fps and event.end <= video.duration
            previous_end = event.end_frame
        assert len({e.query for e in video.events}) == len(video.events)


def test_events_change_only_inside_their_windows(long_videos):
    for video in long_videos:
        inside = {t for e in video.events for t in range(e.start_frame, e.end_frame)}
        for t in range(1, video.num_frames):
            changed = video.scenes[t] != video.scenes[t - 1]
            assert changed == (t in inside), (video.video_id, t)


def test_tubes_follow_the_actor(long_videos):
    for video in long_videos:
        for k, event in enumerate(video.events):
            tube = video.tube(k, SIZE)
            assert sorted(tube) == list(range(event.start_frame, event.end_frame))
            if event.kind in MOVE_KINDS:
                first, last = _centre(tube[event.start_frame]), _centre(tube[event.end_frame - 1])
                axis = 0 if event.kind in ("move_left", "move_right") else 1
                sign = -1 if event.kind in ("move_left", "move_up") else 1
                assert sign * (last[axis] - first[axis]) > 0


def test_saliency_covers_the_window(long_videos):
    for video in long_videos:
        for k, event in enumerate(video.events):
            scores = video.saliency(k)
            ids = [c for c, _ in scores]
            assert ids == list(range(int(event.start // 2), int((event.end - 1e-9) // 2) + 1))
            assert all(1 <= s <= 4 for _, s in scores)


# --------------------------------------------------------------------------------------------
# Questions
# --------------------------------------------------------------------------------------------

def test_clip_answers_match_the_ground_truth(clips):
    words = ("one", "two", "three")
    for clip in clips:
        for q in clip_questions(clip):
            assert len(q.choices) == len(set(q.choices)) == NUM_CHOICES
            right = q.choices[q.answer]
            if q.qtype == "count":
                assert right == words[len(clip.scenes[0]) - 1]
            elif q.qtype == "colour":
                assert right == clip.scenes[0][clip.actor].colour
            elif q.qtype == "direction" and clip.event in MOVE_KINDS:
                assert right.split()[-1] == clip.event.split("_")[1]
            elif q.qtype == "direction" and clip.event == "stay":
                assert right == "it stays still"
            elif q.qtype == "order":
                assert right == caption(clip.spec.parts[0], definite=True)


def test_long_video_answers_match_the_ground_truth(long_videos):
    for video in long_videos:
        questions = long_video_questions(video)
        assert {"count", "order"} <= {q.qtype for q in questions}
        for q in questions:
            assert len(set(q.choices)) == NUM_CHOICES
            right = q.choices[q.answer]
            if q.question == "what happens first":
                assert right == caption(video.events[0].spec, definite=True)
            elif q.question == "what happens last":
                assert right == caption(video.events[-1].spec, definite=True)
            elif q.qtype == "count":
                assert right == ("one", "two", "three")[len(video.scenes[0]) - 1]


def test_questions_are_deterministic(clips):
    assert clip_questions(clips[0], seed=0) == clip_questions(clips[0], seed=0)


# --------------------------------------------------------------------------------------------
# Export
# --------------------------------------------------------------------------------------------

TINY = get_profile("smoke", clips_per_kind=1, eval_clips_per_kind=1, long_videos=2)


def test_export_writes_decodable_videos_and_skips_on_rerun(tmp_path):
    from workbench.data.shapes.export import build_shapesworld, write_shapesworld
    from workbench.data.video import read_video

    first = write_shapesworld(tmp_path, TINY, seed=0, progress=False)
    world = build_shapesworld(TINY, seed=0)
    assert first["complete"] and first["skipped"] == 0
    assert first["counts"]["videos"] == len(list((tmp_path / "videos").glob("*.mp4")))
    for layout in first["layouts"].values():
        assert all((tmp_path / f).is_file() for f in layout["files"])

    clip = world.clips[0]
    decoded = read_video(tmp_path / "videos" / f"{clip.clip_id}.mp4", num_frames=clip.num_frames)
    assert tuple(decoded.shape) == (clip.num_frames, 3, TINY.frame_size, TINY.frame_size)
    rendered = clip.frames(TINY.frame_size).transpose(0, 3, 1, 2).astype(float)
    assert np.abs(decoded.numpy() - rendered).mean() < 4  # H.264 at crf 18: near-lossless

    again = write_shapesworld(tmp_path, TINY, seed=0, progress=False)
    assert again["written"] == 0 and again["skipped"] == first["written"]
    with pytest.raises(ValueError, match="overwrite=True"):
        write_shapesworld(tmp_path, TINY, seed=1, progress=False)


def test_lossless_export_keeps_twins_exact_reversals_on_disk(tmp_path):
    from workbench.data.shapes.export import build_shapesworld, write_shapesworld
    from workbench.data.video import read_video

    write_shapesworld(tmp_path, TINY, seed=0, progress=False, lossless=True)
    clip = next(c for c in build_shapesworld(TINY, seed=0).clips if c.event == "move_left")

    def decoded(video_id):
        return read_video(tmp_path / "videos" / f"{video_id}.mp4", num_frames=clip.num_frames).numpy()

    assert np.array_equal(decoded(clip.twin_id), decoded(clip.clip_id)[::-1])


# --------------------------------------------------------------------------------------------
# Orientation stills (the pretraining images that would make spins visible; README)
# --------------------------------------------------------------------------------------------

def test_orientation_names_how_a_spinnable_shape_stands_and_mirrors():
    from workbench.data.shapes.images import ORIENTATIONS, oriented_object, orientation_of, tilt
    from workbench.data.shapes.world import SPINNABLE, SYMMETRY, Background, Obj, render

    rng = np.random.default_rng(3)
    for orientation in ORIENTATIONS:
        for _ in range(40):
            obj = oriented_object(rng, "center", orientation)
            assert obj.shape in SPINNABLE and orientation_of(obj) == orientation
            # every pose of a period reads the same: one full symmetry turn changes nothing
            assert orientation_of(obj.moved(angle=obj.angle + SYMMETRY[obj.shape])) == orientation
            assert abs(tilt(obj)) < SYMMETRY[obj.shape] / 2
    # Leaning left is counterclockwise: a triangle's apex moves left, and the picture is the
    # mirror image of the same triangle leaning right by as much.
    left = Obj("triangle", "white", "large", 0.5, 0.5, angle=25.0)
    right = left.moved(angle=-25.0)
    assert (orientation_of(left), orientation_of(right)) == ("leaning left", "leaning right")
    a, b = (render([o], Background(grey=0), size=64).sum(-1) for o in (left, right))
    top = np.nonzero(a.sum(1))[0][0]
    assert np.nonzero(a[top])[0].mean() < 32 < np.nonzero(b[top])[0].mean()
    mirrored = np.abs(a[:, ::-1].astype(float) - b).mean()
    assert mirrored < 0.1 * np.abs(a.astype(float) - b).mean()


def test_orientation_share_of_pretraining_batches():
    from workbench.data.shapes.images import ORIENTATIONS, sample_images

    plain = sample_images((0, 5), 64)
    assert [i.caption for i in plain] == [i.caption for i in sample_images((0, 5), 64, orientation=0.0)]
    assert not any(o in i.caption for i in plain for o in ORIENTATIONS)
    only = sample_images((0, 5), 32, orientation=1.0)
    for item in only:  # each names how its shape stands; the hard negative names another way
        said = [o for o in ORIENTATIONS if o in item.caption]
        wrong = [o for o in ORIENTATIONS if o in item.hard_negative]
        assert len(said) == len(wrong) == 1 and said != wrong
        assert item.caption.replace(said[0], wrong[0]) == item.hard_negative


def test_phase_stills_label_where_a_shape_stands_in_its_period():
    """``phase_stills``: the label is a property of the picture (a full symmetry turn draws the same
    image and gives the same label), and a spin turns it steadily one way."""
    from workbench.data.shapes.images import phase_of, phase_stills
    from workbench.data.shapes.world import SYMMETRY, Background, Obj, render

    images, targets = phase_stills((0, 7), 24)
    again, same = phase_stills((0, 7), 24)
    assert np.array_equal(images, again) and np.array_equal(targets, same)     # deterministic
    assert images.shape == (24, 64, 64, 3) and images.dtype == np.uint8
    np.testing.assert_allclose(np.linalg.norm(targets, axis=1), 1.0, atol=1e-6)
    assert np.ptp(np.arctan2(targets[:, 1], targets[:, 0])) > 4                 # any angle, not a few
    star = Obj("star", "white", "large", 0.5, 0.5, angle=10.0)
    turned = star.moved(angle=10.0 + SYMMETRY["star"])
    assert phase_of(turned) == pytest.approx(phase_of(star))
    a, b = (render([o], Background(grey=0), size=64).astype(float) for o in (star, turned))
    assert np.abs(a - b).mean() < 0.5                                           # the same picture
    other = render([star.moved(angle=10.0 + SYMMETRY["star"] / 2)], Background(grey=0), size=64)
    assert np.abs(a - other).mean() > 5 * np.abs(a - b).mean() + 1              # half a period is not
    # counterclockwise in small steps: the phase rises by the same amount each step, for every shape
    for shape, period in SYMMETRY.items():
        phases = [phase_of(Obj(shape, "red", "small", 0.5, 0.5, angle=a)) for a in np.arange(0, period - 1, period / 8)]
        np.testing.assert_allclose(np.diff(phases), 2 * np.pi / 8, atol=1e-9)


def test_exposure_stills_show_which_way_an_event_went():
    """A long-exposure still is nearest the clip's last frame (the solid end of the trail), so a
    clip and its time-reversed twin give different stills, each captioned with its own event and
    contrasted with the other's caption."""
    from workbench.data.shapes.clips import make_clips
    from workbench.data.shapes.exposures import exposure_still, exposure_stills, exposure_weights

    weights = exposure_weights(8)
    assert np.isclose(weights.sum(), 1) and np.all(np.diff(weights) > 0)
    clips = {c.clip_id: c for c in make_clips(seed=3, per_kind=2, num_frames=8)}
    checked = 0
    for clip in clips.values():
        if clip.event not in ("move_left", "move_right", "grow", "shrink", "appear", "disappear"):
            continue
        still, frames = exposure_still(clip).astype(float), clip.frames().astype(float)
        twin = exposure_still(clips[clip.twin_id]).astype(float)
        assert np.abs(still - frames[-1]).mean() < np.abs(still - frames[0]).mean(), clip.caption
        assert np.abs(still - twin).mean() > 1.0, clip.caption
        checked += 1
    assert checked == 12
    stills = exposure_stills((0, 4), 40)
    assert [s.caption for s in stills] == [s.caption for s in exposure_stills((0, 4), 40)]  # deterministic
    assert not np.array_equal(stills[0].image, exposure_stills((0, 5), 1)[0].image)
    reversed_words = 0
    for s in stills:
        assert s.image.shape == (64, 64, 3) and s.caption != s.hard_negative
        # the negative is the reversed event: the same words in another order or with the
        # opposite direction word, so it shares most of the caption's words
        reversed_words += any(a in s.caption and b in s.hard_negative for a, b in
                              (("left", "right"), ("right", "left"), ("up", "down"), ("down", "up"),
                               ("counterclockwise", "clockwise")))
    assert reversed_words >= 10
