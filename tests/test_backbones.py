"""Backbone loading and encoding (workbench/backbones/openclip.py).

Fast tests use our tiny JSON config with random weights; ``slow`` ones build the real ViT-B-32
architecture (random weights: nothing can be downloaded here).
"""
import time

import huggingface_hub
import open_clip
import pytest
import torch
from safetensors.torch import save_file

from workbench import config
from workbench.backbones import (BackboneError, list_backbones, load_backbone, resolve_model_name,
                                 save_backbone)

TINY = "shapes-clip-tiny"
CONFIG, WEIGHTS = "open_clip_config.json", "open_clip_model.safetensors"


@pytest.fixture(scope="module")
def tiny():
    torch.manual_seed(0)
    return load_backbone(TINY)


@pytest.fixture
def frames():
    return torch.randn(2, 3, 3, 64, 64, generator=torch.Generator().manual_seed(1))  # [B,T,3,H,W]


@pytest.fixture
def offline(monkeypatch):
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)


# --- encoding ---------------------------------------------------------------------------------


@torch.no_grad()
def test_encode_frames_is_encode_images_on_the_flat_batch(tiny, frames):
    per_frame = tiny.encode_frames(frames)
    assert per_frame.shape == (2, 3, tiny.embed_dim)
    assert torch.equal(per_frame, tiny.encode_images(frames.flatten(0, 1)).view(2, 3, -1))
    # clip b, frame t lands at [b, t]: frames are not mixed across clips
    assert torch.allclose(per_frame[1, 2], tiny.encode_images(frames[1, 2:3])[0], atol=1e-5)
    assert torch.allclose(tiny(frames), per_frame)


@torch.no_grad()
def test_encode_frames_normalize(tiny, frames):
    raw, unit = tiny.encode_frames(frames), tiny.encode_frames(frames, normalize=True)
    assert torch.allclose(unit.norm(dim=-1), torch.ones(2, 3), atol=1e-5)
    assert not torch.allclose(raw.norm(dim=-1), torch.ones(2, 3), atol=1e-2)
    assert torch.allclose(unit, raw / raw.norm(dim=-1, keepdim=True), atol=1e-6)


def test_encode_frames_rejects_wrong_rank(tiny, frames):
    with pytest.raises(ValueError, match=r"\[B,T,3,H,W\]"):
        tiny.encode_frames(frames[0])


@torch.no_grad()
def test_encode_text_same_text_same_embedding(tiny):
    texts = ["a red circle moves left", "a blue square grows", "a red circle moves left"]
    emb = tiny.encode_text(texts)
    assert emb.shape == (3, tiny.embed_dim)
    assert torch.equal(emb[0], emb[2])
    assert not torch.allclose(emb[0], emb[1], atol=1e-3)
    assert torch.allclose(tiny.encode_text(texts, normalize=True).norm(dim=-1), torch.ones(3), atol=1e-5)
    assert torch.allclose(tiny.encode_text(texts[0]), emb[:1], atol=1e-5)  # a bare string is one text


def test_tokenize_uses_the_model_context_length(tiny):
    tokens = tiny.tokenize(["a red circle"])
    assert tokens.shape == (1, 32) and tokens.device == tiny.device


def test_describe_reports_the_architecture(tiny):
    info = tiny.describe()
    assert (info["embed_dim"], info["image_size"], info["patch_size"]) == (128, 64, 8)
    assert (info["vision_layers"], info["vision_width"], info["context_length"]) == (6, 192, 32)
    assert info["params"]["total"] == sum(p.numel() for p in tiny.clip.parameters())
    assert info["params"]["visual"] == sum(p.numel() for p in tiny.clip.visual.parameters())
    assert info["weights"] == "random init" and info["pretrained"] is None


def test_logit_scale_is_the_multiplier(tiny):
    assert torch.allclose(tiny.logit_scale, tiny.clip.logit_scale.exp())


def test_preprocess_resizes_to_the_model_input(tiny):
    pytest.importorskip("workbench.data.video")
    frames = torch.randint(0, 256, (2, 4, 3, 80, 100), dtype=torch.uint8)
    out = tiny.preprocess(frames)
    assert out.shape == (2, 4, 3, 64, 64) and out.dtype == torch.float32


# --- names ------------------------------------------------------------------------------------


