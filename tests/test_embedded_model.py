"""The embedded default: the tiny CLIP ships, loads offline, knows ShapesWorld, and is order-blind
when its frames are mean-pooled (issue: the first measured video result)."""
import json

import pytest

from workbench import create_strategy, get_profile, load_backbone
from workbench.backbones.card import TARGETS, zero_shot_probes
from workbench.config import DEFAULT_MODEL, MODELS_DIR
from workbench.tasks.retrieval import evaluate_splits, shapes_retrieval_data

MODEL_DIR = MODELS_DIR / DEFAULT_MODEL


@pytest.fixture(scope="module")
def backbone():
    return load_backbone()  # no arguments: the embedded default, offline


# Every target is met by the shipped model (shape was 77.7% after 1000 steps; 90.7% after 1400).
# A retrained model that misses one must list it here and say so in its card and note.
MISSED_TARGETS: set[str] = set()


def test_embedded_model_ships_small_with_its_card():
    assert (MODEL_DIR / "open_clip_model.safetensors").stat().st_size < 40e6
    card = (MODEL_DIR / "MODEL_CARD.md").read_text()
    probes = json.loads((MODEL_DIR / "probes.json").read_text())
    for attribute, result in probes.items():
        assert f"| {attribute} | {result['accuracy']:.1f} |" in card  # the card shows what was measured
        if attribute != "orientation":  # never taught: see the last test
            assert result["accuracy"] >= result["chance"] + 25, attribute
    for attribute, target in TARGETS.items():
        met = probes[attribute]["accuracy"] >= target
        assert met or attribute in MISSED_TARGETS, (attribute, probes[attribute])


def test_card_figures_are_reproduced_by_a_fresh_measurement(backbone):
    # A smaller fresh sample of the same probes: the card is not stale or typed by hand.
    fresh = zero_shot_probes(backbone, per_attribute=60, attributes=("colour", "size", "position", "shape"))
    stored = json.loads((MODEL_DIR / "probes.json").read_text())
    for attribute, result in fresh.items():
        assert abs(result["accuracy"] - stored[attribute]["accuracy"]) <= 15, attribute


@pytest.fixture(scope="module")
def splits(backbone):
    profile = get_profile("smoke")
    return {name: shapes_retrieval_data(name, profile, backbone) for name in ("appearance", "motion", "order")}


def test_mean_pool_sees_appearance_but_is_exactly_chance_on_twins(backbone, splits):
    scores = evaluate_splits(create_strategy("mean-pool", backbone), splits)
    assert scores["order"]["mc_accuracy"] == 50.0           # cannot see order: exactly chance
    assert scores["appearance"]["mc_accuracy"] >= 60.0      # 4 candidates: chance is 25
    # ... on every kind of twin pair, not only on average (the per-kind breakdown the bench writes)
    assert len(scores["order"]["by_kind"]) == 9            # 6 reversible pairs of kinds, 3 self-reversing
    assert set(scores["order"]["by_kind"].values()) == {50.0}


def test_the_shipped_model_was_never_told_how_shapes_stand(backbone):
    # README "Why": its pretraining stills tilt at most 15 degrees and no caption names a tilt, so
    # it cannot say whether a shape leans left or right (3 choices). Spin direction is the order
    # of those poses; a retrained model that learns them (`workbench pretrain --orientation`)
    # should fail this test, and the README's explanation must change with it.
    result = zero_shot_probes(backbone, per_attribute=90, attributes=("orientation",))["orientation"]
    assert result["accuracy"] <= result["chance"] + 15
