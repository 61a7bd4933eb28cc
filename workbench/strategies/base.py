"""The interface every transfer strategy implements, and the registry that names them.

A *strategy* (the survey's taxonomy leaf, DESIGN §4) turns a frame-by-frame ILFM
(:class:`~workbench.backbones.openclip.Backbone`) into a :class:`VideoTextModel`: videos and texts
in one normalised joint space. Strategies register by name with :func:`register_strategy`, as
timm registers models, so the CLI, the app, the benchmark and the tests enumerate them.

Two levels of input, so frozen strategies never re-encode frames:
- ``input_level = "features"``: the strategy only reads the *frozen* backbone's per-frame
  features ``[B,T,D]`` (mean pool, post-network heads). Training reads them from the feature
  cache (:mod:`workbench.data.features`) and calls :meth:`VideoTextModel.pool` directly.
- ``input_level = "pixels"``: the strategy needs the frames themselves (side networks, adapters,
  LoRA, prompts, fine-tuning): :meth:`VideoTextModel.encode_video` on ``[B,T,3,H,W]``.

A pixel-level strategy whose own stream reads pixels but whose ILFM features are the frozen
backbone's unchanged (``frozen_frame_features = True``: the extra-models leaf's motion stream, the
distillation student's teacher targets) also implements
:meth:`VideoTextModel.encode_video_with_features`; training then takes those features from the
cache and runs only the strategy's own network on the pixels, at the feature-level budget or the
one the strategy names (``step_budget``: the student's ``Profile.student_train_steps``).

A pixel-level strategy that reads the frozen ILFM *beyond* its output features but never changes it
(``frozen_backbone_pass = True``: side-tuning reads its last blocks' tokens) splits
:meth:`VideoTextModel.encode_video` into :meth:`VideoTextModel.frozen_pass` (everything it reads
from the frozen ILFM) and :meth:`VideoTextModel.encode_frozen` (its own network on that).
Training runs the frozen pass once per training clip before the first step and trains on what it
gave, with the budget it names (``step_budget = "pass_train_steps"``): a frozen strategy never
re-encodes a clip.
"""
from __future__ import annotations

from typing import ClassVar

import torch
import torch.nn.functional as F
from torch import nn

FAMILIES = ("frozen", "adapted")
STRATEGIES: dict[str, type["VideoTextModel"]] = {}


def register_strategy(name: str):
    """Class decorator: ``@register_strategy("st-adapter")`` makes it creatable by name."""

    def wrap(cls: type[VideoTextModel]) -> type[VideoTextModel]:
        if name in STRATEGIES:
            raise ValueError(f"strategy {name!r} registered twice ({STRATEGIES[name]} and {cls})")
        if cls.family not in FAMILIES:
            raise ValueError(f"{cls.__name__}.family must be one of {FAMILIES}")
        cls.name = name
        STRATEGIES[name] = cls
        return cls

    return wrap


def _import_all() -> None:
    """Importing the strategy modules runs their ``@register_strategy`` decorators."""
    from . import adapted, frozen  # noqa: F401


def list_strategies(family: str | None = None) -> list[str]:
    """Registered strategy names, frozen first, in the order the survey presents them."""
    _import_all()
    names = [n for n, cls in STRATEGIES.items() if family in (None, cls.family)]
    return sorted(names, key=lambda n: (FAMILIES.index(STRATEGIES[n].family), STRATEGIES[n].order, n))


def strategy_class(name: str) -> type["VideoTextModel"]:
    _import_all()
    if name not in STRATEGIES:
        import difflib

        close = difflib.get_close_matches(name, STRATEGIES, n=3)
        hint = f" Did you mean {', '.join(close)}?" if close else ""
        raise KeyError(f"unknown strategy {name!r}.{hint} Known: {', '.join(list_strategies())}")
    return STRATEGIES[name]


def create_strategy(name: str, backbone, text_head: bool | None = None, **cfg) -> "VideoTextModel":
    """Build strategy ``name`` around ``backbone``; ``cfg`` overrides its config fields.

    ``text_head`` adds the trainable text-side head (:mod:`workbench.strategies.text_head`);
    None: the strategy's default (``text_head_default``: on for strategies that train something
    and keep the text tower frozen).
    """
    cls = strategy_class(name)
    model = cls(backbone, **cfg)
    if cls.text_head_default if text_head is None else text_head:
        model.add_text_head()
    return model


