#!/usr/bin/env python3
"""nngraph against PyTorch on the IMDB models, side by side: one table of ratios.

Each case (model, mode, batch) runs `nngraph bench --json` and the same model in PyTorch
(bench/torch_models.py) in alternation, several rounds, same shapes and thread count; the table
gives each side's median step time over all rounds and their ratio. PyTorch runs with its best
setting on this machine: OpenBLAS with one thread of its own (OPENBLAS_NUM_THREADS=1), and
OPENBLAS_CORETYPE and OPENBLAS_L2_SIZE unset in its command alone, so OpenBLAS picks its AVX-512
kernels. Usage: /usr/bin/python3 bench/compare_pytorch.py [--nngraph build/bin/nngraph] [--rounds 3]
"""
import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
from pathlib import Path

from nngraph_json import step_seconds

ROOT = Path(__file__).resolve().parent.parent

# (model, mode, batch, the speed goals' target ratio nngraph/PyTorch, or None where they set none)
CASES = [
    ("imdb_attention", "train", 64, 0.2),
    ("imdb_lstm", "train", 64, 0.3),
    ("imdb_lstm_attention", "train", 64, None),
    ("imdb_attention", "infer", 1, 0.4),
    ("imdb_lstm", "infer", 1, None),
    ("imdb_attention", "infer", 256, 0.15),
    ("imdb_lstm", "infer", 256, None),
]


def torch_environment():
    env = dict(os.environ, OPENBLAS_NUM_THREADS="1")
    env.pop("OPENBLAS_CORETYPE", None)
    env.pop("OPENBLAS_L2_SIZE", None)
    return env


def warmup_steps(batch):
    """Untimed steps before each side's timed ones. Sub-millisecond steps on two threads run about
    three times slower for their first 20 or so (nngraph's batch-1 attention: 0.16 ms, then 0.05 ms;
    the second vCPU is slow to wake until it is kept busy), so batch-1 cases warm up longer."""
    return 50 if batch == 1 else 5


def run_nngraph(binary, model, mode, batch, threads, repetitions):
    out = subprocess.run([binary, "bench", str(ROOT / "graphs" / f"{model}.yaml"), "--mode", mode, "--batch-size", str(batch),
                          "--threads", str(threads), "--warmup", str(warmup_steps(batch)), "--repetitions", str(repetitions),
                          "--json"],
                         check=True, capture_output=True, text=True).stdout
    return step_seconds(out)


def run_torch(python, model, mode, batch, threads, repetitions):
    out = subprocess.run([python, str(ROOT / "bench" / "torch_models.py"), "--model", model, "--mode", mode, "--batch", str(batch),
                          "--threads", str(threads), "--warmup", str(warmup_steps(batch)), "--repetitions", str(repetitions)],
                         check=True, capture_output=True, text=True, env=torch_environment()).stdout
    return json.loads(out)["seconds"]


def machine():
    model = "unknown CPU"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return f"{model}, {os.cpu_count()} cores, {platform.system()} {platform.release()}"


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--nngraph", default=str(ROOT / "build" / "bin" / "nngraph"))
    parser.add_argument("--python", default="/usr/bin/python3", help="the Python with Debian's python3-torch")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--repetitions", type=int, default=15)
    args = parser.parse_args()

    rows = []
    for model, mode, batch, target in CASES:
        ours, theirs = [], []
        for _ in range(args.rounds):  # alternate, so both see the same machine state
            ours += run_nngraph(args.nngraph, model, mode, batch, args.threads, args.repetitions)
            theirs += run_torch(args.python, model, mode, batch, args.threads, args.repetitions)
        a, b = statistics.median(ours), statistics.median(theirs)
        rows.append((model, mode, batch, a * 1e3, b * 1e3, a / b, target))
        print(f"  measured {model} {mode} batch {batch}", file=sys.stderr)

    print(f"Machine: {machine()}; {args.threads} threads each; PyTorch with OpenBLAS at 1 thread")
    print(f"| model | step | batch | nngraph ms | PyTorch ms | nngraph / PyTorch | target |")
    print(f"|---|---|---|---|---|---|---|")
    for model, mode, batch, ours, theirs, ratio, target in rows:
        goal = "-" if target is None else f"<= {target:.2f} ({'met' if ratio <= target else 'NOT met'})"
        print(f"| {model} | {'training' if mode == 'train' else 'inference'} | {batch} | {ours:.2f} | {theirs:.2f} | "
              f"{ratio:.3f} | {goal} |")


if __name__ == "__main__":
    main()
