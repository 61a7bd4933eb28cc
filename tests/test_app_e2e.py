"""The page in headless Chromium (Debian's `chromium`, installed by .ci/run): every tab renders,
a text query fills the gallery, a query carrying markup is shown as text, never run, and a
grounded query draws its plots and plays the top window."""
import os

import pytest
from test_app_handlers import TEST_CACHE, app_collection, server_threads  # noqa: F401

from workbench.app.browser import Chromium, find_chromium
from workbench.app.collection import index_folder
from workbench.app.state import AppState
from workbench.app.ui import build_app, launch

pytestmark = pytest.mark.e2e

if find_chromium() is None and os.environ.get("WORKBENCH_REQUIRE_BROWSER") != "1":
    pytest.skip("chromium not installed (apt-get install -y chromium; .ci/run does)", allow_module_level=True)

TABS = {"Retrieval": "Text → videos", "Video QA": "Score the answers", "Grounding": "Ground the query",
        "Attention": "Show the maps", "Strategy lab": "Run every strategy", "Model": "Which ILFM is loaded"}


@pytest.fixture(scope="module")
def url(tmp_path_factory, server_threads):
    backbone, root = app_collection()
    collection = index_folder(root, backbone, num_frames=8, cache_root=TEST_CACHE, progress=False)
    state = AppState(backbone, collection, runs_dir=tmp_path_factory.mktemp("runs"))
    demo = build_app(state)
    launch(demo, state, block=False, quiet=True)
    yield demo.local_url
    demo.close()


def test_every_tab_renders_and_a_query_returns_results(url):
    with Chromium() as page:
        page.goto(url)
        page.wait_for("document.querySelector('#query textarea, #query input') !== null", timeout=90)
        for tab, text in TABS.items():
            page.open_tab(tab)
            page.wait_for(f"document.body.innerText.includes({text!r})", timeout=30)
        page.open_tab("Retrieval")
        page.type_into("query", 'a red cross becomes larger <script>window.__ran=1</script>'
                                '<img src=x onerror="window.__ran=1">')
        page.click("search")
        assert page.wait_for("document.querySelectorAll('#gallery img').length", timeout=60) >= 3
        page.wait_for("document.querySelector('#hits').innerText.includes('videos/')", timeout=30)
        assert page.evaluate("window.__ran === undefined")
        assert page.evaluate("document.querySelectorAll('img[src=\"x\"]').length") == 0


def test_grounding_draws_and_plays_the_top_window(url):
    with Chromium() as page:
        page.goto(url)
        page.open_tab("Grounding")
        # the annotated queries of the opening (long) video fill the query box on load
        page.wait_for("(document.querySelector('#g-query textarea, #g-query input') || {}).value", timeout=90)
        page.click("g-run")
        page.wait_for("document.querySelector('#g-note').innerText.includes('IoU')", timeout=60)
        page.wait_for("document.querySelectorAll('#g-plot .main-svg, #g-grid .main-svg').length >= 2", timeout=30)
        assert page.wait_for("(document.querySelector('#g-span video') || {}).src", timeout=30).endswith(".mp4")
        page.open_tab("Attention")
        page.wait_for("(document.querySelector('#a-query textarea, #a-query input') || {}).value", timeout=30)
        page.click("a-run")
        page.wait_for("document.querySelector('#a-note').innerText.includes('inside the true box')", timeout=60)
