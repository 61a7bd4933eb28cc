"""The running app through gradio_client: every event by its api_name (grounding, window playback
and attention included), 8 clients at once, bad uploads and bad input answered with a message (and
the server keeps serving), only allowed files served."""
import urllib.error
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
from gradio_client import Client, handle_file
from test_app_handlers import TEST_CACHE, app_collection, server_threads  # noqa: F401

from workbench.app.collection import index_folder
from workbench.app.state import AppState
from workbench.app.ui import build_app, launch


@pytest.fixture(scope="module")
def app(tmp_path_factory, server_threads):
    backbone, root = app_collection()
    collection = index_folder(root, backbone, num_frames=8, cache_root=TEST_CACHE, progress=False)
    state = AppState(backbone, collection, runs_dir=tmp_path_factory.mktemp("runs"), max_upload_mb=5)
    demo = build_app(state)
    launch(demo, state, block=False, quiet=True)
    yield demo, state
    demo.close()


@pytest.fixture(scope="module")
def client(app):
    return Client(app[0].local_url, verbose=False)


def _caption_clip(state):
    return next(v for v in state.collection.videos if v.captions and v.name.startswith("eval_grow"))


def test_text_to_video_by_api_name(client, app):
    clip = _caption_clip(app[1])
    gallery, table, player = client.predict(clip.captions[0], "mean-pool", 6, api_name="/text_to_video")
    rows = table["data"]
    assert len(rows) == 6 and len(gallery) == 6 and player
    assert [r[0] for r in rows] == [1, 2, 3, 4, 5, 6] and rows[0][2] >= rows[-1][2]
    twin = clip.name + "r"
    assert {clip.video_id, f"videos/{twin}"} & {r[1] for r in rows}


def test_every_event_answers(client, app):
    state = app[1]
    clip = _caption_clip(state)
    assert "trains nothing" in client.predict("mean-pool", api_name="/head_status")
    assert "untrained" in client.predict("post-lstm", api_name="/head_status")
    plot, table = client.predict(clip.video_id, None, "mean-pool", "", api_name="/video_to_text")
    assert any(r[3] == "yes" for r in table["data"])
    question = client.predict(clip.video_id, api_name="/qa_examples")
    plot, table = client.predict(clip.video_id, None, "what colour is the shape", "red\nblue\ngreen", "mean-pool",
                                 api_name="/answer_question")
    assert sorted(r[0] for r in table["data"]) == ["blue", "green", "red"]
    table, plot = client.predict(clip.video_id, None, "", api_name="/strategy_lab")
    assert len(table["data"]) == len(state.strategies)
    assert client.predict(api_name="/run_probes", per_attribute=20) is not None
    assert question is not None


def test_eight_clients_at_once_are_all_answered(app):
    state = app[1]
    clips = [v for v in state.collection.videos if v.captions][:8]

    def ask(clip):
        own = Client(app[0].local_url, verbose=False)
        _, table, _ = own.predict(clip.captions[0], "mean-pool", 3, api_name="/text_to_video")
        return table["data"]

    with ThreadPoolExecutor(8) as pool:
        answers = list(pool.map(ask, clips))
    assert len(answers) == 8 and all(len(a) == 3 for a in answers)


def test_bad_uploads_get_a_message_and_the_server_keeps_serving(client, app, tmp_path):
    bad = tmp_path / "holiday.mp4"
    bad.write_text("this is not a video\n" * 100)
    with pytest.raises(Exception, match="not a readable video"):
        client.predict(app[1].collection.videos[0].video_id, handle_file(str(bad)), "mean-pool", "",
                       api_name="/video_to_text")
    _, table, _ = client.predict("a red circle", "mean-pool", 2, api_name="/text_to_video")
    assert len(table["data"]) == 2


def test_user_text_is_returned_as_text(client, app):
    payload = "<script>alert('x')</script> a red circle"
    _, table = client.predict(app[1].collection.videos[0].video_id, None, "mean-pool", payload + "\nsomething",
                              api_name="/video_to_text")
    assert payload in [r[1] for r in table["data"]]


def _status(url):
    try:
        return urllib.request.urlopen(url, timeout=10).status
    except urllib.error.HTTPError as error:
        return error.code


def test_serves_only_its_collection_and_uploads(app):
    demo, state = app
    base = demo.local_url.rstrip("/") + "/gradio_api/file="
    assert _status(base + str(state.collection.videos[0].path)) == 200
    assert _status(base + str(state.collection.videos[0].thumbnail)) == 200
    from workbench.config import REPO_ROOT

    for other in (REPO_ROOT / "pyproject.toml", "/etc/passwd", state.collection.root.parent / "elsewhere.txt"):
        assert _status(base + str(other)) == 403, other


def test_grounding_and_attention_by_api_name(client, app):
    state = app[1]
    video = next(v.video_id for v in state.collection.videos if v.name.startswith("long_"))
    asked = client.predict(video, None, api_name="/annotated_moments")
    query = asked["value"]
    assert query and [query, query] in asked["choices"]
    timeline, table, windows, grid, note = client.predict(video, None, query, "mean-pool", 32, api_name="/ground")
    rows = table["data"]
    assert rows and rows[0][0] == 1 and rows[0][3] >= rows[-1][3] and "IoU with the true one" in note
    assert timeline["type"] == "plotly" and grid["type"] == "plotly"
    choices = [value for _, value in windows["choices"]]
    assert windows["value"] == choices[0] and any(label.startswith("true") for label, _ in windows["choices"])
    played = client.predict(video, None, *map(float, choices[-1].split(",")), api_name="/play_window")  # the true one
    assert Path(played["video"] if isinstance(played, dict) else played).is_file()
    played = client.predict(video, None, 0.5, 1.25, api_name="/play_window")    # any span, typed
    assert Path(played["video"] if isinstance(played, dict) else played).name.endswith("-0.500-1.250.mp4")
    grid, table, note = client.predict(video, None, query, "mean-pool", "relevancy", 0, "mean", 8, 0, None,
                                       api_name="/attention")
    assert len(table["data"]) == 8 and grid["type"] == "plotly"
    grid, table, note = client.predict(video, None, "", "mean-pool", "attention", 5, "1", 4, 0, None,
                                       api_name="/attention")
    assert len(table["data"]) == 4 and "No true box" in note


def test_bad_grounding_input_gets_a_message_and_the_server_keeps_serving(client, app):
    video = app[1].collection.videos[0].video_id
    with pytest.raises(Exception, match="type a query"):
        client.predict(video, None, "  ", "mean-pool", 32, api_name="/ground")
    with pytest.raises(Exception, match="type a query"):
        client.predict(video, None, "", "mean-pool", "relevancy", 0, "mean", 8, 0, None, api_name="/attention")
    with pytest.raises(Exception, match="end after it starts"):
        client.predict(video, None, "", "mean-pool", "rollout", 0, "mean", 8, 2, 1, api_name="/attention")
    with pytest.raises(Exception, match="later end"):
        client.predict(video, None, 2.0, 1.0, api_name="/play_window")
    with pytest.raises(Exception, match="greater than maximum"):   # the layer slider's own check
        client.predict(video, None, "a red circle", "mean-pool", "attention", 99, "mean", 8, 0, None,
                       api_name="/attention")
    _, table, _ = client.predict("a red circle", "mean-pool", 2, api_name="/text_to_video")
    assert len(table["data"]) == 2
