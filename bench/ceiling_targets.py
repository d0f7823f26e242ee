#!/usr/bin/env python3
"""The speed goals that are fractions of the machine's own matmul ceiling, in sets of runs.

Each set runs `nngraph bench --json` once for every row below, one process a row; a process reads
its step against the 2048-cube product it samples among its own timed steps. The table gives each
set's fraction of the f32 ceiling and in how many sets the row met its target. No peer is needed.
Usage: python3 bench/ceiling_targets.py [--nngraph build/bin/nngraph] [--sets 3]
"""
import argparse
import subprocess
import sys
from pathlib import Path

from nngraph_json import median_row, row_seconds

ROOT = Path(__file__).resolve().parent.parent

# (model, mode, batch, the lowest fraction of the f32 ceiling the speed goals ask for)
ROWS = [
    ("imdb_attention", "train", 64, 0.75),
    ("imdb_lstm", "train", 64, 0.6),
    ("imdb_lstm_attention", "train", 64, 0.6),
    ("translate_eng_fra", "train", 64, 0.6),
    ("imdb_attention", "infer", 256, 0.7),
    ("imdb_lstm", "infer", 256, 0.75),
]


def bench(binary, model, mode, batch, threads, warmup, repetitions):
    out = subprocess.run([binary, "bench", str(ROOT / "graphs" / f"{model}.yaml"), "--mode", mode, "--batch-size", str(batch),
                          "--threads", str(threads), "--warmup", str(warmup), "--repetitions", str(repetitions), "--json"],
                         check=True, capture_output=True, text=True).stdout
    return median_row(out)


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--nngraph", default=str(ROOT / "build" / "bin" / "nngraph"))
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--sets", type=int, default=3)
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--repetitions", type=int, default=10)
    args = parser.parse_args()
    if args.sets < 1:
        parser.error("--sets is 1 or more")

    measured = {row: [] for row in ROWS}
    for s in range(args.sets):
        for row in ROWS:
            model, mode, batch, _ = row
            measured[row].append(bench(args.nngraph, model, mode, batch, args.threads, args.warmup, args.repetitions))
        print(f"  set {s + 1} of {args.sets} measured", file=sys.stderr)

    sets = " | ".join(f"set {s + 1}" for s in range(args.sets))
    print(f"| model | step | batch | {sets} | target | met in |")
    print("|---|---|---|" + "---|" * args.sets + "---|---|")
    for row in ROWS:
        model, mode, batch, target = row
        fractions = [r["fraction_of_f32_ceiling"] for r in measured[row]]
        cells = " | ".join(f"{f:.3f} ({row_seconds(r) * 1e3:.2f} ms, {r['ceiling_f32_gflops']:.0f} GFLOP/s)"
                           for f, r in zip(fractions, measured[row]))
        met = sum(f >= target for f in fractions)
        print(f"| {model} | {'training' if mode == 'train' else 'inference'} | {batch} | {cells} | >= {target} | "
              f"{met} of {args.sets} |")


if __name__ == "__main__":
    main()
