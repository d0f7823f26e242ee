#!/usr/bin/env python3
"""The PyTorch peer of graphs/translate_eng_fra.yaml: the same encoder-decoder Transformer on the same
split, tokens and vocabularies (SPEC section 7, re-implemented here and checked against the
vocabularies nngraph saved when --vocabulary is given), trained with the same epochs, batch size and
learning rate; prints the test split's BLEU (greedy, the same arithmetic), PyTorch's ms per training
step on the same thread count, and nngraph's from `nngraph bench graphs/translate_eng_fra.yaml --mode
train` in the same run.

Usage: OPENBLAS_NUM_THREADS=1 /usr/bin/python3 bench/translate_pytorch.py [--data tatoeba_eng_fra.tsv.gz]
       [--epochs 8] [--threads 2] [--nngraph build/bin/nngraph] [--vocabulary W.vocab.json]
       [--bleu-after 6: also decode after these epochs; each decode uses the best weights by val_accuracy so far]
       [--timing-steps N: time N training steps and stop, no training run or BLEU]
       [--weights W.safetensors: no training; load the weights nngraph trained (vocabularies from
        W.vocab.json), then decode the test split greedily in PyTorch and with `nngraph translate`
        in the same run: BLEU and sentences per second side by side]
"""
import argparse
import collections
import copy
import gzip
import json
import struct
import math
import random
import re
import statistics
import subprocess
import tempfile
import sys
import time
import unicodedata
from pathlib import Path

import torch
import torch.nn as nn
import torch.nn.functional as F

from nngraph_json import step_seconds

ROOT = Path(__file__).resolve().parent.parent
PAD, START, END, OOV, FIRST = 0, 1, 2, 3, 4
UNKNOWN = "<unk>"  # how `nngraph translate` writes the out-of-vocabulary id: one token that matches no reference

# SPEC section 7's tokens: NFC, lower case, these characters replaced, then \w+|[^\w\s].
REPLACEMENTS = {"\u00a0": " ", "\u202f": " ", "\u2009": " ", "\u200b": "", "\u00ad": "", "\u2019": "'"}
TOKEN = re.compile(r"\w+|[^\w\s]")


def tokens(text):
    text = unicodedata.normalize("NFC", text).lower()
    for old, new in REPLACEMENTS.items():
        text = text.replace(old, new)
    return TOKEN.findall(text)


def read_pairs(path):
    """The split of SPEC section 7: by the index of the English sentence's first appearance."""
    opener = gzip.open if str(path).endswith(".gz") else open
    index, splits = {}, {"train": [], "validation": [], "test": []}
    with opener(path, "rt", encoding="utf-8") as f:
        for line in f:
            line = line.rstrip("\n")
            if not line:
                continue
            english, french = line.split("\t")[:2]
            i = index.setdefault(english, len(index))
            split = "test" if i % 20 == 19 else "validation" if i % 20 == 18 else "train"
            splits[split].append((english, french))
    return splits


def vocabulary(sentences, size):
    counts = collections.Counter(t for s in sentences for t in s)
    ranked = sorted(counts, key=lambda t: (-counts[t], t))[: size - FIRST]
    return ranked, {t: FIRST + i for i, t in enumerate(ranked)}


def encode(ids, length):
    return (ids + [PAD] * length)[:length]


