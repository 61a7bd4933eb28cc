"""Image-language foundation models (ILFMs) from open_clip, seen frame by frame.

``load_backbone`` turns any open_clip model into a :class:`Backbone`: a CLIP that encodes videos
as a stack of frames (``[B,T,3,H,W] -> [B,T,D]``) and texts (``list[str] -> [N,D]``), and keeps
the real ``open_clip.CLIP`` at ``.clip`` for the strategies that operate on it (adapters, LoRA,
prompts). Names take every form open_clip knows (see ``load_backbone``), plus our own JSON
configs in ``backbones/configs/`` and the embedded default, the tiny ShapesWorld CLIP (DESIGN §3).

Reference: Radford et al., *Learning Transferable Visual Models From Natural Language
Supervision* (ICML 2021); Cherti et al., *Reproducible scaling laws for contrastive
language-image learning* (CVPR 2023) for open_clip.
"""
from __future__ import annotations

import contextlib
import copy
import difflib
import logging
import os
import pickle
from functools import lru_cache
from pathlib import Path

import torch
from torch import nn

from workbench import config
from workbench.io import atomic_write

config.go_offline()  # before open_clip imports huggingface_hub: missing weights fail in seconds

import huggingface_hub  # noqa: E402
import open_clip  # noqa: E402
from open_clip.constants import HF_SAFE_WEIGHTS_NAME, HF_WEIGHTS_NAME  # noqa: E402

LOCAL_DIR = "local-dir:"
HF_HUB = "hf-hub:"
QUICKGELU_SUFFIX = "-quickgelu"
PRECISIONS = ("fp32", "fp16", "bf16", "pure_fp16", "pure_bf16")
CONFIG_FILE = "open_clip_config.json"  # open_clip's local-dir / hf-hub layout
WEIGHTS_FILE = HF_SAFE_WEIGHTS_NAME    # "open_clip_model.safetensors"
LOCAL_DIR_WEIGHTS = (".safetensors", ".bin", ".pth")  # what open_clip looks for in a local-dir folder
_UNPICKLE_HINT = (". The file was read with torch.load(weights_only=True), which refuses pickled code; "
                  "if you trust it, convert it to .safetensors")


class BackboneError(RuntimeError):
    """A backbone could not be loaded; the message says which one, why, and what to do."""


