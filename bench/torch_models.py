#!/usr/bin/env python3
"""The IMDB models of graphs/ in PyTorch, timed the way `nngraph bench` times them.

The peer nngraph is measured against (never a dependency of the engine). Prints one JSON object:
{"model", "mode", "batch", "threads", "seconds": [one per timed step]}.
"""
import argparse
import json
import time

import torch
from torch import nn

VOCAB, WIDTH, STEPS, UNITS = 5000, 32, 200, 100


class WordDropout(nn.Module):
    """Keras's Dropout with noise_shape (None, None, 1): one draw per step, shared by the features."""

    def __init__(self, rate):
        super().__init__()
        self.rate = rate

    def forward(self, x):
        if not self.training:
            return x
        keep = torch.empty(x.shape[0], x.shape[1], 1).bernoulli_(1.0 - self.rate)
        return x * keep / (1.0 - self.rate)


def self_attention(x):
    # Keras's Attention([x, x]) with score_mode dot and no scale: softmax(x x^T) x.
    return torch.softmax(x @ x.transpose(1, 2), dim=-1) @ x


class ImdbAttention(nn.Module):
    def __init__(self):
        super().__init__()
        self.embedding = nn.Embedding(VOCAB, WIDTH)
        self.dropout, self.dropout_1 = nn.Dropout(0.5), nn.Dropout(0.5)
        self.dense = nn.Linear(WIDTH, 1)

    def forward(self, tokens):
        x = self.dropout(self.embedding(tokens))
        return self.dense(self.dropout_1(self_attention(x).mean(dim=1)))


class ImdbLstm(nn.Module):
    def __init__(self):
        super().__init__()
        self.embedding = nn.Embedding(VOCAB, WIDTH)
        self.dropout, self.dropout_1 = WordDropout(0.3), nn.Dropout(0.5)
        self.lstm = nn.LSTM(WIDTH, UNITS, batch_first=True)
        self.dense = nn.Linear(UNITS, 350)
        self.dense_1 = nn.Linear(350, 1)

    def forward(self, tokens):
        sequence, _ = self.lstm(self.dropout(self.embedding(tokens)))
        return self.dense_1(self.dropout_1(torch.relu(self.dense(sequence[:, -1]))))


class ImdbLstmAttention(nn.Module):
    def __init__(self):
        super().__init__()
        self.embedding = nn.Embedding(VOCAB, WIDTH)
        self.dropout, self.dropout_1 = WordDropout(0.3), nn.Dropout(0.5)
        self.lstm = nn.LSTM(WIDTH, UNITS, batch_first=True)
        self.dense = nn.Linear(UNITS, 1)

    def forward(self, tokens):
        sequence, _ = self.lstm(self.dropout(self.embedding(tokens)))
        return self.dense(self.dropout_1(self_attention(sequence).mean(dim=1)))


MODELS = {"imdb_attention": ImdbAttention, "imdb_lstm": ImdbLstm, "imdb_lstm_attention": ImdbLstmAttention}


def main():
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--model", choices=sorted(MODELS), required=True)
    parser.add_argument("--mode", choices=["train", "infer"], default="train")
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--warmup", type=int, default=5)
    parser.add_argument("--repetitions", type=int, default=20)
    args = parser.parse_args()

    torch.set_num_threads(args.threads)
    torch.manual_seed(1)
    model = MODELS[args.model]()
    tokens = torch.randint(0, VOCAB, (args.batch, STEPS))
    labels = torch.randint(0, 2, (args.batch, 1)).float()
    loss_fn = nn.BCEWithLogitsLoss()
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3, eps=1e-7)

    def step():
        if args.mode == "infer":
            with torch.no_grad():
                torch.sigmoid(model(tokens))
            return
        optimizer.zero_grad(set_to_none=True)
        loss_fn(model(tokens), labels).backward()
        optimizer.step()

    model.train(args.mode == "train")
    for _ in range(args.warmup):
        step()
    seconds = []
    for _ in range(args.repetitions):
        start = time.perf_counter()
        step()
        seconds.append(time.perf_counter() - start)
    print(json.dumps({"model": args.model, "mode": args.mode, "batch": args.batch, "threads": args.threads,
                      "torch": torch.__version__, "seconds": seconds}))


if __name__ == "__main__":
    main()
