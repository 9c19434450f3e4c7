"""The feedback loop end to end, through the service: model A (trained on a synthetic shop)
is served with a feedback log; simulated users who like one brand, which the training data
never favoured, are shown A's recommendations over gRPC and send their clicks and purchases
back through Feedback; model B is trained on the shop plus that log (`attnrec train
--feedback`); then both rank for the same users, and the share of the liked brand in their
top 10 says whether B learned what A did not know. Last, A and B are served side by side
(half the users each, by user id), the same users react to one more round, and the A/B
readout of that log (`attnrec report`) says which one they clicked more.

    attnrec bench --feedback-loop [--rounds 3] [--epochs 10]
    python -m attnrec.bench.feedback_loop --out runs/feedback_loop

Writes OUT/feedback_loop.json and prints it. Nothing here asserts anything.
"""

from __future__ import annotations

import argparse
import json
import time
from dataclasses import asdict, replace
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from attnrec.bench.config import versions
from attnrec.model.ab_report import ab_report, report_text
from attnrec.model.checkpoint import load_checkpoint
from attnrec.model.simulate import PlantedPreference, brand_preference, liked_share, model_lists, run_loop
from attnrec.model.synthetic import ShopConfig, write_shop
from attnrec.serving.client import RecommenderClient
from attnrec.serving.config import ServingConfig
from attnrec.serving.variants import Variant


def train(paths: dict, out: Path, epochs: int, extra: list[str] = ()) -> float:
    """`attnrec train` on the shop; returns its seconds."""
    from attnrec.serving.cli import main

    started = time.monotonic()
    code = main(["train", "--interactions", str(paths["interactions"]), "--items", str(paths["items"]),
                 "--users", str(paths["users"]), "--out", str(out), "--epochs", str(epochs), "--quiet", *extra])
    if code:
        raise RuntimeError(f"attnrec train ended with {code}")
    return round(time.monotonic() - started, 1)


def histories_of(interactions: pa.Table) -> tuple[list[str], list[list[str]]]:
    """Users and their item ids in time order."""
    t = interactions.sort_by([("user_id", "ascending"), ("timestamp", "ascending")])
    users, items = t.column("user_id").to_pylist(), t.column("item_id").to_pylist()
    out: dict[str, list[str]] = {}
    for u, i in zip(users, items):
        out.setdefault(u, []).append(i)
    return list(out), list(out.values())


def service_loop(config: ServingConfig, pref: PlantedPreference, users: list[str], histories: list[list[str]],
                 rounds: int, seed: int) -> tuple[list[list[str]], list[float], dict]:
    """Serve `config` (with a feedback log) and run the simulated users against it over gRPC."""
    from ray import serve

    from attnrec.model.feedback_log import summary
    from attnrec.serving.app import ServeFile
    from attnrec.serving.config import DEFAULT_CONFIG
    from attnrec.serving.server import free_port, start_ray, start_service

    start_ray()
    port = free_port()
    deployments = {name: {"num_replicas": 1, "ray_actor_options": {"num_cpus": 0}}
                   for name in ("Recommender", "Explainer", "FeedbackLog")}
    serve_file = replace(ServeFile.load(DEFAULT_CONFIG), deployments=deployments).with_models(config)
    start_service(config, serve_file, port, free_port())
    client = RecommenderClient(f"127.0.0.1:{port}", timeout=120)

    def recommend(us, hs):
        lists, ids = [], []
        for s in range(0, len(us), 500):
            answer = client.recommend_batch([client.request(h, 10, u) for u, h in zip(us[s : s + 500],
                                                                                      hs[s : s + 500])])
            for r in answer.responses:
                if r.error.code:
                    raise RuntimeError(f"RecommendBatch entry failed: {r.error.message}")
                lists.append([i.item_id for i in r.items])
                ids.append(r.request_id)
        return lists, ids

    def send(events: pa.Table):
        rows = events.to_pylist()
        for s in range(0, len(rows), 1000):
            answer = client.feedback([client.event(**row) for row in rows[s : s + 1000]])
            if answer.errors:
                raise RuntimeError(f"Feedback refused events: {answer.errors[0].message}")

    try:
        final, shares = run_loop(recommend, send, pref, users, histories, rounds, int(time.time() * 1000), seed)
        time.sleep(2.5)  # the last answers reach the log as impressions
    finally:
        client.close()
        serve.shutdown()
    return final, shares, summary(config.feedback_dir)


def measure(out: Path, rounds: int, epochs: int, brand: str, seed: int) -> dict:
    out = out.resolve()  # replicas do not share this process's working directory
    shop = ShopConfig(seed=seed)
    paths = write_shop(out / "shop", shop)
    pref = brand_preference(pq.read_table(paths["items"]), brand)
    if not pref.liked:
        raise ValueError(f"the shop has no item of {brand!r}")
    seconds_a = train(paths, out / "model_a", epochs)
    users, histories = histories_of(pq.read_table(paths["interactions"], columns=["user_id", "item_id", "timestamp"]))
    log_dir = out / "feedback"
    served_a = ServingConfig(checkpoint=str(out / "model_a"), device="cpu", feedback_dir=str(log_dir))
    final, shares, logged = service_loop(served_a, pref, users, histories, rounds, seed)
    seconds_b = train(paths, out / "model_b", epochs, ["--feedback", str(log_dir)])
    a, b = load_checkpoint(out / "model_a"), load_checkpoint(out / "model_b")
    share_a, share_b = (liked_share(model_lists(m, users, final), pref.liked) for m in (a, b))
    side_by_side = replace(served_a, feedback_dir=str(out / "ab_feedback"),
                           models=(Variant("a", str(out / "model_a"), 0.5), Variant("b", str(out / "model_b"), 0.5)))
    service_loop(side_by_side, pref, users, final, 1, seed + 1)
    readout = ab_report(out / "ab_feedback", control=a.model_version)
    print(report_text(readout))
    return {"shop": asdict(shop), "brand": brand, "liked_items": len(pref.liked),
            "catalogue_share_of_brand": round(len(pref.liked) / shop.n_items, 4),
            "preference": {k: v for k, v in asdict(pref).items() if k != "liked"},
            "rounds": rounds, "epochs": epochs, "liked_share_shown_by_a_per_round": [round(s, 4) for s in shares],
            "logged": {"events": logged["events"]["by_type"], "impressions": logged["impressions"]["rows"]},
            "liked_share_at_10": {"model_a": round(share_a, 4), "model_b": round(share_b, 4)},
            "b_over_a": round(share_b / share_a, 2) if share_a else None,
            "ab_readout": {"log": str(out / "ab_feedback"), "versions": readout["versions"],
                           "comparisons": readout["comparisons"]},
            "model_versions": {"model_a": a.model_version, "model_b": b.model_version},
            "train_seconds": {"model_a": seconds_a, "model_b": seconds_b}, "versions": versions(with_ray=True)}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--rounds", type=int, default=3, help="rounds of showing and reacting")
    p.add_argument("--epochs", type=int, default=10, help="training epochs of A and of B")
    p.add_argument("--brand", default="brand7", help="the brand the simulated users like")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", type=Path, default=Path("runs/feedback_loop"))
    args = p.parse_args(argv)
    args.out.mkdir(parents=True, exist_ok=True)
    result = measure(args.out, args.rounds, args.epochs, args.brand, args.seed)
    (args.out / "feedback_loop.json").write_text(json.dumps(result, indent=2))
    print(json.dumps({k: v for k, v in result.items() if k not in ("shop", "versions")}, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