class Transformer(nn.Module):
    """Keras's example at width 128: one encoder and one decoder block, post-norm residuals."""

    def __init__(self, source_words, target_words, length, width=128, heads=4, ffn=512):
        super().__init__()
        self.source_tokens = nn.Embedding(source_words, width)
        self.source_positions = nn.Embedding(length, width)
        self.target_tokens = nn.Embedding(target_words, width)
        self.target_positions = nn.Embedding(length, width)
        self.encoder_attention = nn.MultiheadAttention(width, heads, batch_first=True)
        self.encoder_norm_1 = nn.LayerNorm(width, eps=1e-3)
        self.encoder_ffn = nn.Sequential(nn.Linear(width, ffn), nn.ReLU(), nn.Linear(ffn, width))
        self.encoder_norm_2 = nn.LayerNorm(width, eps=1e-3)
        self.self_attention = nn.MultiheadAttention(width, heads, batch_first=True)
        self.decoder_norm_1 = nn.LayerNorm(width, eps=1e-3)
        self.cross_attention = nn.MultiheadAttention(width, heads, batch_first=True)
        self.decoder_norm_2 = nn.LayerNorm(width, eps=1e-3)
        self.decoder_ffn = nn.Sequential(nn.Linear(width, ffn), nn.ReLU(), nn.Linear(ffn, width))
        self.decoder_norm_3 = nn.LayerNorm(width, eps=1e-3)
        self.dropout = nn.Dropout(0.5)
        self.out = nn.Linear(width, target_words)
        # Keras's initialisers: uniform(-0.05, 0.05) token embeddings, Glorot uniform kernels and
        # position embeddings, zero biases.
        for module in self.modules():
            if isinstance(module, nn.Linear):
                nn.init.xavier_uniform_(module.weight)
                nn.init.zeros_(module.bias)
        for embedding in (self.source_tokens, self.target_tokens):
            nn.init.uniform_(embedding.weight, -0.05, 0.05)
        for embedding in (self.source_positions, self.target_positions):
            nn.init.xavier_uniform_(embedding.weight)

    def encode(self, source):
        padding = source == PAD
        x = self.source_tokens(source) + self.source_positions.weight[: source.shape[1]]
        x = self.encoder_norm_1(x + self.encoder_attention(x, x, x, key_padding_mask=padding, need_weights=False)[0])
        return self.encoder_norm_2(x + self.encoder_ffn(x)), padding

    def decode(self, encoded, source_padding, decoder_input):
        steps = decoder_input.shape[1]
        causal = torch.triu(torch.ones(steps, steps, dtype=torch.bool), 1)
        padding = decoder_input == PAD
        y = self.target_tokens(decoder_input) + self.target_positions.weight[:steps]
        y = self.decoder_norm_1(
            y + self.self_attention(y, y, y, attn_mask=causal, key_padding_mask=padding, need_weights=False)[0])
        y = self.decoder_norm_2(y + self.cross_attention(y, encoded, encoded, key_padding_mask=source_padding,
                                                         need_weights=False)[0])
        y = self.decoder_norm_3(y + self.decoder_ffn(y))
        return self.out(self.dropout(y))  # logits; the softmax is in the loss

    def forward(self, source, decoder_input):
        encoded, source_padding = self.encode(source)
        return self.decode(encoded, source_padding, decoder_input)


def masked_loss_and_accuracy(logits, targets):
    """The mean over real tokens (targets != pad), as Keras's masked loss and accuracy."""
    loss = F.cross_entropy(logits.reshape(-1, logits.shape[-1]), targets.reshape(-1), ignore_index=PAD)
    real = targets != PAD
    right = ((logits.argmax(-1) == targets) & real).sum().item()
    return loss, right, real.sum().item()


@torch.no_grad()
def validate(model, rows, batch_size):
    """Masked loss and token accuracy over a split, as `nngraph train` reports val_loss and val_accuracy."""
    model.eval()
    loss_sum = right = tokens_seen = 0.0
    for begin in range(0, len(rows[0]), batch_size):
        end = begin + batch_size
        logits = model(rows[0][begin:end], rows[1][begin:end])
        loss, batch_right, batch_tokens = masked_loss_and_accuracy(logits, rows[2][begin:end])
        loss_sum += loss.item() * batch_tokens
        right += batch_right
        tokens_seen += batch_tokens
    model.train()
    return loss_sum / tokens_seen, right / tokens_seen


@torch.no_grad()
def greedy(model, source, length, batch_size):
    """The plain greedy loop: the encoder once, the decoder rerun over the prefix at every step."""
    model.eval()
    out = []
    for begin in range(0, len(source), batch_size):
        batch = source[begin:begin + batch_size]
        encoded, padding = model.encode(batch)
        prefix = torch.full((len(batch), length), PAD, dtype=torch.long)
        prefix[:, 0] = START
        ids = [[] for _ in range(len(batch))]
        open_rows = [True] * len(batch)
        for t in range(length):
            best = model.decode(encoded, padding, prefix)[:, t].argmax(-1).tolist()
            for r, token in enumerate(best):
                if not open_rows[r]:
                    continue
                if token in (END, PAD):
                    open_rows[r] = False
                    continue
                ids[r].append(token)
                if t + 1 < length:
                    prefix[r, t + 1] = token
            if not any(open_rows):
                break
        out.extend(ids)
    return out


