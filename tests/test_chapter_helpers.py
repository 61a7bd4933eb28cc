"""What the chapter notebooks call besides the tasks: cached training (a rerun loads instead of
training), the live widget view, architecture summaries without weights, probe scores, figures."""
import warnings

import pytest
import torch

from workbench.backbones import BackboneError, describe_config, load_backbone
from workbench.backbones.card import held_out_probes, probe_scores, zero_shot_probes
from workbench.bench import SHIPPED, prepare, shipped_rows, train_or_ship
from workbench.config import get_profile
from workbench.figures import grouped_bars, line_curves, score_bars
from workbench.tasks.base import get_task, run_cached, run_folder, train_or_load
from workbench.tasks.retrieval import splits_run_cached, train_and_score

PROFILE = get_profile("smoke")


@pytest.fixture(scope="module")
def backbone():
    return load_backbone()


def test_train_or_load_trains_once_then_loads(backbone, tmp_path):
    task = get_task("recognition")
    data = task.shapes_data(PROFILE, backbone)
    first = train_or_load(task, "post-conv1d", backbone, data, PROFILE, run_dir=tmp_path / "run")
    again = train_or_load(task, "post-conv1d", backbone, data, PROFILE, run_dir=tmp_path / "run")
    assert not first["loaded"] and again["loaded"]
    assert again["log"]["strategy"]["steps"] == first["log"]["strategy"]["steps"] > 0
    scores = [task.predict(r["model"], data.eval, r["head"])["scores"] for r in (first, again)]
    assert (scores[0] == scores[1]).all()                       # the very same trained model and head


def test_train_or_load_retrains_a_run_that_no_longer_fits(backbone, tmp_path):
    task = get_task("recognition")
    data = task.shapes_data(PROFILE, backbone)
    train_or_load(task, "post-conv1d", backbone, data, PROFILE, run_dir=tmp_path / "run")
    with pytest.warns(UserWarning, match="does not fit"):      # another strategy's parameters in the folder
        run = train_or_load(task, "post-lstm", backbone, data, PROFILE, run_dir=tmp_path / "run")
    assert not run["loaded"]
    assert train_or_load(task, "post-lstm", backbone, data, PROFILE, run_dir=tmp_path / "run")["loaded"]


def test_train_and_score_loads_the_same_row(backbone, tmp_path):
    prepared = prepare(PROFILE, backbone, cache_root=tmp_path / "features")
    _, first = train_and_score("post-conv1d", backbone, prepared, PROFILE, run_dir=tmp_path / "run")
    with warnings.catch_warnings():
        warnings.simplefilter("error")                          # a clean reload, no retraining
        _, again = train_and_score("post-conv1d", backbone, prepared, PROFILE, run_dir=tmp_path / "run")
    assert not first["loaded"] and again["loaded"]
    drop = {"loaded"}
    assert {k: v for k, v in first.items() if k not in drop} == {k: v for k, v in again.items() if k not in drop}
    _, mean_pool = train_and_score("mean-pool", backbone, prepared, PROFILE, cache=False)
    assert mean_pool["twin_acc"] == 50.0 and mean_pool["trainable_params"] == 0


def test_run_cached_says_whether_a_rerun_would_load(backbone, tmp_path, monkeypatch):
    monkeypatch.setattr("workbench.config.CACHE_DIR", tmp_path)     # run_folder's default root
    task = get_task("recognition")
    data = task.shapes_data(PROFILE, backbone)
    assert not run_cached("post-conv1d", "recognition", PROFILE, backbone)
    train_or_load(task, "post-conv1d", backbone, data, PROFILE)
    assert run_cached("post-conv1d", "recognition", PROFILE, backbone)
    assert not run_cached("post-lstm", "recognition", PROFILE, backbone)
    prepared = prepare(PROFILE, backbone, cache_root=tmp_path / "features")
    assert not splits_run_cached("post-conv1d", PROFILE, backbone)
    train_and_score("post-conv1d", backbone, prepared, PROFILE)
    assert splits_run_cached("post-conv1d", PROFILE, backbone)
    assert train_and_score("post-conv1d", backbone, prepared, PROFILE)[1]["loaded"]


