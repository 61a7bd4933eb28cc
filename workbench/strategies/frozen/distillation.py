"""Knowledge distillation: a small student video encoder taught by the frozen ILFM.

The survey's "knowledge distillation" leaf (Li et al., arXiv 2510.10671, 2025; the VideoDistill
idea of a video model taught by a frozen image-language teacher): the ILFM's
visual knowledge is kept as a *target*, not as the model. A light (2+1)-D CNN (factorised
spatial 3x3 then temporal k x 1 x 1 convolutions, Tran et al., CVPR 2018) reads area-downsampled
frames and learns, with two losses,

    loss = InfoNCE(student video, ILFM text)                 (the training loop's contrastive loss)
         + distill_weight * (1 - cos(student video, teacher video))   (:meth:`auxiliary_loss`)

where the teacher is the frozen ILFM's mean-pooled frame features, or any trained strategy passed
as ``teacher=`` (e.g. a ``post-transformer``, so the student also inherits its sense of order).
On normalised embeddings MSE is ``2 * (1 - cos)``, so the cosine form covers both.

At inference the student *replaces* the ILFM's image tower (``encode_video`` never runs the
backbone); texts are still encoded by the ILFM's frozen text tower. :func:`student_speedup`
measures what that buys.

The training loop calls ``auxiliary_loss(inputs, video, features)`` where a strategy defines it
(see the method); the teacher is consulted there, under ``no_grad``. The frozen ILFM never runs
in training: the default teacher's target is the mean of the clip's frozen frame features, which
the loop reads from the feature cache (``frozen_frame_features``), and so is a feature-level
teacher's (e.g. ``post-transformer``); only a pixel-level teacher runs on the frames. The student
is then the step's whole cost, so it has a budget of its own (``Profile.student_train_steps``,
named by ``step_budget``).
"""
from __future__ import annotations

import math
import time
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from ..base import VideoTextModel, register_strategy


@dataclass
class StudentConfig:
    input_size: int = 64            # frames are area-downsampled to input_size x input_size pixels
    channels: tuple[int, ...] = (24, 48, 96, 192)  # stage widths; each stage halves height and width
    kernel_t: int = 3               # frames seen by each stage's temporal convolution
    distill_weight: float = 1.0     # weight of (1 - cos(student, teacher)) next to the contrastive loss


def _norm(channels: int) -> nn.GroupNorm:
    """GroupNorm: independent of batch size (a batch of one clip trains the same)."""
    return nn.GroupNorm(math.gcd(8, channels), channels)


class StudentEncoder(nn.Module):
    """(2+1)-D CNN: frames [B,T,3,H,W] -> per-frame features [B,T,D] (time is never strided)."""

    def __init__(self, embed_dim: int, cfg: StudentConfig) -> None:
        super().__init__()
        self.input_size = cfg.input_size
        layers: list[nn.Module] = []
        for c_in, c_out in zip((3,) + tuple(cfg.channels[:-1]), cfg.channels):
            layers += [nn.Conv3d(c_in, c_out, (1, 3, 3), stride=(1, 2, 2), padding=(0, 1, 1)),  # space
                       _norm(c_out), nn.GELU(),
                       nn.Conv3d(c_out, c_out, (cfg.kernel_t, 1, 1), padding="same"),          # time
                       _norm(c_out), nn.GELU()]
        self.stages = nn.Sequential(*layers)
        self.out_norm = nn.LayerNorm(cfg.channels[-1])
        self.proj = nn.Linear(cfg.channels[-1], embed_dim)

    def forward(self, frames: torch.Tensor) -> torch.Tensor:
        b, t = frames.shape[:2]
        small = F.adaptive_avg_pool2d(frames.flatten(0, 1).to(self.proj.weight.dtype), self.input_size)
        x = small.view(b, t, 3, self.input_size, self.input_size).transpose(1, 2)   # [B,3,T,s,s]
        x = x.contiguous(memory_format=torch.channels_last_3d)   # 15 % faster convolutions on CPU
        x = self.stages(x).mean(dim=(3, 4)).transpose(1, 2)                         # [B,T,C]
        return self.proj(self.out_norm(x))                                           # [B,T,D]