@pytest.mark.parametrize("name, tag, expected", [
    ("ViT-B-32", "openai", "ViT-B-32-quickgelu"),
    ("ViT-B-32", "laion400m_e31", "ViT-B-32-quickgelu"),
    ("ViT-B-32", "LAION400M-E32", "ViT-B-32-quickgelu"),  # open_clip normalises tags this way
    ("RN50", "openai", "RN50-quickgelu"),
    ("ViT-B-32", "laion2b_s34b_b79k", "ViT-B-32"),
    ("ViT-B-32-quickgelu", "openai", "ViT-B-32-quickgelu"),
    ("ViT-B-32", None, "ViT-B-32"),
])
def test_resolve_model_name(name, tag, expected):
    assert resolve_model_name(name, tag) == expected


def test_every_quickgelu_tag_resolves_to_an_existing_config():
    for model, tag in open_clip.list_pretrained():
        if open_clip.get_pretrained_cfg(model, tag).get("quick_gelu") and not model.endswith("-quickgelu"):
            resolved = resolve_model_name(model, tag)
            assert resolved == model + "-quickgelu" and resolved in open_clip.list_models()


def test_list_backbones_has_ours_first_then_open_clips():
    names = list_backbones()
    assert names[0] == TINY and "ViT-B-32" in names and len(names) == len(set(names))


def test_unknown_model_name_suggests_close_matches():
    with pytest.raises(BackboneError, match="Unknown model name 'ViT-B-23'.*ViT-B-32"):
        load_backbone("ViT-B-23")


def test_unknown_tag_lists_the_known_tags():
    with pytest.raises(BackboneError, match="laion2b_s34b_b79k"):
        load_backbone("ViT-B-32", "laion9b")


def test_missing_weights_file_is_named(tmp_path):
    with pytest.raises(BackboneError, match="Weights file not found.*nothing.safetensors"):
        load_backbone(TINY, str(tmp_path / "nothing.safetensors"))


def test_bad_precision_is_refused():
    with pytest.raises(BackboneError, match="precision"):
        load_backbone(TINY, precision="fp8")


@pytest.mark.skipif(torch.cuda.is_available(), reason="the message is for machines without CUDA")
def test_cuda_without_a_gpu_fails_at_once_with_a_clear_message():
    from workbench.config import get_profile

    with pytest.raises(BackboneError, match="sees no CUDA GPU here: use the cpu profile"):
        load_backbone(TINY, device=get_profile("gpu").device)


# --- offline ----------------------------------------------------------------------------------


@pytest.mark.parametrize("name, tag, config_name", [
    ("ViT-B-32", "laion2b_s34b_b79k", "ViT-B-32"),
    ("ViT-B-32", "openai", "ViT-B-32-quickgelu"),
])
def test_uncached_weights_fail_fast_offline(offline, tmp_path, name, tag, config_name):
    start = time.perf_counter()
    with pytest.raises(BackboneError) as error:
        load_backbone(name, tag, cache_dir=str(tmp_path))
    assert time.perf_counter() - start < 5.0
    message = str(error.value)
    assert f"'{config_name}'" in message and f"'{tag}'" in message  # which weights
    assert str(tmp_path) in message  # where they would be cached
    assert "WORKBENCH_ONLINE=1" in message and "pretrained=" in message  # how to get them


def test_uncached_hub_repo_fails_fast_offline(offline, tmp_path):
    start = time.perf_counter()
    with pytest.raises(BackboneError, match="laion/CLIP-ViT-B-32-laion2B-s34B-b79K.*local-dir:"):
        load_backbone("hf-hub:laion/CLIP-ViT-B-32-laion2B-s34B-b79K", cache_dir=str(tmp_path))
    assert time.perf_counter() - start < 5.0


def test_missing_default_says_run_pretrain(monkeypatch, tmp_path):
    monkeypatch.setattr(config, "MODELS_DIR", tmp_path)
    with pytest.raises(BackboneError, match="workbench pretrain") as error:
        load_backbone()
    assert str(tmp_path / config.DEFAULT_MODEL) in str(error.value)


# --- weights files ----------------------------------------------------------------------------


@torch.no_grad()
def _same_outputs(a, b) -> bool:
    images = torch.randn(2, 3, 64, 64, generator=torch.Generator().manual_seed(2))
    return (torch.equal(a.encode_images(images), b.encode_images(images))
            and torch.equal(a.encode_text(["a star"]), b.encode_text(["a star"])))


def test_safetensors_file_round_trip(tiny, tmp_path):
    path = tmp_path / "tiny.safetensors"
    save_file({k: v.contiguous() for k, v in tiny.clip.state_dict().items()}, str(path))
    again = load_backbone(TINY, str(path))
    assert again.pretrained == str(path)
    assert _same_outputs(tiny, again)
    assert not _same_outputs(tiny, load_backbone(TINY))  # a fresh random init differs