def test_chapters_read_the_shipped_table_for_what_they_do_not_train(backbone):
    import json
    table = {r["strategy"]: r for r in json.loads((SHIPPED / "strategies-cpu" / "bench.json").read_text())["rows"]}
    models, rows = train_or_ship(["mean-pool", "side-evl", "no-such"], [], backbone, {}, get_profile("cpu"))
    assert models == {} and [r["strategy"] for r in rows] == ["mean-pool", "side-evl"]
    assert rows[1]["twin_acc"] == table["side-evl"]["twin_acc"] and "shipped" in rows[1]["source"]
    assert set(shipped_rows("cpu", backbone, "qa")) >= {"mean-pool", "post-transformer"}
    assert shipped_rows("cpu", backbone, "temporal-grounding")["post-transformer"]["mode"] == "strategy + heads"
    other = type("Other", (), {"name": "ViT-B-32"})()           # another model: the tables do not apply
    assert shipped_rows("cpu", other) == {} and shipped_rows("smoke", backbone) == {}
    # a profile rescaled with --clips-per-kind / --steps is not the shipped one
    assert shipped_rows(get_profile("cpu", clips_per_kind=1200), backbone) == {}


def test_run_folder_separates_weights_strategies_and_profiles(backbone):
    a = run_folder("post-lstm", "qa", PROFILE, backbone)
    assert a != run_folder("post-lstm", "qa", get_profile("cpu"), backbone)
    assert a != run_folder("post-conv1d", "qa", PROFILE, backbone)
    # a rescaled profile keeps its name but never shares the named profile's runs
    cpu = run_folder("post-lstm", "qa", "cpu", backbone)
    assert run_folder("post-lstm", "qa", get_profile("cpu"), backbone) == cpu
    rescaled = run_folder("post-lstm", "qa", get_profile("cpu", train_steps=100), backbone)
    assert rescaled != cpu and rescaled.name.startswith("post-lstm-qa-cpu-")
    assert rescaled == run_folder("post-lstm", "qa", get_profile("cpu", train_steps=100), backbone)
    assert a.parent.name.startswith("local-dir")                 # keyed by the backbone's fingerprint


def test_live_draws_at_once_raises_at_once_and_redraws_in_place(monkeypatch):
    import ipywidgets as widgets

    import workbench.widgets as live_module

    shown, updates = [], []

    class Handle:
        def update(self, item):
            updates.append(item)

    def fake_display(item, display_id=False):
        shown.append(item)
        return Handle() if display_id else None

    monkeypatch.setattr(live_module, "display", fake_display)
    slider = widgets.IntSlider(value=1, min=0, max=5)
    live_module.live(lambda x: [f"a{x}", f"b{x}"], x=slider)
    assert shown[1:] == ["a1", "b1"]                            # controls first, then the view's outputs
    slider.value = 3
    assert updates == ["a3", "b3"]
    with pytest.raises(ZeroDivisionError):
        live_module.live(lambda x: 1 / 0, x=widgets.IntSlider())


def test_describe_config_reads_sizes_without_weights():
    b32 = describe_config("ViT-B-32")
    assert b32["params"]["total"] == 151_277_313 and b32["image_size"] == 224 and b32["patch_size"] == 32
    assert "openai" in b32["tags"] and b32["fp16_mb"] == 289
    assert describe_config("shapes-clip-tiny")["embed_dim"] == 128
    with pytest.raises(BackboneError, match="Unknown model name"):
        describe_config("ViT-Q-99")


def test_probe_scores_answer_as_the_card_does(backbone):
    probes = held_out_probes("colour", 20, backbone.image_size)
    correct = sum(max(range(len(p.candidates)), key=probe_scores(backbone, p).__getitem__) == p.answer for p in probes)
    assert 100.0 * correct / len(probes) == zero_shot_probes(backbone, 20, attributes=("colour",))["colour"]["accuracy"]


def test_figures_escape_labels_and_keep_every_series():
    fig = score_bars(["<b>bold</b>", "plain"], torch.tensor([0.2, 0.1]), highlight=[True, False])
    assert fig.data[0].y[-1] == "&lt;b&gt;bold&lt;/b&gt;"     # first label at the top of the bars
    assert len(grouped_bars(["a", "b"], {"x": [1, 2], "y": [3, 4]}).data) == 2
    assert len(line_curves({"loss": [3, 2, 1]}).data[0].y) == 3
