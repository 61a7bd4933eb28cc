"""The retrieval index: exact and FAISS agree, IVF recalls, save/load round trips, bad input is named."""
import pytest
import torch
import torch.nn.functional as F

from workbench.index import ExactIndex, build_index, load_index


def clustered(n=4000, dim=64, centres=40, spread=0.7, seed=0):
    """Unit vectors around a few centres (as clip embeddings cluster by content), and queries near them."""
    g = torch.Generator().manual_seed(seed)
    means = F.normalize(torch.randn(centres, dim, generator=g), dim=-1)
    members = torch.randint(centres, (n,), generator=g)
    vectors = F.normalize(means[members] + spread * torch.randn(n, dim, generator=g) / dim ** 0.5, dim=-1)
    queries = F.normalize(means[:20] + spread * torch.randn(20, dim, generator=g) / dim ** 0.5, dim=-1)
    return vectors, [f"clip{i:05d}" for i in range(n)], queries


def test_exact_search_returns_the_best_cosines_in_order():
    vectors, ids, queries = clustered()
    index = build_index(vectors * 3.0, ids, kind="auto")   # unnormalised input is normalised
    assert isinstance(index, ExactIndex)
    scores, found = index.search(queries, k=5)
    full = queries @ vectors.t()
    best = full.topk(5, dim=1)
    torch.testing.assert_close(scores, best.values, atol=1e-5, rtol=1e-5)
    assert found == [[ids[j] for j in row] for row in best.indices.tolist()]
    # One query as [D], k larger than the collection.
    one_scores, one_ids = build_index(vectors[:3], ids[:3]).search(vectors[1], k=10)
    assert one_ids[0][0] == ids[1] and one_scores.shape == (1, 3) and one_scores[0, 0] == pytest.approx(1.0)


def test_exact_and_faiss_flat_agree_on_top_k():
    pytest.importorskip("faiss")
    vectors, ids, queries = clustered()
    exact_scores, exact_ids = build_index(vectors, ids, kind="exact").search(queries, k=10)
    faiss_scores, faiss_ids = build_index(vectors, ids, kind="faiss").search(queries, k=10)
    assert faiss_ids == exact_ids
    torch.testing.assert_close(faiss_scores, exact_scores, atol=1e-5, rtol=1e-5)


def test_faiss_ivf_recalls_most_neighbours_and_more_probes_recall_more():
    pytest.importorskip("faiss")
    vectors, ids, queries = clustered(n=8000)
    _, truth = build_index(vectors, ids, kind="exact").search(queries, k=10)
    ivf = build_index(vectors, ids, kind="faiss-ivf", nprobe=1)

    def recall():
        found = ivf.search(queries, k=10)[1]
        return sum(len(set(a) & set(b)) for a, b in zip(found, truth)) / (10 * len(truth))

    few = recall()
    ivf.nprobe = 16
    many = recall()
    assert many >= 0.95 and many > few


@pytest.mark.parametrize("kind", ["exact", "faiss", "faiss-ivf"])
def test_save_and_load_round_trip(kind, tmp_path):
    if kind != "exact":
        pytest.importorskip("faiss")
    vectors, ids, queries = clustered(n=2000)
    index = build_index(vectors, ids, kind=kind)
    path = index.save(tmp_path / "clips.index.safetensors")
    assert [p.name for p in tmp_path.iterdir()] == ["clips.index.safetensors"]  # no temp file left
    loaded = load_index(path)
    assert loaded.kind == kind and len(loaded) == len(ids)
    before, after = index.search(queries, k=7), loaded.search(queries, k=7)
    assert before[1] == after[1]
    torch.testing.assert_close(before[0], after[0])


def test_bad_input_is_named(tmp_path):
    vectors, ids, _ = clustered(n=100)
    index = build_index(vectors, ids, kind="exact")
    with pytest.raises(ValueError, match="dimension 32, the index 64"):
        index.search(torch.randn(2, 32), k=3)
    with pytest.raises(ValueError, match="100 embeddings but 99 ids"):
        build_index(vectors, ids[:99], kind="exact")
    with pytest.raises(ValueError, match="unknown index kind"):
        build_index(vectors, ids, kind="annoy")
    junk = tmp_path / "junk.safetensors"
    junk.write_bytes(b"definitely not an index")
    with pytest.raises(ValueError, match="junk.safetensors: not an index file"):
        load_index(junk)
    with pytest.raises(FileNotFoundError, match="missing.safetensors"):
        load_index(tmp_path / "missing.safetensors")


def test_auto_switches_to_ivf_when_exact_would_read_too_much(monkeypatch):
    pytest.importorskip("faiss")
    import workbench.index as index_module

    vectors, ids, _ = clustered(n=2000)
    assert build_index(vectors, ids).kind == "exact"
    monkeypatch.setattr(index_module, "AUTO_EXACT_MAX_BYTES", 2000 * 64 * 4 - 1)
    assert build_index(vectors, ids).kind == "faiss-ivf"
