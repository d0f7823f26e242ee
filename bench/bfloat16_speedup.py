#!/usr/bin/env python3
"""How much faster mixed_bfloat16 trains than float32, f32 and bf16 steps alternated pair by pair.

Each model's file runs as it is (float32) and as a copy with `dtype_policy: mixed_bfloat16` at the
top, one `nngraph bench --json` process each, f32 then bf16, `--pairs` times. A pair's ratio is
f32 / bf16 step time: pairing keeps it meaningful while a busy machine's speed drifts. The table
gives the median step of each side and the median of the pairs' ratios, with their ranges.
Usage: python3 bench/bfloat16_speedup.py [--nngraph build/bin/nngraph] [--pairs 7] [--runs 3]
"""
import argparse
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

from nngraph_json import median_row, row_seconds

ROOT = Path(__file__).resolve().parent.parent

# The training steps the speed goal names (matmuls dominate all but imdb_attention's, shown beside).
MODELS = ["imdb_lstm", "imdb_lstm_attention", "translate_eng_fra", "imdb_attention"]


def bench(binary, model_file, batch, threads, warmup, repetitions):
    run = subprocess.run([binary, "bench", str(model_file), "--mode", "train", "--batch-size", str(batch),
                          "--threads", str(threads), "--warmup", str(warmup), "--repetitions", str(repetitions),
                          "--json"], capture_output=True, text=True)
    if run.returncode != 0:
        # A CPU without AVX512_BF16, or one where bf16 runs slower than f32, refuses the policy.
        if "mixed_bfloat16" in run.stderr:
            sys.exit(f"mixed_bfloat16 does not run on this machine: {run.stderr.strip()}")
        sys.exit(f"nngraph bench {model_file} failed: {run.stderr.strip()}")
    return row_seconds(median_row(run.stdout)) * 1e3


def bfloat16_copy(model, directory):
    text = (ROOT / "graphs" / f"{model}.yaml").read_text()
    if "dtype_policy:" in text:
        sys.exit(f"graphs/{model}.yaml sets its own dtype_policy; expected a float32 model file")
    copy = Path(directory) / f"{model}.yaml"
    copy.write_text("dtype_policy: mixed_bfloat16\n" + text)
    return copy


def spread(values, digits):
    return f"{statistics.median(values):.{digits}f} ({min(values):.{digits}f}-{max(values):.{digits}f})"


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--nngraph", default=str(ROOT / "build" / "bin" / "nngraph"))
    parser.add_argument("--models", nargs="+", default=MODELS)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--pairs", type=int, default=7)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--repetitions", type=int, default=10)
    args = parser.parse_args()
    if args.pairs < 1 or args.runs < 1:
        parser.error("--pairs and --runs are 1 or more")

    print("| model | run | f32 ms | mixed_bfloat16 ms | f32 / bf16 |")
    print("|---|---|---|---|---|")
    with tempfile.TemporaryDirectory() as directory:
        for model in args.models:
            copy = bfloat16_copy(model, directory)
            for run in range(args.runs):
                f32, bf16 = [], []
                for _ in range(args.pairs):
                    f32.append(bench(args.nngraph, ROOT / "graphs" / f"{model}.yaml", args.batch_size, args.threads,
                                     args.warmup, args.repetitions))
                    bf16.append(bench(args.nngraph, copy, args.batch_size, args.threads, args.warmup,
                                      args.repetitions))
                ratios = [a / b for a, b in zip(f32, bf16)]
                print(f"| {model if run == 0 else ''} | {run + 1} | {spread(f32, 2)} | {spread(bf16, 2)} | "
                      f"{spread(ratios, 3)} |", flush=True)


if __name__ == "__main__":
    main()