def corpus_bleu(hypotheses, references):
    """SPEC section 7: clipped n-gram precisions, brevity penalty against the closest reference length
    (the shorter on a tie), uniform weights, no smoothing; in percent."""
    matches, totals = [0] * 4, [0] * 4
    hypothesis_length = reference_length = 0
    for hypothesis, refs in zip(hypotheses, references):
        hypothesis_length += len(hypothesis)
        reference_length += min((abs(len(r) - len(hypothesis)), len(r)) for r in refs)[1]
        for n in range(1, 5):
            grams = collections.Counter(tuple(hypothesis[i:i + n]) for i in range(len(hypothesis) - n + 1))
            most = collections.Counter()
            for r in refs:
                for gram, count in collections.Counter(tuple(r[i:i + n]) for i in range(len(r) - n + 1)).items():
                    most[gram] = max(most[gram], count)
            matches[n - 1] += sum(min(count, most[gram]) for gram, count in grams.items())
            totals[n - 1] += max(len(hypothesis) - n + 1, 0)
    if min(matches) == 0:
        return 0.0
    log_precision = sum(math.log(m / t) for m, t in zip(matches, totals)) / 4
    brevity = 1.0 if hypothesis_length > reference_length else math.exp(1 - reference_length / max(hypothesis_length, 1))
    return 100 * brevity * math.exp(log_precision)


def load_nngraph_weights(model, path):
    """Keras's layouts as nngraph saves them, into the PyTorch modules: Dense kernels (in, out) become
    Linear weights (out, in); attention's query/key/value kernels (width, heads, head) stack into
    in_proj_weight, its output kernel (heads, head, width) into out_proj."""
    with open(path, "rb") as f:
        header_bytes = struct.unpack("<Q", f.read(8))[0]
        header = json.loads(f.read(header_bytes))
        data = f.read()

    def tensor(name):
        entry = header[name]
        if entry["dtype"] != "F32":
            sys.exit(f"{path}: {name} is {entry['dtype']}, expected F32")
        begin, end = entry["data_offsets"]
        return torch.frombuffer(bytearray(data[begin:end]), dtype=torch.float32).reshape(entry["shape"])

    def dense(linear, name):
        linear.weight.copy_(tensor(f"{name}.kernel").t())
        linear.bias.copy_(tensor(f"{name}.bias"))

    def attention(module, name):
        width = module.embed_dim
        module.in_proj_weight.copy_(
            torch.cat([tensor(f"{name}.{part}.kernel").reshape(width, width).t() for part in ("query", "key", "value")]))
        module.in_proj_bias.copy_(torch.cat([tensor(f"{name}.{part}.bias").reshape(width)
                                             for part in ("query", "key", "value")]))
        module.out_proj.weight.copy_(tensor(f"{name}.attention_output.kernel").reshape(width, width).t())
        module.out_proj.bias.copy_(tensor(f"{name}.attention_output.bias"))

    def norm(module, name):
        module.weight.copy_(tensor(f"{name}.gamma"))
        module.bias.copy_(tensor(f"{name}.beta"))

    with torch.no_grad():
        for embedding in ("source_tokens", "target_tokens", "source_positions", "target_positions"):
            getattr(model, embedding).weight.copy_(tensor(f"{embedding}.embeddings"))
        attention(model.encoder_attention, "encoder_attention")
        attention(model.self_attention, "decoder_self_attention")
        attention(model.cross_attention, "decoder_cross_attention")
        for mine, theirs in (("encoder_norm_1", "encoder_norm_1"), ("encoder_norm_2", "encoder_output"),
                             ("decoder_norm_1", "decoder_norm_1"), ("decoder_norm_2", "decoder_norm_2"),
                             ("decoder_norm_3", "decoder_norm_3")):
            norm(getattr(model, mine), theirs)
        dense(model.encoder_ffn[0], "encoder_ffn_1")
        dense(model.encoder_ffn[2], "encoder_ffn_2")
        dense(model.decoder_ffn[0], "decoder_ffn_1")
        dense(model.decoder_ffn[2], "decoder_ffn_2")
        dense(model.out, "french")


