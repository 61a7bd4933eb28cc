"""Run by tests/test_train.py under `torchrun --nproc_per_node 2`: train, then dump a checksum."""
import json
import sys
from pathlib import Path

import torch
from accelerate import Accelerator

sys.path.insert(0, str(Path(__file__).parent))
from test_train import OrderHead, synthetic_twins  # noqa: E402

from workbench import load_backbone  # noqa: E402
from workbench.train import TrainConfig, train_retrieval  # noqa: E402

out = Path(sys.argv[1])
accelerator = Accelerator(cpu=True)
torch.manual_seed(0)
backbone = load_backbone("shapes-clip-tiny")
data = synthetic_twins(backbone)
model = OrderHead(backbone)
result = train_retrieval(model, data, TrainConfig(steps=20, batch_size=8, lr=3e-3, warmup=2),
                         accelerator=accelerator, progress=False)
checksum = sum(float(p.detach().double().sum()) for p in model.trainable_parameters())
(out / f"rank{accelerator.process_index}.json").write_text(json.dumps(
    {"world_size": accelerator.num_processes, "checksum": checksum,
     "first_loss": result["losses"][0], "last_loss": result["losses"][-1]}))
accelerator.end_training()
