"""Run by tests/test_train.py, once as one plain process and once under `torchrun --nproc_per_node 2`:
the same training, then each process writes rank{r}.json and the main one trainable.safetensors.
Then side-tuning's frozen pass over 5 clips in batches of 2, shared out across the processes:
each writes what it received (rank{r}-pass.safetensors) and how many clips it encoded.

The model exercises every gradient path of a multi-process step: a video head on the gathered
batch (OrderHead), a trainable text side (the text head: every process encodes all texts) and a
per-shard auxiliary loss (as distillation has). The data has one clip without a twin, so batches
of odd size split unevenly and twins land on different processes.
"""
import json
import sys
from pathlib import Path

import torch
import torch.nn.functional as F
from accelerate import Accelerator
from safetensors.torch import save_file

sys.path.insert(0, str(Path(__file__).parent))
from test_train import OrderHead, synthetic_twins  # noqa: E402

from workbench import create_strategy, load_backbone  # noqa: E402
from workbench.train import TrainConfig, frozen_pass_of, train_retrieval, trainable_state  # noqa: E402

CONFIG = TrainConfig(steps=20, batch_size=9, lr=3e-3, warmup=2)


class DistilledOrderHead(OrderHead):
    """OrderHead plus a distillation-like term toward the mean-pooled frozen features."""

    def auxiliary_loss(self, inputs, video, features=None):
        target = F.normalize(inputs.mean(1), dim=-1)
        return 0.5 * (1 - F.cosine_similarity(video, target, dim=-1)).mean()


def frozen_pass_rows(backbone, accelerator, out: Path) -> int:
    """Side-tuning's frozen pass over 5 random clips (3 batches of 2: the second process has no
    batch of its own in the last round); saves what this process received, returns the clips it encoded."""
    side = create_strategy("side-evl", backbone)
    frames = torch.randint(0, 256, (5, 2, 3, 64, 64), generator=torch.Generator().manual_seed(1), dtype=torch.uint8)
    encoded = []
    run = side.frozen_pass
    side.frozen_pass = lambda pixels: (encoded.append(len(pixels)), run(pixels))[1]
    features, tokens = frozen_pass_of(side, frames, accelerator.device, batch_size=2, accelerator=accelerator)
    save_file({"features": features.contiguous(), "tokens": tokens.contiguous()},
              str(out / f"rank{accelerator.process_index}-pass.safetensors"))
    return sum(encoded)


def main(out: Path) -> None:
    accelerator = Accelerator(cpu=True)
    clip = accelerator.clip_grad_norm_
    norms = []          # the total gradient norm of every step (after DDP's averaging, before clipping)

    def recording_clip(*args, **kwargs):
        norm = clip(*args, **kwargs)
        norms.append(float(norm))
        return norm

    accelerator.clip_grad_norm_ = recording_clip
    torch.manual_seed(0)
    backbone = load_backbone("shapes-clip-tiny")
    data = synthetic_twins(backbone).subset(list(range(11)))   # clip 10 loses its twin
    model = DistilledOrderHead(backbone)
    model.add_text_head()
    # The attention's key bias has an exactly zero gradient (a softmax ignores a shift shared by all
    # keys), so AdamW turns rounding noise into full steps for it, in one process as in two: freeze
    # the q/k/v biases so the comparison sees only parameters with a real gradient.
    model.text_head.layer.self_attn.in_proj_bias.requires_grad_(False)
    result = train_retrieval(model, data, CONFIG, accelerator=accelerator, progress=False)
    checksum = sum(float(p.detach().double().sum()) for p in model.trainable_parameters())
    encoded = frozen_pass_rows(backbone, accelerator, out)
    (out / f"rank{accelerator.process_index}.json").write_text(json.dumps(
        {"world_size": accelerator.num_processes, "checksum": checksum, "losses": result["losses"],
         "grad_norms": norms, "pass_clips_encoded": encoded}))
    if accelerator.is_main_process:
        save_file(trainable_state(model), str(out / "trainable.safetensors"))
    accelerator.end_training()


if __name__ == "__main__":
    main(Path(sys.argv[1]))