def test_groups(splits):
    """The test split's English sentences, each with all its French references (SPEC section 7)."""
    groups = collections.OrderedDict()
    for e, f in splits["test"]:
        groups.setdefault(e, []).append(tokens(f))
    return groups


def torch_greedy(model, groups, source_ids, target_ranked, args):
    """The test split decoded by PyTorch's greedy loop: prints BLEU and speed, returns the tokens and seconds."""
    source = torch.tensor([encode([source_ids.get(t, OOV) for t in tokens(e)], args.length) for e in groups])
    start = time.perf_counter()
    decoded = greedy(model, source, args.length, args.batch_size)
    seconds = time.perf_counter() - start
    hypotheses = [[target_ranked[i - FIRST] if i >= FIRST else UNKNOWN for i in ids] for ids in decoded]
    print(f"PyTorch test BLEU (greedy): {corpus_bleu(hypotheses, list(groups.values())):.2f} over {len(groups)} "
          f"sentences; greedy loop {len(groups) / seconds:.1f} sentences/s ({seconds:.1f} s)", flush=True)
    return hypotheses, seconds


def decode_side_by_side(model, groups, source_ids, target_ranked, args):
    """Greedy decoding of the test split by both engines with the same weights, in one run."""
    references = list(groups.values())
    hypotheses, torch_seconds = torch_greedy(model, groups, source_ids, target_ranked, args)
    with tempfile.TemporaryDirectory() as folder:
        english, french = Path(folder) / "english.txt", Path(folder) / "french.txt"
        english.write_text("".join(e.replace("\n", " ") + "\n" for e in groups), encoding="utf-8")
        start = time.perf_counter()
        subprocess.run([args.nngraph, "translate", str(ROOT / "graphs" / "translate_eng_fra.yaml"), "--weights",
                        args.weights, "--input-file", str(english), "--output-file", str(french), "--batch-size",
                        str(args.batch_size), "--threads", str(args.threads)], check=True)
        nngraph_seconds = time.perf_counter() - start
        lines = french.read_text(encoding="utf-8").split("\n")[:len(groups)]
    ours = [line.split() for line in lines]  # `translate` writes its tokens joined by spaces
    same = sum(a == b for a, b in zip(ours, hypotheses))
    print(f"nngraph translate: BLEU {corpus_bleu(ours, references):.2f}, {len(groups) / nngraph_seconds:.1f} "
          f"sentences/s ({nngraph_seconds:.1f} s, start-up included); {same} of {len(groups)} translations "
          f"identical to PyTorch's")
    print(f"sentences/s, nngraph / PyTorch = {torch_seconds / nngraph_seconds:.2f}")


