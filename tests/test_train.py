"""The one training loop: contrastive loss, hard negatives, resume, and 2-process DDP."""
import json
import os
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from safetensors.torch import load_file
from torch import nn

from workbench import load_backbone
from workbench.strategies.base import VideoTextModel
from workbench.tasks.retrieval import evaluate_retrieval
from workbench.train import (RetrievalData, TrainConfig, contrastive_loss, flushing_denormals, on_every_cpu_thread,
                             train_retrieval)

HERE = Path(__file__).parent


class OrderHead(VideoTextModel):
    """A minimal order-aware head on frozen features (test-local: not registered)."""

    family, leaf, temporal, input_level = "frozen", "test head", True, "features"

    def __init__(self, backbone):
        super().__init__(backbone)
        d = backbone.embed_dim
        self.gru = nn.GRU(d, d, batch_first=True)
        self.out = nn.Linear(d, d)
        nn.init.zeros_(self.out.weight)
        nn.init.zeros_(self.out.bias)

    def pool(self, features):
        return F.normalize(features.mean(1) + self.out(self.gru(features)[0][:, -1]), dim=-1)


def synthetic_twins(backbone, n_objects=6, frames=4, seed=0) -> RetrievalData:
    """Per-frame features moving along a line; each clip's twin is the same frames reversed."""
    g = torch.Generator().manual_seed(seed)
    d = backbone.embed_dim
    feats, captions, twin = [], [], []
    names = ["red circle", "blue square", "green star", "white cross", "yellow triangle", "cyan diamond"]
    for k in range(n_objects):
        start, step = torch.randn(d, generator=g), torch.randn(d, generator=g)
        clip = torch.stack([start + t * step for t in range(frames)])
        feats += [clip, clip.flip(0)]
        captions += [f"a {names[k]} moves to the left", f"a {names[k]} moves to the right"]
        twin += [2 * k + 1, 2 * k]
    frames_u8 = torch.zeros(len(feats), frames, 3, 8, 8, dtype=torch.uint8)
    return RetrievalData(frames_u8, captions, twin, [[] for _ in captions], torch.stack(feats))


@pytest.fixture(scope="module")
def backbone():
    torch.manual_seed(0)
    return load_backbone("shapes-clip-tiny")


def test_contrastive_loss_prefers_aligned_pairs_and_tolerates_duplicate_captions():
    text = F.normalize(torch.eye(3), dim=-1)
    texts = ["a", "b", "c"]
    aligned = contrastive_loss(text.clone(), text, texts, ["a", "b", "c"], scale=10.0)
    shuffled = contrastive_loss(text[[1, 2, 0]], text, texts, ["a", "b", "c"], scale=10.0)
    assert aligned < shuffled
    # Two clips with the same caption: both are positives of that caption, nothing breaks.
    dup = contrastive_loss(text[[0, 0, 1]], text, texts, ["a", "a", "b"], scale=10.0)
    assert torch.isfinite(dup) and dup < shuffled


def test_order_head_learns_twins_with_hard_negatives(backbone):
    data = synthetic_twins(backbone)
    torch.manual_seed(0)
    model = OrderHead(backbone)
    assert evaluate_retrieval(model, data)["twin_accuracy"] == 50.0  # zero-init: mean pooling
    train_retrieval(model, data, TrainConfig(steps=80, batch_size=8, lr=3e-3, warmup=5), progress=False)
    assert evaluate_retrieval(model, data)["twin_accuracy"] >= 90.0


def test_max_epochs_caps_the_steps_of_a_small_training_set(backbone):
    data = synthetic_twins(backbone)                       # 12 pairs: 3 steps of 8 make 2 epochs
    cfg = TrainConfig(steps=1000, batch_size=8, warmup=2, max_epochs=2)
    log = train_retrieval(OrderHead(backbone), data, cfg, progress=False)
    assert log["steps"] == 3 and len(log["losses"]) == 3
    # the profiles' budgets carry the cap; a large set keeps the whole budget
    from workbench.bench import MAX_EPOCHS, train_config
    from workbench.config import get_profile
    from workbench.train import sized_to
    cpu = train_config(get_profile("cpu"), OrderHead(backbone), True, 0)
    assert cpu.max_epochs == MAX_EPOCHS
    assert sized_to(cpu, 6400).steps == cpu.steps and sized_to(cpu, 183).steps < cpu.steps / 10


class FlushWitness(OrderHead):
    """Records, at every forward, whether denormal floats count as zero at that moment, on each
    thread of PyTorch's CPU pool (the flag is per thread)."""

    def pool(self, features):
        self.seen = getattr(self, "seen", set()) | set(on_every_cpu_thread(flushing_denormals))
        return super().pool(features)


def test_training_flushes_denormals_and_restores_the_setting_after(backbone):
    """Denormal floats slowed side-evl's CPU steps fourfold (benchmarks/bench_denormals.py), so the
    loop flushes them to zero while it runs, on every thread of the pool (set on the main thread
    alone, the other thread kept the slow path for its half of each matmul); the CPU flag is
    global, so it is restored afterwards (hypothesis, for one, refuses to run with it left on), and
    the option turns the flush off."""
    if not torch.set_flush_denormal(False):
        pytest.skip("this CPU cannot flush denormals")
    threads = torch.get_num_threads()
    torch.set_num_threads(2)
    if len(on_every_cpu_thread(flushing_denormals)) < 2:
        pytest.skip("PyTorch's OpenMP pool cannot be reached here")
    cfg = TrainConfig(steps=2, batch_size=8, warmup=1)
    try:
        for before in (False, True):
            on_every_cpu_thread(lambda: torch.set_flush_denormal(before))
            model = FlushWitness(backbone)
            train_retrieval(model, synthetic_twins(backbone), cfg, progress=False)
            assert model.seen == {True} and on_every_cpu_thread(flushing_denormals) == [before] * 2
        on_every_cpu_thread(lambda: torch.set_flush_denormal(False))
        model = FlushWitness(backbone)
        train_retrieval(model, synthetic_twins(backbone), replace(cfg, flush_denormals=False), progress=False)
        assert model.seen == {False} and not any(on_every_cpu_thread(flushing_denormals))
    finally:
        on_every_cpu_thread(lambda: torch.set_flush_denormal(False))
        torch.set_num_threads(threads)


