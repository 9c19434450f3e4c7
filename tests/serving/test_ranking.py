"""Two-stage ranking: candidates from the item index, then exact scores, masks and filters as
whole-catalogue ranking applies them (no Ray)."""

import json
import logging
import shutil

import numpy as np
import pytest

from attnrec.explain.counterfactual import CounterfactualConfig, counterfactual, score_removals
from attnrec.explain.feature_reasons import neutralised, values_of
from attnrec.model.checkpoint import load_checkpoint
from attnrec.model.retrieval import (
    INDEX_META,
    IndexConfig,
    Ranker,
    Retrieval,
    load_retriever,
    measured_recall,
    sampled_states,
    write_index,
)
from attnrec.serving.cli import main
from attnrec.serving.codec import Catalog, decode_recommend
from attnrec.serving.config import ServingConfig
from attnrec.serving.loaded import load
from attnrec.serving.ranking import rank
from attnrec.v1 import recommender_pb2 as pb

CONFIG = ServingConfig(checkpoint="unused", max_k=100)
HISTORIES = [["i1", "i2", "i3"], ["i7"], [f"i{j}" for j in range(40, 60)], ["i5", "i9", "i11", "i150", "i151"]]


@pytest.fixture(scope="module")
def indexed(checkpoint, tmp_path_factory):
    """A copy of the tiny checkpoint with an item index of 16 lists over exact vectors."""
    directory = tmp_path_factory.mktemp("indexed") / "ckpt"
    shutil.copytree(checkpoint, directory)
    ckpt = load_checkpoint(directory)
    exact_vectors = IndexConfig(n_lists=16, n_probe=16, codec="flat")  # proposals as exact scoring ranks them
    write_index(directory, ckpt.model, ckpt.model_version, ckpt.item_counts, exact_vectors)
    return directory


def queries(catalog, **kw):
    return [decode_recommend(pb.RecommendRequest(history=h, k=20, **kw), catalog, CONFIG) for h in HISTORIES]


def answers(ranked):
    return [r.items.tolist() for r in ranked]


def test_scanning_every_list_answers_exactly_as_whole_catalogue_scoring(indexed):
    ckpt = load_checkpoint(indexed)
    catalog = Catalog(ckpt)
    exact_ranker = Ranker(ckpt.model)
    two_stage_ranker = Ranker(ckpt.model, Retrieval(load_retriever(indexed, ckpt.model_version, len(ckpt.items)),
                                                    candidates=40))
    for kw in ({}, {"include_history": True}):
        exact, two_stage = rank(exact_ranker, queries(catalog, **kw)), rank(two_stage_ranker, queries(catalog, **kw))
        assert answers(two_stage) == answers(exact)
        for e, t in zip(exact, two_stage):
            np.testing.assert_allclose(t.scores, e.scores, rtol=1e-5)  # scored exactly, not by the index
    for q, r in zip(queries(catalog), rank(two_stage_ranker, queries(catalog))):
        assert not set(r.items.tolist()) & set(q.seen.tolist())  # seen items stay masked
        assert len(r.items) == 20  # the index proposes room for the seen ones
    picked = queries(catalog, candidate_item_ids=["i1", "i60", "i61", "i62"])  # a candidate list is scored as given
    assert answers(rank(two_stage_ranker, picked)) == answers(rank(exact_ranker, picked))


def test_fewer_lists_trade_recall_and_the_check_measures_it(indexed):
    ckpt = load_checkpoint(indexed)
    states = sampled_states(ckpt.model, ckpt.item_counts, 200)
    every = measured_recall(ckpt.model, load_retriever(indexed, ckpt.model_version, len(ckpt.items)), states, 40)
    one = measured_recall(ckpt.model, load_retriever(indexed, ckpt.model_version, len(ckpt.items), n_probe=1),
                          states, 40)
    assert every == 1.0 and one < 1.0


