"""Two-stage retrieval for large catalogues: an approximate maximum-inner-product index over
the model's item vectors finds a few hundred candidates per user, which are then scored
exactly (and masked, and re-ranked) as candidate lists always are.

The index is faiss's inverted file (IVF, inner product): the items are split into `n_lists`
clusters by k-means on their vectors, and a query scans the `n_probe` clusters whose
centroids score highest. Within a list each vector is stored as 8-bit codes, one per
dimension (IVF-SQ8): a quarter of the memory a query's scan reads, so it runs about a third
faster than over exact floats, and the candidates it proposes are re-scored exactly anyway,
so only the choice of candidates is approximate (`codec="flat"` keeps exact vectors). It
builds in seconds where a graph index takes minutes, and its one knob (`n_probe`) trades
recall for time. It is written beside the checkpoint in faiss's own binary format (no
pickle), with a JSON file that ties it to the weights it was built from:

    ann.faiss   the index; id i is item index i (1..N; 0, padding, is not in it)
    ann.json    {"model_version", "n_items", "n_lists", "n_probe", "metric", "built_s", ...}
"""

from __future__ import annotations

import itertools
import json
import logging
import math
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch

from attnrec.model.onnx_encoder import Encode
from attnrec.model.sasrec import PAD, SASRec

log = logging.getLogger(__name__)

INDEX_FILE, INDEX_META = "ann.faiss", "ann.json"
CODECS = {"sq8": "faiss IVF-SQ8", "flat": "faiss IVF-Flat"}
# lists probed, tried in this order until recall is reached: steps of about sqrt(2), so the
# chosen count is at most ~1.4x the least that reaches it (doubling overshot by up to 2x)
PROBES = (8, 12, 16, 24, 32, 48, 64, 96, 128, 192, 256, 384, 512, 768, 1024, 1536, 2048, 3072, 4096)