def nngraph_step_ms(binary, threads, repetitions):
    out = subprocess.run([binary, "bench", str(ROOT / "graphs" / "translate_eng_fra.yaml"), "--mode", "train",
                          "--threads", str(threads), "--repetitions", str(repetitions), "--warmup", "5", "--json"],
                         check=True, capture_output=True, text=True).stdout
    return statistics.median(step_seconds(out)) * 1e3


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--data", default=str(ROOT.parent / "shared" / "data" / "tatoeba_eng_fra.tsv.gz"))
    p.add_argument("--epochs", type=int, default=8)
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--learning-rate", type=float, default=1e-3)
    p.add_argument("--words", type=int, default=10000)
    p.add_argument("--length", type=int, default=20)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--nngraph", default=str(ROOT / "build" / "bin" / "nngraph"))
    p.add_argument("--vocabulary", help="vocabularies nngraph saved beside its weights (W.vocab.json), to compare")
    p.add_argument("--timing-steps", type=int, default=0)
    p.add_argument("--weights", help="decode with the weights nngraph trained instead of training (see the usage)")
    p.add_argument("--bleu-after", type=int, nargs="*", default=[],
                   help="also decode the test split after these epochs (the last epoch always)")
    args = p.parse_args()
    if args.weights and not args.vocabulary:
        args.vocabulary = str(Path(args.weights).with_suffix(".vocab.json"))
    torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)
    random.seed(args.seed)

    splits = read_pairs(args.data)
    english = [tokens(e) for e, _ in splits["train"]]
    french = [tokens(f) for _, f in splits["train"]]
    source_ranked, source_ids = vocabulary(english, args.words)
    target_ranked, target_ids = vocabulary(french, args.words)
    print(f"pairs: {len(splits['train'])} train, {len(splits['validation'])} validation, {len(splits['test'])} test")
    if args.vocabulary:
        saved = json.loads(Path(args.vocabulary).read_text(encoding="utf-8"))
        same = saved["source"] == source_ranked and saved["target"] == target_ranked
        print(f"vocabularies equal nngraph's ({args.vocabulary}): {same}")
        if not same:
            sys.exit(1)

    def rows(pairs):
        source = [encode([source_ids.get(t, OOV) for t in tokens(e)], args.length) for e, _ in pairs]
        target = [[target_ids.get(t, OOV) for t in tokens(f)] for _, f in pairs]
        decoder_input = [encode([START] + t, args.length) for t in target]
        shifted = [encode(t + [END], args.length) for t in target]
        return torch.tensor(source), torch.tensor(decoder_input), torch.tensor(shifted)

    model = Transformer(args.words, args.words, args.length)
    if args.weights:
        load_nngraph_weights(model, args.weights)
        decode_side_by_side(model, test_groups(splits), source_ids, target_ranked, args)
        return
    train = rows(splits["train"])
    validation = rows(splits["validation"])
    best_accuracy, best_state = -1.0, None
    optimizer = torch.optim.Adam(model.parameters(), lr=args.learning_rate, eps=1e-7)
    steps = (len(train[0]) + args.batch_size - 1) // args.batch_size
    step_times = []
    for epoch in range(args.epochs):
        model.train()
        order = torch.randperm(len(train[0]))
        loss_sum = right = tokens_seen = 0.0
        for step in range(steps):
            batch = order[step * args.batch_size:(step + 1) * args.batch_size]
            start = time.perf_counter()
            optimizer.zero_grad()
            logits = model(train[0][batch], train[1][batch])
            loss, batch_right, batch_tokens = masked_loss_and_accuracy(logits, train[2][batch])
            loss.backward()
            optimizer.step()
            step_times.append(time.perf_counter() - start)
            loss_sum += loss.item() * batch_tokens
            right += batch_right
            tokens_seen += batch_tokens
            if args.timing_steps and len(step_times) >= args.timing_steps:
                break
        if args.timing_steps:
            break
        val_loss, val_accuracy = validate(model, validation, args.batch_size)
        print(f"epoch {epoch + 1}/{args.epochs}: loss {loss_sum / tokens_seen:.4f}, accuracy {right / tokens_seen:.4f}, "
              f"val_loss {val_loss:.4f}, val_accuracy {val_accuracy:.4f}, "
              f"{statistics.median(step_times) * 1e3:.1f} ms/step", flush=True)
        # The best epoch by val_accuracy is what `nngraph train --save` keeps, so it is what both decode.
        if val_accuracy > best_accuracy:
            best_accuracy, best_state = val_accuracy, copy.deepcopy(model.state_dict())
        if epoch + 1 in args.bleu_after and epoch + 1 < args.epochs:
            latest = copy.deepcopy(model.state_dict())
            model.load_state_dict(best_state)
            print(f"after epoch {epoch + 1}, the best weights so far (val_accuracy {best_accuracy:.4f}):")
            torch_greedy(model, test_groups(splits), source_ids, target_ranked, args)
            model.load_state_dict(latest)

    timed = step_times[5:] if len(step_times) > 10 else step_times
    torch_ms = statistics.median(timed) * 1e3
    print(f"PyTorch: {torch_ms:.1f} ms per training step (median of {len(timed)}, {args.threads} threads)")
    if not args.timing_steps:
        model.load_state_dict(best_state)
        print(f"after epoch {args.epochs}, the best weights (val_accuracy {best_accuracy:.4f}):")
        torch_greedy(model, test_groups(splits), source_ids, target_ranked, args)
    nngraph_ms = nngraph_step_ms(args.nngraph, args.threads, 20)
    print(f"nngraph: {nngraph_ms:.1f} ms per training step; nngraph / PyTorch = {nngraph_ms / torch_ms:.2f}")


if __name__ == "__main__":
    main()
