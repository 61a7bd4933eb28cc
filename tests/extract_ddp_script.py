"""Run by tests/test_extract.py under `torchrun --nproc_per_node 2`: extract, then record this rank's share."""
import json
import sys
from pathlib import Path

from accelerate import Accelerator

from workbench import load_backbone
from workbench.extract import ExtractConfig, extract_features

videos, out, report = (Path(a) for a in sys.argv[1:4])
accelerator = Accelerator(cpu=True)
result = extract_features(videos, load_backbone(), out, ExtractConfig(num_frames=4, batch_size=2, num_workers=0,
                                                                     progress=False), accelerator)
(report / f"rank{accelerator.process_index}.json").write_text(json.dumps(
    {"world_size": accelerator.num_processes, "encoded": result.encoded, "skipped": result.skipped,
     "failed": result.failed, "total": result.total}))
accelerator.end_training()