def test_resume_gives_the_same_parameters(backbone, tmp_path):
    data = synthetic_twins(backbone)
    cfg = TrainConfig(steps=10, batch_size=8, checkpoint_every=4, warmup=2)
    torch.manual_seed(1)
    straight = OrderHead(backbone)
    train_retrieval(straight, data, cfg, run_dir=tmp_path / "a", progress=False)
    torch.manual_seed(1)
    interrupted = OrderHead(backbone)
    out = train_retrieval(interrupted, data, cfg, run_dir=tmp_path / "b", progress=False, max_steps_this_run=6)
    assert out["steps"] == 6 and json.loads((tmp_path / "b" / "state.json").read_text())["step"] == 4
    torch.manual_seed(1)
    resumed = OrderHead(backbone)  # a new process would start from scratch and load the checkpoint
    train_retrieval(resumed, data, cfg, run_dir=tmp_path / "b", progress=False)
    for (name, a), (_, b) in zip(straight.named_parameters(), resumed.named_parameters()):
        torch.testing.assert_close(a, b, msg=name)


@pytest.mark.slow
def test_two_cpu_processes_train_as_one(tmp_path):
    """torchrun with 2 CPU processes trains the same parameters as one process, and shares out a
    frozen pass (side-tuning's) so that each encodes half the clips and both get all of it.

    The global batch is split across the processes and the loss is computed on the gathered
    embeddings (train.py's docstring). Measured: trained parameters within 1.6e-5 of the one-process
    run (summation order differs), gradient norms within 3e-6 relative; sampling a batch per process
    (the loop before) differs by 5e-2, and a wrong gradient scale in the gather (1/2 or x2) or in the
    per-shard auxiliary loss by 1e-2, far outside the tolerances below.
    """
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    script = str(HERE / "ddp_train_script.py")
    one, two = tmp_path / "one", tmp_path / "two"
    one.mkdir(), two.mkdir()
    subprocess.run([sys.executable, script, str(one)], check=True, env=env, timeout=300)
    torchrun = Path(sys.executable).with_name("torchrun")
    subprocess.run([str(torchrun), "--nproc_per_node", "2", "--master_port", "29533", script, str(two)],
                   check=True, env=env, timeout=300)
    alone = json.loads((one / "rank0.json").read_text())
    results = [json.loads((two / f"rank{r}.json").read_text()) for r in (0, 1)]
    assert alone["world_size"] == 1 and results[0]["world_size"] == 2
    assert results[0]["checksum"] == pytest.approx(results[1]["checksum"], rel=1e-6)  # DDP replicas agree
    assert results[0]["losses"][-1] < results[0]["losses"][0]
    # The same run as one process: losses (logged to 5 decimals), gradient norms, parameters.
    assert results[0]["losses"] == pytest.approx(alone["losses"], abs=1e-4)
    assert results[0]["grad_norms"] == pytest.approx(alone["grad_norms"], rel=1e-4)
    expected, got = load_file(str(one / "trainable.safetensors")), load_file(str(two / "trainable.safetensors"))
    assert sorted(got) == sorted(expected)
    for name in expected:
        torch.testing.assert_close(got[name], expected[name], rtol=1e-4, atol=1e-4, msg=name)
    # Side-tuning's frozen pass, shared out: each process encodes its turn of the batches (2 + 1
    # clips; the second one's last-round batch is a stand-in, dropped), and both get all 5 clips'
    # outputs, in clip order, equal to one process's pass.
    assert alone["pass_clips_encoded"] == 5
    assert [r["pass_clips_encoded"] for r in results] == [3, 3]
    whole = load_file(str(one / "rank0-pass.safetensors"))
    for r in (0, 1):
        shared = load_file(str(two / f"rank{r}-pass.safetensors"))
        for name in whole:
            torch.testing.assert_close(shared[name], whole[name], rtol=1e-5, atol=1e-5, msg=f"rank {r} {name}")


def test_twin_term_is_ln2_for_a_tie_and_rewards_the_own_caption():
    from workbench.train import twin_loss, twin_pairs

    text = F.normalize(torch.eye(4)[:2], dim=-1)              # captions "grows", "shrinks"
    texts, captions = ["grows", "shrinks"], ["grows", "shrinks"]
    data = RetrievalData(torch.zeros(2, 1, 3, 2, 2, dtype=torch.uint8), captions, [1, 0])
    pairs = twin_pairs(data, [0, 1])
    assert pairs == [(0, 1)]
    tie = F.normalize(torch.ones(2, 4), dim=-1)               # an order-blind model: twins embed alike
    assert torch.isclose(twin_loss(tie, text, texts, captions, pairs, scale=10.0), torch.tensor(float(np.log(2))), atol=1e-5)
    told_apart = twin_loss(text.clone(), text, texts, captions, pairs, scale=10.0)
    swapped = twin_loss(text[[1, 0]], text, texts, captions, pairs, scale=10.0)
    assert told_apart < 1e-3 < np.log(2) < swapped
    assert twin_pairs(data, [0]) == []                        # a twin outside the batch is no pair