def test_replicas_use_an_index_only_where_it_fits_the_weights(indexed, checkpoint, caplog):
    assert load(str(indexed), "cpu", ServingConfig(checkpoint="x", retrieval="on")).retrieval is not None
    assert load(str(indexed), "cpu", ServingConfig(checkpoint="x")).retrieval is None  # 200 items: below the size
    assert load(str(indexed), "cpu", ServingConfig(checkpoint="x", retrieval="off")).retrieval is None
    with caplog.at_level(logging.WARNING):
        assert load(str(checkpoint), "cpu", ServingConfig(checkpoint="x", retrieval="on")).retrieval is None
    assert "no item index" in caplog.text and "attnrec index --checkpoint" in caplog.text
    stale = indexed.parent / "stale"
    shutil.copytree(indexed, stale)
    meta = json.loads((stale / INDEX_META).read_text())
    (stale / INDEX_META).write_text(json.dumps({**meta, "model_version": "other-weights"}))
    caplog.clear()
    with caplog.at_level(logging.WARNING):
        assert load(str(stale), "cpu", ServingConfig(checkpoint="x", retrieval="on")).retrieval is None
    assert "built for other-weights" in caplog.text
    with pytest.raises(ValueError, match="retrieval"):
        ServingConfig(checkpoint="x", retrieval="sometimes")


def test_the_index_command_writes_the_index_and_reports_its_recall(checkpoint, tmp_path, capsys):
    directory = tmp_path / "ckpt"
    shutil.copytree(checkpoint, directory)
    assert main(["index", "--checkpoint", str(directory), "--lists", "8", "--probe", "8",
                 "--check-queries", "100"]) == 0
    out = capsys.readouterr().out
    assert "(faiss IVF-SQ8): 8 lists" in out and "recall@10 against exact scoring by lists probed" in out
    every_list = json.loads((directory / INDEX_META).read_text())
    assert every_list["kind"] == "faiss IVF-SQ8" and every_list["recall_at_10"] >= 0.99  # 8-bit codes choose well
    assert main(["index", "--checkpoint", str(directory), "--lists", "16", "--recall", "1.0", "--codec", "flat"]) == 0
    tuned = json.loads((directory / INDEX_META).read_text())
    assert [p for p, _ in tuned["probes_tried"]] == [8, 12, 16][: len(tuned["probes_tried"])]  # steps of ~sqrt(2)
    assert tuned["recall_at_10"] == 1.0 and tuned["n_probe"] == tuned["probes_tried"][-1][0]
    assert (directory / "ann.faiss").read_bytes()[:1] != b"\x80"  # faiss's own format, not a pickle
    assert json.loads((directory / INDEX_META).read_text())["model_version"] == load_checkpoint(directory).model_version


def test_replicas_answer_recommend_batch_and_explain_through_the_index(indexed, monkeypatch):
    import asyncio

    from attnrec.model.retrieval import Retriever
    from attnrec.serving import deployments
    from tests.serving.test_deployments import Context
    from tests.serving.test_variants import unbatched

    searched = []
    real_search = Retriever.search
    monkeypatch.setattr(Retriever, "search", lambda self, states, n: searched.append(len(states))
                        or real_search(self, states, n))
    config = ServingConfig(checkpoint=str(indexed), device="cpu", retrieval="on", retrieval_candidates=40)
    replica = deployments.Recommender.func_or_class(config)
    replica._rank_batched = unbatched  # @serve.batch needs a Serve replica around it
    exact = load(str(indexed), "cpu")
    want = answers(rank(exact.ranker, queries(exact.catalog)))

    one = asyncio.run(replica.Recommend(pb.RecommendRequest(history=HISTORIES[0], k=20), Context()))
    batch = asyncio.run(replica.RecommendBatch(pb.RecommendBatchRequest(
        requests=[pb.RecommendRequest(history=h, k=20) for h in HISTORIES]), Context()))
    assert [i.item_id for i in one.items] == [exact.catalog.item_ids[i] for i in want[0]]
    assert [[i.item_id for i in r.items] for r in batch.responses] == [
        [exact.catalog.item_ids[i] for i in w] for w in want]
    assert searched == [1, len(HISTORIES)]  # both went through the index

    explainer = deployments.Explainer.func_or_class(config)
    assert explainer.loaded.retrieval is not None
    searched.clear()
    why = asyncio.run(explainer._explain_batched.__wrapped__(explainer, [pb.ExplainRequest(
        history=HISTORIES[2], counterfactual=True).SerializeToString()]))
    answer = pb.ExplainResponse.FromString(why[0][0])
    assert answer.item_id == exact.catalog.item_ids[want[2][0]]  # the user's top item, found through the index
    assert searched  # the top item and the counterfactual's check ranked as Recommend does