class Backbone(nn.Module):
    """A CLIP that reads videos frame by frame.

    Attributes: ``name`` and ``pretrained`` (``load_backbone(bb.name, bb.pretrained)`` loads the
    same model again), ``embed_dim`` (joint space size D), ``image_size`` (pixels a frame is
    resized to), ``mean``/``std``/``resize_mode`` (the weights' preprocessing), ``model_cfg``
    (open_clip's architecture dict), ``clip`` (the real ``open_clip.CLIP``) and ``tokenizer``.
    """

    def __init__(self, clip: nn.Module, tokenizer, name: str, pretrained: str | None,
                 model_cfg: dict) -> None:
        super().__init__()
        self.clip = clip
        self.tokenizer = tokenizer
        self.name = name
        self.pretrained = pretrained
        self.model_cfg = model_cfg
        self.embed_dim: int = model_cfg["embed_dim"]
        pp = open_clip.get_model_preprocess_cfg(clip)
        self.image_size: int = _square_size(pp["size"], name)
        self.mean: tuple[float, ...] = tuple(pp["mean"])
        self.std: tuple[float, ...] = tuple(pp["std"])
        self.resize_mode: str = pp.get("resize_mode", "shortest")

    @property
    def device(self) -> torch.device:
        return next(self.clip.parameters()).device

    @property
    def dtype(self) -> torch.dtype:
        """The dtype image inputs are cast to: the image tower's first conv / linear weights
        (with ``precision="bf16"``/``"fp16"`` open_clip keeps embeddings and norms in fp32)."""
        layer = next(m for m in self.clip.visual.modules() if isinstance(m, (nn.Conv2d, nn.Linear)))
        return layer.weight.dtype

    @property
    def logit_scale(self) -> torch.Tensor:
        """The similarity multiplier ``exp(clip.logit_scale)`` (about 100 for trained CLIPs)."""
        return self.clip.logit_scale.exp()

    def forward(self, frames: torch.Tensor) -> torch.Tensor:
        return self.encode_frames(frames)

    def encode_images(self, images: torch.Tensor, normalize: bool = False) -> torch.Tensor:
        """Preprocessed images ``[N,3,H,W]`` -> embeddings ``[N,D]`` (unit-norm if ``normalize``)."""
        if images.ndim != 4:
            raise ValueError(f"encode_images expects [N,3,H,W], got shape {tuple(images.shape)}")
        return self.clip.encode_image(images.to(self.device, self.dtype), normalize=normalize)

    def encode_frames(self, frames: torch.Tensor, normalize: bool = False) -> torch.Tensor:
        """Preprocessed frames ``[B,T,3,H,W]`` -> per-frame embeddings ``[B,T,D]``.

        All B*T frames go through the image tower as one batch. The result is NOT normalised
        unless ``normalize=True``: pooling strategies average raw features, then normalise.
        """
        if frames.ndim != 5:
            raise ValueError(f"encode_frames expects [B,T,3,H,W], got shape {tuple(frames.shape)}")
        b, t = frames.shape[:2]
        features = self.encode_images(frames.flatten(0, 1), normalize=normalize)  # [B*T,D]
        return features.view(b, t, -1)

    def tokenize(self, texts: str | list[str]) -> torch.Tensor:
        """Texts -> token ids ``[N, context_length]`` on the model's device."""
        texts = [texts] if isinstance(texts, str) else list(texts)
        return self.tokenizer(texts).to(self.device)

    def encode_text(self, texts: str | list[str], normalize: bool = False) -> torch.Tensor:
        """Texts -> embeddings ``[N,D]`` (unit-norm if ``normalize``)."""
        return self.clip.encode_text(self.tokenize(texts), normalize=normalize)

    def preprocess(self, frames: torch.Tensor) -> torch.Tensor:
        """uint8 frames ``[...,3,H,W]`` -> float ``[...,3,S,S]`` resized and normalised for this model."""
        from workbench.data.video import preprocess_frames

        return preprocess_frames(frames, self.image_size, self.mean, self.std, self.resize_mode)

    def describe(self) -> dict:
        """What this model is, for the app's Model tab and model cards."""
        visual = self.clip.visual
        transformer = getattr(visual, "transformer", None)
        return {
            "name": self.name,
            "pretrained": self.pretrained,
            "weights": _weights_source(self.name, self.pretrained),
            "params": _tower_params(self.clip),
            "embed_dim": self.embed_dim,
            "image_size": self.image_size,
            "patch_size": _first(getattr(visual, "patch_size", None)),
            "vision_layers": getattr(transformer, "layers", None),
            "vision_width": getattr(transformer, "width", None),
            "context_length": self.clip.context_length,
            "vocab_size": self.clip.vocab_size,
            "mean": self.mean,
            "std": self.std,
        }


def _square_size(size, name: str) -> int:
    if isinstance(size, int):
        return size
    if size[0] != size[1]:
        raise BackboneError(f"{name}: non-square input size {tuple(size)} is not supported")
    return int(size[0])


def _first(value):
    return value[0] if isinstance(value, (tuple, list)) else value


def _tower_params(clip: nn.Module) -> dict[str, int]:
    counts = {"visual": 0, "text": 0, "other": 0}
    for name, p in clip.named_parameters():
        tower = "visual" if name.startswith("visual.") else "other" if name.startswith("logit_") else "text"
        counts[tower] += p.numel()
    counts["total"] = sum(counts.values())
    return counts


def _weights_source(name: str, pretrained: str | None) -> str:
    if pretrained:
        return pretrained
    if name.startswith((LOCAL_DIR, HF_HUB)):
        return name
    return "random init"


# --- names -----------------------------------------------------------------------------------


@lru_cache(maxsize=None)
def _register_configs() -> None:
    """Make our JSON configs (``backbones/configs/*.json``) known to open_clip, once."""
    open_clip.add_model_config(config.CONFIGS_DIR)


def list_backbones() -> list[str]:
    """Every model name ``load_backbone`` accepts without a schema: ours first, then open_clip's."""
    _register_configs()
    ours = sorted(p.stem for p in Path(config.CONFIGS_DIR).glob("*.json"))
    return ours + [m for m in open_clip.list_models() if m not in ours]


