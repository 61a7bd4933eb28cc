"""Peak training memory of each adapted strategy relative to full fine-tuning, at the same batch.

Each strategy trains for two steps (forward, backward, AdamW step: optimiser state included) in a
fresh process, on the embedded tiny CLIP and the same ShapesWorld batch. What is measured is the
memory the training steps add on top of the loaded model: on CUDA ``torch.cuda.max_memory_allocated``
after ``reset_peak_memory_stats``; on CPU the process's peak resident set (Linux ``VmHWM``, reset
through ``/proc/self/clear_refs`` just before training) minus the resident set at that moment.
Prints MB per strategy and the ratio to full fine-tuning (the baseline, run in the same invocation).
Run: `nice .venv/bin/python benchmarks/bench_memory.py [--batch-size 8] [--num-frames 8]`
"""
import argparse
import json
import subprocess
import sys

MB = 2 ** 20


def _proc_status_kb(field: str) -> int:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    raise RuntimeError(f"{field} not in /proc/self/status")


def child(strategy: str, batch_size: int, num_frames: int) -> dict:
    """Train ``strategy`` two steps; return {"strategy", "trainable", "peak_mb", "device"}."""
    import torch

    from workbench import load_backbone
    from workbench.config import get_profile, seed_everything
    from workbench.strategies import create_strategy
    from workbench.tasks.retrieval import shapes_retrieval_data
    from workbench.train import TrainConfig, train_retrieval

    torch.set_num_threads(1)
    seed_everything(0)
    cuda = torch.cuda.is_available()
    backbone = load_backbone(device="cuda" if cuda else "cpu")
    data = shapes_retrieval_data("train", get_profile("smoke", num_frames=num_frames), backbone)
    with torch.no_grad():
        data.features = backbone.encode_frames(backbone.preprocess(data.frames.to(backbone.device))).cpu()
    model = create_strategy(strategy, backbone)
    cfg = TrainConfig(steps=2, batch_size=batch_size, warmup=1, checkpoint_every=0, hard_negatives=False)
    if cuda:
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
        before = torch.cuda.memory_allocated()
    else:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")  # reset the peak resident set (VmHWM) to the current one
        before = _proc_status_kb("VmRSS") * 1024
    train_retrieval(model, data, cfg, progress=False)
    peak = torch.cuda.max_memory_allocated() if cuda else _proc_status_kb("VmHWM") * 1024
    return {"strategy": strategy, "trainable": model.parameter_counts()["trainable"],
            "peak_mb": (peak - before) / MB, "device": "cuda" if cuda else "cpu"}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--num-frames", type=int, default=8)
    parser.add_argument("--child", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        print(json.dumps(child(args.child, args.batch_size, args.num_frames)))
        return
    from workbench.strategies import list_strategies

    names = ["full-finetune"] + [n for n in list_strategies("adapted") if n != "full-finetune"]
    rows = []
    for name in names:
        run = subprocess.run([sys.executable, __file__, "--child", name, "--batch-size", str(args.batch_size),
                              "--num-frames", str(args.num_frames)], capture_output=True, text=True)
        if run.returncode:
            print(f"{name}: failed\n{run.stderr[-2000:]}", file=sys.stderr)
            continue
        rows.append(json.loads(run.stdout.strip().splitlines()[-1]))
        print(f"  measured {name}", file=sys.stderr, flush=True)
    base = next(r["peak_mb"] for r in rows if r["strategy"] == "full-finetune")
    print(f"batch {args.batch_size} clips x {args.num_frames} frames, embedded tiny CLIP, device {rows[0]['device']}")
    print("| strategy | trainable params | training peak MB | x full fine-tuning |")
    print("| --- | ---: | ---: | ---: |")
    for r in rows:
        print(f"| {r['strategy']} | {r['trainable']:,} | {r['peak_mb']:.0f} | {r['peak_mb'] / base:.2f} |")


if __name__ == "__main__":
    main()
