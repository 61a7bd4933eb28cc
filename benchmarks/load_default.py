"""How long `load_backbone()` takes to return the embedded default, offline (target: under 2 s).

Prints the median of several loads in fresh processes (imports excluded, as a user's notebook has
them already) and the ratio to the target; the baseline is a random-weight build of the same
config, which shows what reading the weights adds.
Run: `.venv/bin/python benchmarks/load_default.py`
"""
import statistics
import subprocess
import sys

CODE = """
import time, workbench
t = time.perf_counter(); workbench.load_backbone({args}); print(time.perf_counter() - t)
"""


def timed(args: str, repeats: int = 3) -> float:
    runs = [float(subprocess.run([sys.executable, "-c", CODE.format(args=args)], capture_output=True,
                                 text=True, check=True).stdout.split()[-1]) for _ in range(repeats)]
    return statistics.median(runs)


if __name__ == "__main__":
    default = timed("")
    random_init = timed("'shapes-clip-tiny'")
    print(f"load_backbone() embedded default: {default:.2f} s (target 2 s: {default / 2:.2f}x of the budget)")
    print(f"random-weight build of the same config: {random_init:.2f} s (ratio {default / random_init:.2f})")