def describe_config(name: str) -> dict:
    """What an open_clip architecture is, without its weights: parameters per tower, input and
    patch size, depth and width of each tower, the joint-space size, its fp16 size, and the
    pretrained tags open_clip knows for it. Built on PyTorch's ``meta`` device: no memory, no
    download, no weights read (0.2 s for ViT-L)."""
    _register_configs()
    _check_known_model(name)
    cfg = open_clip.get_model_config(name)
    with _quiet_random_init(), torch.device("meta"):   # parameters created on meta: no init work
        clip = open_clip.create_model(name, device="meta")
    params = _tower_params(clip)
    vision, text = cfg["vision_cfg"], cfg["text_cfg"]
    return {"name": name, "embed_dim": cfg["embed_dim"], "image_size": _first(vision.get("image_size")),
            "patch_size": _first(vision.get("patch_size")), "vision_layers": vision.get("layers"),
            "vision_width": vision.get("width"), "text_layers": text.get("layers"),
            "text_width": text.get("width"), "context_length": text.get("context_length"),
            "params": params, "fp16_mb": round(params["total"] * 2 / 2 ** 20),
            "tags": open_clip.list_pretrained_tags_by_model(name)}


@lru_cache(maxsize=None)
def _quickgelu_pairs() -> frozenset[tuple[str, str]]:
    """(model, tag) pairs whose weights were trained with QuickGELU, from open_clip's table."""
    return frozenset((m, t) for m, t in open_clip.list_pretrained() if m.endswith(QUICKGELU_SUFFIX))


def _clean_tag(tag: str) -> str:
    return tag.lower().replace("-", "_")  # how open_clip normalises tags


def resolve_model_name(name: str, tag: str | None) -> str:
    """The config that matches the weights: ``("ViT-B-32", "openai") -> "ViT-B-32-quickgelu"``.

    OpenAI, LAION-400M, YFCC, CC12M, MetaCLIP and DFN weights were trained with QuickGELU; loading
    them into a GELU config runs but silently degrades every output. Other names pass unchanged.
    """
    if not tag or name.endswith(QUICKGELU_SUFFIX):
        return name
    quick = name + QUICKGELU_SUFFIX
    return quick if (quick, _clean_tag(tag)) in _quickgelu_pairs() else name


def _default_spec() -> str:
    folder = Path(config.MODELS_DIR) / config.DEFAULT_MODEL
    if not (folder / CONFIG_FILE).is_file() or not (folder / WEIGHTS_FILE).is_file():
        raise BackboneError(
            f"The embedded default model {config.DEFAULT_MODEL!r} is not in {folder} "
            f"(expected {CONFIG_FILE} and {WEIGHTS_FILE}). Build it once with `workbench pretrain`, "
            f"or name a model: load_backbone('ViT-B-32', 'laion2b_s34b_b79k')."
        )
    return f"{LOCAL_DIR}{folder}"


def _check_known_model(name: str) -> None:
    known = list_backbones()
    if name in known:
        return
    close = difflib.get_close_matches(name, known, n=5, cutoff=0.5)
    hint = f" Did you mean: {', '.join(close)}?" if close else ""
    raise BackboneError(
        f"Unknown model name {name!r}.{hint} Use a name from list_backbones(), "
        f"'local-dir:/path/to/folder', 'hf-hub:org/repo', or a folder holding {CONFIG_FILE}."
    )


def _looks_like_path(value: str) -> bool:
    suffixes = (".safetensors", ".bin", ".pt", ".pth", ".npz")
    return os.sep in value or "/" in value or Path(value).suffix in suffixes


def _check_pretrained(name: str, pretrained: str) -> None:
    if os.path.isfile(pretrained):
        return
    if _looks_like_path(pretrained):
        raise BackboneError(f"Weights file not found: {pretrained}")
    if not open_clip.is_pretrained_cfg(name, pretrained):
        tags = open_clip.list_pretrained_tags_by_model(name)
        raise BackboneError(
            f"Unknown pretrained tag {pretrained!r} for {name}. Known tags: {tags or 'none'}; "
            f"or pass a weights file: pretrained='/path/to/weights.safetensors'."
        )


# --- offline cache checks --------------------------------------------------------------------


def _hub_offline() -> bool:
    return bool(huggingface_hub.constants.HF_HUB_OFFLINE)


def _hub_cache_folder(repo_id: str, cache_dir: str | None) -> Path:
    root = Path(cache_dir or huggingface_hub.constants.HF_HUB_CACHE)
    return root / ("models--" + repo_id.replace("/", "--"))


def _hub_cached(repo_id: str, filenames: list[str], cache_dir: str | None) -> bool:
    return any(
        isinstance(huggingface_hub.try_to_load_from_cache(repo_id, f, cache_dir=cache_dir), str)
        for f in filenames
    )