@register_strategy("distill-student")
class DistillStudent(VideoTextModel):
    """A student video encoder in the ILFM's joint space.

    ``teacher``: an optional trained :class:`VideoTextModel` on the same ILFM whose video
    embeddings the student imitates (default: the frozen ILFM's mean-pooled frame features). It is
    consulted under ``no_grad`` and is deliberately *not* a submodule: it is not trained, saved,
    counted or moved by ``.to()`` — keep it on the device the training inputs are on.
    """

    family = "frozen"
    leaf = "knowledge distillation"
    reference = "(2+1)-D CNN student distilled from frozen CLIP (VideoDistill idea; R(2+1)D, Tran et al., CVPR 2018)"
    temporal = True
    input_level = "pixels"
    frozen_frame_features = True        # the teacher's targets come from the feature cache
    step_budget = "student_train_steps"  # the student's (2+1)-D CNN is the step's cost, not a head's
    order = 30

    def __init__(self, backbone, teacher: VideoTextModel | None = None, **cfg) -> None:
        super().__init__(backbone)
        self.cfg = StudentConfig(**cfg)
        if teacher is not None and teacher.backbone.embed_dim != backbone.embed_dim:
            raise ValueError(f"distill-student: the teacher's joint space has {teacher.backbone.embed_dim} "
                             f"dimensions, the ILFM's {backbone.embed_dim}; use a teacher built on this ILFM")
        object.__setattr__(self, "teacher", teacher)  # not a submodule (see the class docstring)
        self.student = StudentEncoder(backbone.embed_dim, self.cfg).to(backbone.device)

    def frame_features(self, frames: torch.Tensor) -> torch.Tensor:
        """The student's per-frame features [B,T,D] (order-aware: temporal convolutions mix frames)."""
        return self.student(frames)

    def encode_video_with_features(self, frames: torch.Tensor, features: torch.Tensor) -> torch.Tensor:
        """The student reads the pixels only: the frozen features are its teacher's, not its input."""
        return self.encode_video(frames)

    @torch.no_grad()
    def teacher_embedding(self, frames: torch.Tensor, features: torch.Tensor | None = None) -> torch.Tensor:
        """The target: [B,T,3,H,W] -> [B,D] normalised, from the teacher or the frozen ILFM.

        ``features``: the frames' frozen ILFM features [B,T,D] when known (the cache): then neither
        the ILFM nor a feature-level teacher runs on the frames, and the target is the same.
        """
        if self.teacher is None:
            return self.pool(features if features is not None else self.backbone.encode_frames(frames))
        if features is not None and self.teacher.input_level == "features":
            return self.teacher.pool(features)
        return self.teacher.encode_video(frames)

    def auxiliary_loss(self, inputs: torch.Tensor, video: torch.Tensor,
                       features: torch.Tensor | None = None) -> torch.Tensor:
        """The distillation term the training loop adds to its contrastive loss.

        inputs: the batch's preprocessed frames [B,T,3,H,W]; video: the student's normalised
        embeddings [B,D] from ``forward`` (so gradients reach the student through the wrapped,
        e.g. DDP, model); features: their cached frozen frame features, if the loop has them.
        Returns ``distill_weight * mean(1 - cos(video, teacher))``.
        """
        target = self.teacher_embedding(inputs, features).to(video.dtype)
        return self.cfg.distill_weight * (1 - F.cosine_similarity(video, target, dim=-1)).mean()


@torch.no_grad()
def student_speedup(model: DistillStudent, num_frames: int, batch_size: int = 8,
                    repeats: int = 3) -> dict[str, float]:
    """Clips per second of ``encode_video``: the student against its teacher, on the model's device.

    The teacher is the one the student learns from (``model.teacher``, or the frozen ILFM with mean
    pooling). Each side runs once to warm up, then ``repeats`` timed batches of ``batch_size``
    clips of ``num_frames`` frames. Returns {"student_clips_per_s", "teacher_clips_per_s", "speedup"}.
    """
    backbone = model.backbone
    size = backbone.image_size
    frames = torch.randn(batch_size, num_frames, 3, size, size, device=backbone.device, dtype=backbone.dtype)
    was_training = model.training
    model.eval()

    def clips_per_s(encode) -> float:
        encode(frames)
        if frames.is_cuda:
            torch.cuda.synchronize()
        start = time.perf_counter()
        for _ in range(repeats):
            encode(frames)
        if frames.is_cuda:
            torch.cuda.synchronize()
        return repeats * batch_size / (time.perf_counter() - start)

    student = clips_per_s(model.encode_video)
    teacher = clips_per_s(model.teacher_embedding)
    model.train(was_training)
    return {"student_clips_per_s": student, "teacher_clips_per_s": teacher, "speedup": student / teacher}