class VideoTextModel(nn.Module):
    """A video-text model made from an image-language backbone.

    Subclasses set the class attributes and override what they change: usually
    :meth:`pool` (feature-level heads) or :meth:`frame_features` / :meth:`encode_video`
    (pixel-level surgery), and :meth:`encode_text` only when they change the text side.
    The backbone starts frozen; a subclass unfreezes what its strategy trains.
    """

    name: ClassVar[str] = "?"
    family: ClassVar[str] = "frozen"     # "frozen" keeps the ILFM's features; "adapted" changes them
    leaf: ClassVar[str] = "?"            # the survey's leaf, e.g. "post-network tuning"
    reference: ClassVar[str] = ""        # the method it follows, e.g. "ST-Adapter (NeurIPS 2022)"
    temporal: ClassVar[bool] = False     # does it model frame order at all?
    input_level: ClassVar[str] = "pixels"  # "features" or "pixels" (see module docstring)
    frozen_frame_features: ClassVar[bool] = False  # pixels for its own stream, cached ILFM features (docstring)
    frozen_backbone_pass: ClassVar[bool] = False   # reads the frozen ILFM's insides: one pass per clip (docstring)
    order: ClassVar[int] = 50            # position in listings (survey order)
    text_head_default: ClassVar[bool] = False  # create_strategy adds the text-side head (text_head.py)
    lr: ClassVar[float | None] = None           # its rate for the new modules it trains (None: TrainConfig's)
    backbone_lr: ClassVar[float | None] = None  # its rate for the ILFM weights it trains (None: TrainConfig's)
    step_budget: ClassVar[str | None] = None  # the Profile field of its step budget (None: bench.train_config picks)

    def __init__(self, backbone, **cfg) -> None:
        super().__init__()
        if cfg:
            raise TypeError(f"{type(self).__name__} got unknown options {sorted(cfg)}")
        self.backbone = backbone
        for p in backbone.parameters():
            p.requires_grad_(False)
        self.text_head = None

    def add_text_head(self) -> None:
        """Give this strategy the trainable text-side head over frozen text tokens (``text_head.py``)."""
        from .text_head import TextHead

        self.text_head = TextHead.for_backbone(self.backbone)

    # -- the four calls of DESIGN §2 -------------------------------------------------------
    def frame_features(self, frames: torch.Tensor) -> torch.Tensor:
        """Per-frame features in the joint space: [B,T,3,H,W] -> [B,T,D] (not normalised)."""
        return self.backbone.encode_frames(frames)

    def encode_video(self, frames: torch.Tensor) -> torch.Tensor:
        """[B,T,3,H,W] -> [B,D], L2-normalised."""
        return self.pool(self.frame_features(frames))

    def pool(self, features: torch.Tensor) -> torch.Tensor:
        """Per-frame features -> one normalised video embedding: [B,T,D] -> [B,D].

        Sorting along T before averaging makes the mean exactly permutation-invariant in floating
        point, so a clip and its time-reversed twin get bit-identical embeddings (pure mean pooling
        is order-blind in theory; this makes it so in the measurements too).
        """
        return F.normalize(features.sort(dim=1).values.mean(dim=1), dim=-1)

    def encode_text(self, texts: list[str]) -> torch.Tensor:
        """list[str] -> [N,D], L2-normalised."""
        if self.text_head is not None:
            return self.text_head(self.backbone, texts)
        return self.backbone.encode_text(texts, normalize=True)

    def trainable_parameters(self) -> list[nn.Parameter]:
        """What this strategy changes; everything else stays as the ILFM had it."""
        return [p for p in self.parameters() if p.requires_grad]

    def encode_video_with_features(self, frames: torch.Tensor, features: torch.Tensor) -> torch.Tensor:
        """[B,T,3,H,W] frames and their frozen frame features [B,T,D] -> [B,D] (strategies with
        ``frozen_frame_features``; the others never get here)."""
        raise NotImplementedError(f"{self.name} does not read cached frame features beside its pixels")

    def frozen_pass(self, frames: torch.Tensor) -> tuple[torch.Tensor, ...]:
        """[B,T,3,H,W] frames -> what this strategy reads from the frozen ILFM, each tensor with
        the clips along dim 0 (``frozen_backbone_pass`` strategies; the others never get here)."""
        raise NotImplementedError(f"{self.name} has no separate frozen pass")

    def encode_frozen(self, frozen: tuple[torch.Tensor, ...]) -> torch.Tensor:
        """:meth:`frozen_pass`'s output -> [B,D] normalised video embeddings."""
        raise NotImplementedError(f"{self.name} has no separate frozen pass")

    def forward(self, inputs: torch.Tensor | tuple[torch.Tensor, ...], texts: list[str] | None = None,
                features: torch.Tensor | None = None):
        """Training entry (so DDP sees every trainable parameter used).

        ``inputs`` are frames [B,T,3,H,W]; for feature-level strategies, frozen frame features
        [B,T,D]; for ``frozen_backbone_pass`` ones, a tuple: their :meth:`frozen_pass` computed
        beforehand. ``features``: the frames' cached frozen features, for ``frozen_frame_features``
        strategies. Returns the video embeddings, and with ``texts`` also the text embeddings.
        """
        if isinstance(inputs, tuple):
            video = self.encode_frozen(inputs)
        elif inputs.dim() == 3:
            video = self.pool(inputs)
        elif features is not None:
            video = self.encode_video_with_features(inputs, features)
        else:
            video = self.encode_video(inputs)
        return video if texts is None else (video, self.encode_text(texts))

    def is_pretrained_weight(self, name: str) -> bool:
        """Is trainable parameter ``name`` one of the ILFM's own pretrained weights?

        Those get the small ``backbone_lr`` in training; new modules (heads, adapters, prompts)
        get the full ``lr``. LoRA factors live inside the ILFM's copy and count as its weights
        here (they are stable at ``backbone_lr`` ~5e-4, not at a head's 5e-3). Strategies that
        tune a small subset of the ILFM (biases, LayerNorms) override this: such subsets want a
        new-module rate.
        """
        return name.startswith("backbone.")

    def auxiliary_loss(self, inputs: torch.Tensor, video: torch.Tensor,
                       features: torch.Tensor | None = None) -> torch.Tensor | None:
        """A strategy's own training term added to the contrastive loss (None: nothing).

        ``inputs`` and ``features`` are what :meth:`forward` got (``features``: the batch's cached
        frozen frame features, for ``frozen_frame_features`` strategies), ``video`` its output;
        knowledge distillation uses it to pull the student toward its teacher.
        """
        return None

    # -- shared helpers -------------------------------------------------------------------
    @property
    def text_is_frozen(self) -> bool:
        """True when text embeddings never change during training (so they can be cached)."""
        return not any(p.requires_grad for p in self.backbone.clip.transformer.parameters()) and not any(
            p.requires_grad for n, p in self.named_parameters() if n.startswith("text_"))

    @property
    def logit_scale(self) -> float:
        """The ILFM's softmax temperature (kept fixed: strategies learn features, not it)."""
        return float(self.backbone.clip.logit_scale.exp().clamp(max=100))

    def parameter_counts(self) -> dict[str, int]:
        trainable = {id(p): p.numel() for p in self.trainable_parameters()}
        total = {id(p): p.numel() for p in self.parameters()}
        return {"trainable": sum(trainable.values()), "total": sum(total.values())}

    def similarity(self, video: torch.Tensor, text: torch.Tensor) -> torch.Tensor:
        """Cosine similarity matrix of normalised embeddings: [V,D] x [N,D] -> [V,N]."""
        return video @ text.t()

    def describe(self) -> dict:
        counts = self.parameter_counts()
        return {"strategy": self.name, "family": self.family, "leaf": self.leaf,
                "reference": self.reference, "temporal": self.temporal,
                "input_level": self.input_level, "text_head": self.text_head is not None, **counts}


def flops_per_clip(model: VideoTextModel, num_frames: int) -> int:
    """Forward FLOPs of one clip's video embedding, counted by PyTorch's FlopCounterMode.

    Counted with gradients enabled: under ``no_grad`` the fused attention path is taken and the
    counter misses it (NOTES.md). Feature-level strategies count the frozen backbone too, since
    a new video still has to be encoded once.
    """
    from torch.utils.flop_counter import FlopCounterMode

    size = model.backbone.image_size
    frames = torch.zeros(1, num_frames, 3, size, size, device=model.backbone.device)
    was_training = model.training
    model.eval()
    with torch.enable_grad(), FlopCounterMode(display=False) as counter:
        model.encode_video(frames)
    model.train(was_training)
    return int(counter.get_total_flops())
