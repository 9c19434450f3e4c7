"""Where one training epoch's time goes: `python -m attnrec.bench.train_epoch [--threads 2]`.

By default on a seeded synthetic shop shaped like a million-interaction catalogue (6,040
users, 3,704 items, about 165 interactions a user: 0.99M interactions), written to a temp
directory; `--interactions/--items/--users` time your own data instead. One epoch of the
default model and batch, split into building batches, the forward pass with the loss (the
fused full-softmax cross-entropy forms its gradient here), backward and the optimizer
step; then one validation pass. Prints one JSON object.
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time

import numpy as np
import torch

from attnrec.model.config import ModelConfig, TrainConfig
from attnrec.model.data import load_tables
from attnrec.model.evaluate import cases, evaluate, model_scorer
from attnrec.model.inputs import user_input
from attnrec.model.sasrec import SASRec
from attnrec.model.synthetic import ShopConfig, write_shop
from attnrec.model.train import NextItemLoss, make_batch, prepare, specs, training_windows

MILLION = ShopConfig(n_users=6_040, n_items=3_704, mean_length=165.0, seed=1)


def time_epoch(paths: dict, config: TrainConfig = TrainConfig(), max_batches: int = 0) -> dict:
    started = time.perf_counter()
    prepared = prepare(load_tables(**paths))
    prepare_s = time.perf_counter() - started
    model_config = ModelConfig(n_items=len(prepared.items), item_features=specs(prepared.item_encoders),
                               user_features=specs(prepared.user_encoders))
    model = SASRec(model_config)
    model.set_item_codes([torch.tensor(c) for c in prepared.item_codes])
    loss_fn, optimizer = NextItemLoss(model), torch.optim.AdamW(model.parameters(), lr=config.lr)
    windows = training_windows(prepared.split, model_config.max_len)
    order = np.random.default_rng([config.seed, 1]).permutation(len(windows))
    parts = {"batches": 0.0, "forward_and_loss": 0.0, "backward": 0.0, "optimizer": 0.0}
    steps = targets = 0
    epoch_started = time.perf_counter()
    for start in range(0, len(order), config.batch_size):
        t0 = time.perf_counter()
        batch = make_batch(prepared.split, windows[order[start : start + config.batch_size]], prepared.user_codes,
                           torch.device("cpu"))
        t1 = time.perf_counter()
        loss = loss_fn(batch.seq, batch.targets, batch.user)
        t2 = time.perf_counter()
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        t3 = time.perf_counter()
        optimizer.step()
        t4 = time.perf_counter()
        for name, seconds in zip(parts, (t1 - t0, t2 - t1, t3 - t2, t4 - t3)):
            parts[name] += seconds
        steps, targets = steps + 1, targets + int((batch.targets != 0).sum())
        if max_batches and steps >= max_batches:
            break
    epoch_s = time.perf_counter() - epoch_started
    model.eval()
    started = time.perf_counter()
    users = lambda rows: user_input(prepared.user_codes, prepared.split.full.users[rows], "cpu")  # noqa: E731
    valid = evaluate(model_scorer(model, users), cases(prepared.split, "valid"))
    return {"interactions": int(len(prepared.split.full.items)), "items": len(prepared.items),
            "users": len(prepared.users), "windows": int(len(windows)), "steps": steps, "targets": targets,
            "threads": torch.get_num_threads(), "prepare_s": round(prepare_s, 1), "epoch_s": round(epoch_s, 1),
            "parts_s": {k: round(v, 1) for k, v in parts.items()},
            "validation_s": round(time.perf_counter() - started, 1), "valid_NDCG@10": round(valid["NDCG@10"], 4)}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--interactions", help="Parquet interactions (default: the synthetic million)")
    p.add_argument("--items")
    p.add_argument("--users")
    p.add_argument("--threads", type=int, default=2, help="torch threads")
    p.add_argument("--max-batches", type=int, default=0, help="stop the epoch early (0: a whole epoch)")
    args = p.parse_args(argv)
    torch.set_num_threads(args.threads)
    with tempfile.TemporaryDirectory() as scratch:
        paths = ({"interactions": args.interactions, "items": args.items, "users": args.users} if args.interactions
                 else write_shop(scratch, MILLION))
        print(json.dumps(time_epoch(paths, max_batches=args.max_batches), indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