def _weight_candidates(filename: str) -> list[str]:
    """The file open_clip asks the Hub for, preceded by the safetensors twins it tries first."""
    stem, suffix = os.path.splitext(filename)
    safe = [HF_SAFE_WEIGHTS_NAME] if filename == HF_WEIGHTS_NAME else []
    if suffix in (".bin", ".pth") and filename != HF_WEIGHTS_NAME:
        safe.append(stem + ".safetensors")
    return safe + [filename]


def _how_to_get(what: str, where: str, retry: str, alternative: str) -> BackboneError:
    return BackboneError(
        f"{what} are not cached and downloads are off (HF_HUB_OFFLINE=1). "
        f"They would be cached in: {where}. To get them, run once with network access and "
        f"WORKBENCH_ONLINE=1 (e.g. WORKBENCH_ONLINE=1 python -c \"import workbench.backbones as b; "
        f"b.load_backbone({retry})\"), or {alternative}."
    )


_FILE_ALTERNATIVE = ("download the weights file on another machine and pass "
                     "pretrained='/path/to/open_clip_model.safetensors'")


def _ensure_tag_cached(name: str, tag: str, cache_dir: str | None) -> None:
    """Raise at once, offline, when a tag's weights are not on disk (instead of retrying)."""
    if not _hub_offline():
        return
    cfg = open_clip.get_pretrained_cfg(name, tag)
    if cfg.get("file"):
        return
    what, retry = f"Weights for model {name!r} with tag {tag!r}", f"{name!r}, {tag!r}"
    if cfg.get("hf_hub"):
        repo_id, filename = os.path.split(cfg["hf_hub"])  # "org/repo/" or "org/repo/file.bin"
        filename = filename or HF_WEIGHTS_NAME
        if not _hub_cached(repo_id, _weight_candidates(filename), cache_dir):
            raise _how_to_get(what, f"{_hub_cache_folder(repo_id, cache_dir)} (Hugging Face repo {repo_id})",
                              retry, _FILE_ALTERNATIVE)
    else:
        target = Path(cache_dir or Path.home() / ".cache" / "clip") / os.path.basename(cfg["url"])
        if not target.is_file():
            raise _how_to_get(what, str(target), retry, _FILE_ALTERNATIVE)


def _ensure_hub_repo_cached(repo_id: str, cache_dir: str | None) -> None:
    if _hub_offline() and not (
        _hub_cached(repo_id, [CONFIG_FILE], cache_dir)
        and _hub_cached(repo_id, _weight_candidates(HF_WEIGHTS_NAME), cache_dir)
    ):
        raise _how_to_get(f"Config and weights of Hugging Face repo {repo_id!r}",
                          str(_hub_cache_folder(repo_id, cache_dir)), repr(HF_HUB + repo_id),
                          f"put its {CONFIG_FILE} and weights in a folder and load 'local-dir:/path/to/folder'")


# --- loading ---------------------------------------------------------------------------------