def test_a_rollout_keeps_an_indexed_service_indexed(indexed, checkpoint):
    from attnrec.model.checkpoint import CheckpointError
    from attnrec.serving.loaded import check_rollout

    with pytest.raises(CheckpointError, match="has an item index .* attnrec index --checkpoint"):
        check_rollout(str(indexed), str(checkpoint))
    check_rollout(str(checkpoint), str(indexed))  # gaining an index is fine
    check_rollout(str(indexed), str(indexed))


def test_feature_reasons_rank_among_the_candidates_as_two_stage_recommend_does(indexed):
    ckpt = load_checkpoint(indexed)
    model, history = ckpt.model, np.array([3, 8, 13, 21, 34])
    user = [c[5] for c in ckpt.user_codes]
    variants = [[], *[[v] for v in values_of(model, history, user)]]
    every_list = load_retriever(indexed, ckpt.model_version, len(ckpt.items))  # proposes the exact top items
    whole_catalogue = Retrieval(every_list, len(ckpt.items))  # every item a candidate
    for target in (1, 50, 120):
        exact, exact_logits = neutralised(model, history, user, target, variants)
        whole, whole_logits = neutralised(model, history, user, target, variants, whole_catalogue)
        assert whole.tolist() == exact.tolist()  # every item a candidate: the whole catalogue's ranks
        np.testing.assert_allclose(whole_logits, exact_logits, rtol=1e-5)
        few, _ = neutralised(model, history, user, target, variants, Retrieval(every_list, 10))
        top = exact <= 10  # within the candidates' reach, ranked as exactly; beyond it, below every candidate
        assert few[top].tolist() == exact[top].tolist() and (few[~top] > 10).all() and (few <= 16).all()


def test_counterfactual_sets_are_searched_among_the_candidates_as_two_stage_recommend_ranks(indexed):
    ckpt = load_checkpoint(indexed)
    model, seen = ckpt.model, np.array([3, 8, 13, 21, 34, 55, 89, 144])
    every_list = load_retriever(indexed, ckpt.model_version, len(ckpt.items))
    whole_catalogue = Retrieval(every_list, len(ckpt.items))
    ranked = rank(Ranker(model), [decode_recommend(pb.RecommendRequest(history=[f"i{i}" for i in seen], k=3),
                                                   Catalog(ckpt), CONFIG)])[0].items
    for target in ranked:
        exact = counterfactual(model, seen, None, int(target), CounterfactualConfig(k=3))
        whole = counterfactual(model, seen, None, int(target), CounterfactualConfig(k=3), whole_catalogue)
        assert whole == exact  # every item a candidate: the same search, set and ranks
        few = counterfactual(model, seen, None, int(target), CounterfactualConfig(k=3), Retrieval(every_list, 20))
        if few.found:  # checked as a caller of two-stage Recommend would see it
            left = np.delete(seen, list(few.positions))
            again = score_removals(model, left, None, int(target), [()], 3, 1, Retrieval(every_list, 20))
            assert again.rank[0] > 3 and again.rank[0] == few.new_rank and again.top[0] == few.new_top