@dataclass(frozen=True)
class IndexConfig:
    n_lists: int = 0  # k-means clusters; 0 = about 4 * sqrt(N) (1,024 lists at 65k items, 4,000 at 1M)
    # clusters a query scans (the recall knob); 0 = the fewest of PROBES whose two-stage
    # answers reach `recall` on `check_queries` sampled histories with `candidates` candidates
    n_probe: int = 0
    recall: float = 0.99  # recall@10 against exact scoring that the chosen n_probe must reach
    candidates: int = 300  # as serving's retrieval_candidates
    check_queries: int = 1_000
    train_sample: int = 256  # k-means trains on at most this many items per list
    threads: int = 0  # 0 = every core (building is offline)
    seed: int = 0
    codec: str = "sq8"  # how list entries are stored: "sq8" (8 bits a dimension) or "flat" (exact floats)

    def __post_init__(self):
        if self.codec not in CODECS:
            raise ValueError(f"codec must be one of {', '.join(CODECS)}, not {self.codec!r}")

    def lists_for(self, n_items: int) -> int:
        return self.n_lists or max(1, min(n_items // 39, int(4 * math.sqrt(n_items))))


def faiss_module():
    # here: only catalogues that use an index need it loaded; its loader logs each CPU-specific
    # build it looks for and does not find, which says nothing to an operator
    logging.getLogger("faiss.loader").setLevel(logging.WARNING)
    import faiss

    return faiss


def item_matrix(model) -> np.ndarray:
    """(N, D) float32: item index i + 1's vector in row i, as `score_all` multiplies them."""
    with torch.inference_mode():
        vectors = model.all_item_vectors()[1:]
    return np.ascontiguousarray(vectors.float().cpu().numpy())


def build_index(vectors: np.ndarray, config: IndexConfig = IndexConfig()):
    """An IVF inner-product index over `vectors` (row i = item index i + 1), its entries
    stored as `config.codec` says."""
    faiss = faiss_module()
    if config.threads:
        faiss.omp_set_num_threads(config.threads)
    n, d = vectors.shape
    n_lists = config.lists_for(n)
    quantizer = faiss.IndexFlatIP(d)
    if config.codec == "flat":
        index = faiss.IndexIVFFlat(quantizer, d, n_lists, faiss.METRIC_INNER_PRODUCT)
    else:
        index = faiss.IndexIVFScalarQuantizer(quantizer, d, n_lists, faiss.ScalarQuantizer.QT_8bit,
                                              faiss.METRIC_INNER_PRODUCT)
    rng = np.random.default_rng(config.seed)
    sample = vectors if n <= n_lists * config.train_sample else vectors[rng.choice(n, n_lists * config.train_sample,
                                                                                    replace=False)]
    index.cp.seed = config.seed
    index.train(sample)
    index.add_with_ids(vectors, np.arange(1, n + 1, dtype=np.int64))
    index.nprobe = min(n_lists, config.n_probe or 8)
    return index


@dataclass
class Retriever:
    """A loaded index and the checkpoint it belongs to."""

    index: object  # a faiss IVF index (IVF-SQ8 or IVF-Flat)
    meta: dict

    @property
    def n_probe(self) -> int:
        return self.index.nprobe

    def search(self, states: torch.Tensor, n: int) -> np.ndarray:
        """(B, D) user states -> (B, n) item indices, best first by approximate inner product;
        0 where the probed lists held fewer than n items."""
        return propose(self.index, states, n)


def propose(index, states: torch.Tensor, n: int) -> np.ndarray:
    """The index's n best items for each user state: (B, D) -> (B, n) item indices, 0 where the
    probed lists held fewer than n."""
    _, ids = index.search(np.ascontiguousarray(states.detach().float().cpu().numpy()), n)
    return np.where(ids < 0, 0, ids)


@torch.inference_mode()
def scored_candidates(model, states: torch.Tensor, proposed: np.ndarray) -> tuple[torch.Tensor, torch.Tensor]:
    """Proposed items (B, C) as a tensor, and their exact scores (B, C) from the model's item
    table, as `score_all` would give them; -inf where none was proposed (index 0)."""
    vectors = model.all_item_vectors()
    columns = torch.as_tensor(proposed, device=vectors.device)
    scores = torch.einsum("bd,bcd->bc", states, vectors[columns]).masked_fill_(columns == 0, float("-inf"))
    return columns, scores


@dataclass(frozen=True)
class Retrieval:
    """Two-stage retrieval for whole-catalogue queries: the index proposes `candidates` items
    per query (plus room for the ones a query has seen), which are then scored exactly."""

    retriever: Retriever
    candidates: int = 300


@dataclass(frozen=True)
class Ranker:
    """How a replica ranks: its model, two-stage `retrieval` (None = exact scoring over the
    whole catalogue) and the engine of its user states (`encode`, model/onnx_encoder.py;
    None = `model.encode`). Recommend and Explain's checks rank through the same value."""

    model: SASRec
    retrieval: Retrieval | None = None
    encode: Encode | None = None

    def states(self, seq: torch.Tensor, user: list[torch.Tensor] | None) -> torch.Tensor:
        """User states (B, D) for left-padded histories (B, T) and the users' feature codes."""
        return (self.encode or self.model.encode)(seq, user)


@torch.inference_mode()
def beside_target(model, states: torch.Tensor, seen: Sequence[np.ndarray], target: int,
                  retrieval: Retrieval | None = None) -> tuple[torch.Tensor | None, torch.Tensor, torch.Tensor]:
    """What item `target` competes with for each user state (S, D), whose seen items are
    `seen[s]`: (columns, scores, target logit (S,)). Without `retrieval` the scores cover the
    whole catalogue, (S, N+1) by item index, and columns is None; with it, the candidates the
    index proposes for each state (as two-stage Recommend ranks them), (S, C) with their item
    indices in columns. Padding, seen items and the target itself score -inf; the target is
    scored apart, so its logit counts whether the index proposed it or not."""
    if retrieval is None:
        columns, scores = None, states @ model.all_item_vectors().T  # (S, N+1)
        target_scores = scores[:, target].clone()  # from the same product: the target never outranks itself
        rows = np.repeat(np.arange(len(seen)), [len(h) for h in seen])
        cols = np.concatenate([np.asarray(h, dtype=np.int64) for h in seen])
        scores[torch.as_tensor(rows, device=states.device), torch.as_tensor(cols, device=states.device)] = float("-inf")
        scores[:, [PAD, target]] = float("-inf")
    else:
        proposed = retrieval.retriever.search(states, retrieval.candidates + max(len(h) for h in seen))
        for r, h in enumerate(seen):  # room for the seen ones, as Recommend has; then ranked out
            proposed[r, np.isin(proposed[r], h) | (proposed[r] == target)] = 0
        columns, scores = scored_candidates(model, states, proposed)  # (S, C), -inf at 0
        target_scores = scored_candidates(model, states, np.full((len(states), 1), target))[1][:, 0]
    return columns, scores, target_scores


def target_ranks(model, states: torch.Tensor, target: int, seen: np.ndarray,
                 retrieval: Retrieval | None = None) -> tuple[np.ndarray, np.ndarray]:
    """(1-based rank, logit) of item `target` for each user state (S, D), padding and the `seen`
    items ranked out, whether or not `target` is among them; ranked as `beside_target` says."""
    _, scores, target_scores = beside_target(model, states, [seen] * len(states), target, retrieval)
    ranks = (scores > target_scores[:, None]).sum(1) + 1
    return ranks.cpu().numpy(), target_scores.double().cpu().numpy()


def write_index(directory: str | Path, model, model_version: str, item_counts: np.ndarray | None,
                config: IndexConfig = IndexConfig()) -> dict:
    """Build the index of a model's item vectors, choose its n_probe (unless config sets one)
    from the recall it measures, and store it beside the checkpoint. Returns its metadata,
    with the recall@10 measured at each n_probe tried."""
    vectors = item_matrix(model)
    started = time.perf_counter()
    index = build_index(vectors, config)
    built_s = time.perf_counter() - started
    states = sampled_states(model, item_counts, config.check_queries, seed=config.seed)
    tried = tune_probe(model, index, states, config.candidates, config.recall, fixed=config.n_probe)
    d = Path(directory)
    tmp = d / (INDEX_FILE + ".tmp")
    faiss_module().write_index(index, str(tmp))
    tmp.replace(d / INDEX_FILE)
    meta = {"model_version": model_version, "n_items": int(vectors.shape[0]), "dim": int(vectors.shape[1]),
            "n_lists": int(index.nlist), "n_probe": int(index.nprobe), "metric": "inner_product",
            "kind": CODECS[config.codec], "built_s": round(built_s, 2), "recall_at_10": tried[-1][1],
            "probes_tried": tried, "config": asdict(config)}
    (d / INDEX_META).write_text(json.dumps(meta, indent=1))
    return meta


def tune_probe(model, index, states: torch.Tensor, candidates: int, target: float,
               fixed: int = 0) -> list[tuple[int, float]]:
    """Set index.nprobe to `fixed`, or to the fewest lists of PROBES (then doubling) whose
    two-stage answers reach recall@10 `target`; returns [(n_probe, recall@10)] as tried."""
    exact = exact_top(model, states)
    tried = []
    for probe in [fixed] if fixed else itertools.chain(PROBES, (PROBES[-1] * 2**i for i in itertools.count(1))):
        index.nprobe = min(probe, index.nlist)
        tried.append((int(index.nprobe), round(recall_at(exact, two_stage_top(model, index, states, candidates)), 4)))
        if fixed or tried[-1][1] >= target or index.nprobe == index.nlist:
            return tried
    raise AssertionError("unreachable: the probes grow until they cover every list")


def _meta(directory: Path) -> dict | None:
    """The metadata of the checkpoint's index; None when it has no index ({} when only the metadata is gone)."""
    if not (directory / INDEX_FILE).exists():
        return None
    return json.loads((directory / INDEX_META).read_text()) if (directory / INDEX_META).exists() else {}


def _fits(meta: dict, model_version: str, n_items: int) -> bool:
    return meta.get("model_version") == model_version and meta.get("n_items") == n_items


def has_index(directory: str | Path, model_version: str, n_items: int) -> bool:
    """Whether the checkpoint holds an index built for these weights (reads only its metadata)."""
    meta = _meta(Path(directory))
    return meta is not None and _fits(meta, model_version, n_items)


def load_retriever(directory: str | Path, model_version: str, n_items: int, n_probe: int = 0) -> Retriever | None:
    """The checkpoint's index, or None (with a log line saying why) when it has none or one
    built for other weights; `n_probe` > 0 overrides the stored one."""
    d = Path(directory)
    meta = _meta(d)
    if meta is None:
        return None
    if not _fits(meta, model_version, n_items):
        log.warning("%s: the item index was built for %s (%s items), not these weights (%s, %d items); "
                    "scoring exactly until `attnrec index --checkpoint %s` rebuilds it",
                    d, meta.get("model_version", "unknown weights"), meta.get("n_items", "?"), model_version,
                    n_items, d)
        return None
    index = faiss_module().read_index(str(d / INDEX_FILE))
    if n_probe:
        index.nprobe = min(n_probe, index.nlist)
    return Retriever(index, meta)


def recall_at(exact: np.ndarray, approximate: np.ndarray) -> float:
    """Mean share of each row's exact top items found in its approximate answer (same k)."""
    hits = [len(set(e.tolist()) & set(a.tolist())) / max(1, len(e)) for e, a in zip(exact, approximate)]
    return float(np.mean(hits)) if hits else 1.0


def sampled_states(model, item_counts: np.ndarray | None, n: int, length: int = 20, seed: int = 0) -> torch.Tensor:
    """(n, D) user states from histories of `length` items drawn by training popularity (uniform
    without counts): queries shaped like real traffic, for checking an index's recall."""
    rng = np.random.default_rng(seed)
    n_items = model.config.n_items
    weights = None
    if item_counts is not None and item_counts[1:].sum() > 0:
        weights = item_counts[1:] / item_counts[1:].sum()
    histories = 1 + rng.choice(n_items, size=(n, min(length, model.config.max_len)), p=weights)
    states = []
    with torch.inference_mode():
        device = model.item_emb.weight.device
        for start in range(0, n, 256):
            states.append(model.encode(torch.as_tensor(histories[start:start + 256], device=device)))
    return torch.cat(states)


def exact_top(model, states: torch.Tensor, k: int = 10) -> np.ndarray:
    """(B, k) item indices of the best items by exact scoring of the whole catalogue."""
    with torch.inference_mode():
        tops = [(part @ model.all_item_vectors()[1:].T).topk(k, dim=1).indices for part in states.split(256)]
    return torch.cat(tops).cpu().numpy() + 1


def two_stage_top(model, index, states: torch.Tensor, candidates: int, k: int = 10) -> np.ndarray:
    """(B, k) item indices of the best of the index's candidates, scored exactly."""
    proposed = propose(index, states, candidates)
    _, scores = scored_candidates(model, states, proposed)
    return np.take_along_axis(proposed, scores.topk(k, dim=1).indices.cpu().numpy(), axis=1)


def measured_recall(model, retriever: Retriever, states: torch.Tensor, candidates: int, k: int = 10) -> float:
    """recall@k of the two-stage answer (index candidates, scored exactly) against exact
    scoring of the whole catalogue, for the given user states."""
    return recall_at(exact_top(model, states, k), two_stage_top(model, retriever.index, states, candidates, k))