def test_local_dir_round_trip_and_default(tiny, tmp_path, monkeypatch):
    folder = save_backbone(tiny, tmp_path / config.DEFAULT_MODEL)
    assert sorted(p.name for p in folder.iterdir()) == [CONFIG, WEIGHTS]
    again = load_backbone(f"local-dir:{folder}")
    assert _same_outputs(tiny, again)
    assert (again.image_size, again.mean, again.std) == (tiny.image_size, tiny.mean, tiny.std)
    monkeypatch.setattr(config, "MODELS_DIR", tmp_path)
    default = load_backbone()
    assert default.name == f"local-dir:{folder}" and _same_outputs(tiny, default)
    with pytest.raises(BackboneError, match="carries its own weights"):
        load_backbone(f"local-dir:{folder}", "openai")


def test_local_dir_needs_config_and_weights(tiny, tmp_path):
    with pytest.raises(BackboneError, match=f"no {CONFIG}"):
        load_backbone(f"local-dir:{tmp_path}")
    folder = save_backbone(tiny, tmp_path / "m")
    (folder / WEIGHTS).unlink()
    with pytest.raises(BackboneError, match="no weights file"):  # open_clip would go random, quietly
        load_backbone(f"local-dir:{folder}")


@torch.no_grad()
def test_half_precision_export_reloads_close(tiny, tmp_path):
    folder = save_backbone(tiny, tmp_path / "half", dtype=torch.float16)
    again = load_backbone(str(folder))  # a bare folder path means local-dir:
    images = torch.randn(2, 3, 64, 64, generator=torch.Generator().manual_seed(2))
    a, b = tiny.encode_images(images, normalize=True), again.encode_images(images, normalize=True)
    assert again.dtype == torch.float32 and (a * b).sum(-1).min() > 0.999


def test_pickled_checkpoint_loads_weights_only(tiny, tmp_path):
    path = tmp_path / "tiny.pt"
    torch.save({"state_dict": tiny.clip.state_dict()}, path)
    assert _same_outputs(tiny, load_backbone(TINY, str(path)))


class _Payload:
    """Unpickling this would run code (mkdir): weights-only loading must refuse it."""

    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        import os

        return os.mkdir, (str(self.marker),)


def test_untrusted_pickle_is_refused(tmp_path):
    marker = tmp_path / "code-ran"
    path = tmp_path / "evil.bin"
    torch.save({"state_dict": {"x": _Payload(marker)}}, path)
    with pytest.raises(BackboneError, match="(?s)evil.bin.*safetensors"):
        load_backbone(TINY, str(path))
    assert not marker.exists()


def _cosine(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    return torch.nn.functional.cosine_similarity(a.float().cpu(), b.float().cpu(), dim=-1)


@torch.no_grad()
def test_bf16_precision_casts_inputs(tiny, frames, tmp_path):
    path = tmp_path / "tiny.safetensors"
    save_file({k: v.contiguous() for k, v in tiny.clip.state_dict().items()}, str(path))
    half = load_backbone(TINY, str(path), precision="bf16")
    assert half.dtype == torch.bfloat16
    assert _cosine(half.encode_frames(frames), tiny.encode_frames(frames)).min() > 0.98


@pytest.mark.gpu
@torch.no_grad()
def test_cuda_matches_cpu(tiny, frames):
    gpu = load_backbone(TINY, device="cuda")
    gpu.clip.load_state_dict(tiny.clip.state_dict())
    assert gpu.encode_frames(frames).device.type == "cuda"  # CPU inputs are moved
    assert _cosine(gpu.encode_frames(frames), tiny.encode_frames(frames)).min() > 0.999
    assert _cosine(gpu.encode_text(["a red circle"]), tiny.encode_text(["a red circle"])).min() > 0.999


# --- the real ViT-B-32 architecture -----------------------------------------------------------


@pytest.mark.slow
@torch.no_grad()
def test_vit_b_32_architecture():
    bb = load_backbone("ViT-B-32")
    info = bb.describe()
    assert (info["embed_dim"], info["image_size"], info["patch_size"]) == (512, 224, 32)
    assert (info["vision_layers"], info["vision_width"], info["context_length"]) == (12, 768, 77)
    assert bb.encode_frames(torch.randn(1, 2, 3, 224, 224)).shape == (1, 2, 512)
    assert bb.encode_text(["a dog", "a cat"]).shape == (2, 512)