class _DropRandomInitNotice(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        return not record.getMessage().startswith("No pretrained weights loaded")


@contextlib.contextmanager
def _quiet_random_init():
    """Random init is asked for (``pretrained=None``) and documented: no warning for it."""
    root, notice = logging.getLogger(), _DropRandomInitNotice()
    root.addFilter(notice)
    try:
        yield
    finally:
        root.removeFilter(notice)


def _check_local_dir(folder: Path) -> None:
    if not (folder / CONFIG_FILE).is_file():
        raise BackboneError(f"local-dir:{folder}: no {CONFIG_FILE} in that folder")
    if not any(path.suffix in LOCAL_DIR_WEIGHTS for path in folder.iterdir()):
        # open_clip would quietly initialise random weights; a folder is meant to carry them
        kinds = ", ".join(LOCAL_DIR_WEIGHTS)
        raise BackboneError(f"local-dir:{folder}: no weights file ({kinds}) in that folder")


def _resolve(name: str | None, pretrained: str | None, cache_dir: str | None) -> tuple[str, str | None]:
    """Validate a (name, pretrained) pair and return what open_clip should be asked for."""
    if name is None:
        return _default_spec(), None
    if os.path.isdir(name):
        name = LOCAL_DIR + name
    if name.startswith((LOCAL_DIR, HF_HUB)):
        if pretrained:
            raise BackboneError(f"{name} carries its own weights; call it with pretrained=None")
        if name.startswith(LOCAL_DIR):
            _check_local_dir(Path(name[len(LOCAL_DIR):]))
        else:
            _ensure_hub_repo_cached(name[len(HF_HUB):], cache_dir)
        return name, None
    name = name.replace("/", "-")  # "ViT-B/32" is how papers write "ViT-B-32"
    _check_known_model(name)
    if pretrained is None:
        return name, None
    _check_pretrained(name, pretrained)
    if os.path.isfile(pretrained):
        return name, pretrained
    name = resolve_model_name(name, pretrained)
    _ensure_tag_cached(name, pretrained, cache_dir)
    return name, pretrained


def load_backbone(name: str | None = None, pretrained: str | None = None,
                  device: str | torch.device = "cpu", precision: str = "fp32",
                  cache_dir: str | None = None) -> Backbone:
    """Load an open_clip model as a :class:`Backbone` (in eval mode).

    ``name`` forms:
      - ``None``: the embedded default, ``local-dir:{MODELS_DIR}/shapes-clip-tiny``.
      - an open_clip or workbench config name (``list_backbones()``), with ``pretrained`` one of
        its tags (``"ViT-B-32", "laion2b_s34b_b79k"``; OpenAI / LAION-400M tags get the
        ``-quickgelu`` config automatically), a weights file (``.safetensors``, or ``.bin`` /
        ``.pt`` read with ``torch.load(weights_only=True)``, which refuses arbitrary pickles),
        or ``None`` for randomly initialised weights (e.g. ``load_backbone("shapes-clip-tiny")``
        before pretraining).
      - ``local-dir:/path/to/folder`` (or just the folder): ``open_clip_config.json`` + weights.
      - ``hf-hub:org/repo``: an open_clip repository on the Hugging Face Hub.
    Offline (the default, ``HF_HUB_OFFLINE=1``), weights that are not cached raise
    :class:`BackboneError` at once, saying where they would be cached and how to get them.
    """
    if precision not in PRECISIONS:
        raise BackboneError(f"Unknown precision {precision!r}; choose one of {PRECISIONS}")
    if torch.device(device).type == "cuda" and not torch.cuda.is_available():
        raise BackboneError(f"device {str(device)!r} asked for, but PyTorch sees no CUDA GPU here: "
                            "use the cpu profile (--profile cpu, WORKBENCH_PROFILE=cpu) or device='cpu'")
    _register_configs()
    spec, weights = _resolve(name, pretrained, cache_dir)
    try:
        with _quiet_random_init():
            clip = open_clip.create_model(
                spec, pretrained=weights, device=device, precision=precision, cache_dir=cache_dir,
                weights_only=True, require_pretrained=weights is not None or spec.startswith(HF_HUB),
            )
        tokenizer = open_clip.get_tokenizer(spec, cache_dir=cache_dir)
        model_cfg = copy.deepcopy(open_clip.get_model_config(spec))
    except Exception as error:  # every failure below open_clip: name the model and the reason
        source = f" with weights {weights!r}" if weights else ""
        hint = _UNPICKLE_HINT if isinstance(error, pickle.UnpicklingError) else ""
        reason = f"{type(error).__name__}: {error}{hint}"
        raise BackboneError(f"Could not load {spec}{source}: {reason}") from error
    return Backbone(clip, tokenizer, spec, weights, model_cfg).eval()


def save_backbone(backbone: Backbone, folder: str | Path, dtype: torch.dtype | None = None) -> Path:
    """Write ``backbone`` in open_clip's local-dir layout, for ``load_backbone("local-dir:<folder>")``.

    Files are written atomically (temp file + rename). ``dtype`` (e.g. ``torch.float16``) halves
    the file; weights are cast back to the model's precision on load.
    """
    from open_clip.push_to_hf_hub import save_config_for_hf
    from safetensors.torch import save_file

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    state = {k: (v.to(dtype) if dtype and v.is_floating_point() else v).detach().cpu().contiguous()
             for k, v in backbone.clip.state_dict().items()}
    atomic_write(folder / WEIGHTS_FILE, lambda path: save_file(state, path))
    atomic_write(folder / CONFIG_FILE,  # {"model_cfg": ..., "preprocess_cfg": ...}, as open_clip reads it
                  lambda path: save_config_for_hf(backbone.clip, Path(path), backbone.model_cfg))
    return folder

