import numpy as np
import pytest
import torch

from attnrec.model.checkpoint import load_checkpoint
from attnrec.model.retrieval import Ranker
from attnrec.serving.codec import Catalog, InvalidArgument, decode_recommend, encode_recommend
from attnrec.serving.config import ServingConfig
from attnrec.serving.ranking import rank
from attnrec.v1 import recommender_pb2 as pb


@pytest.fixture(scope="module")
def ckpt(checkpoint):
    return load_checkpoint(checkpoint)


@pytest.fixture(scope="module")
def catalog(ckpt):
    return Catalog(ckpt)


CONFIG = ServingConfig(checkpoint="unused", max_k=50, max_history=30, max_candidates=5)


def req(**kw):
    return pb.RecommendRequest(**{"history": ["i1", "i2", "i3"], "k": 5, **kw})


@pytest.mark.parametrize("kw, field", [
    (dict(k=0), "k"), (dict(k=-1), "k"), (dict(k=51), "k"),
    (dict(history=[], user_id=""), "history"),
    (dict(history=["i1"] * 31), "history"),
    (dict(candidate_item_ids=["i1", "i1"]), "candidate_item_ids"),
    (dict(candidate_item_ids=["i1", ""]), "candidate_item_ids"),
    (dict(candidate_item_ids=[f"i{j}" for j in range(6)]), "candidate_item_ids"),
    (dict(user_features={"shoe_size": "9"}), "user_features[shoe_size]"),
    (dict(user_features={"age": "old"}), "user_features[age]"),
])
def test_bad_fields_are_named(catalog, kw, field):
    with pytest.raises(InvalidArgument) as e:
        decode_recommend(req(**kw), catalog, CONFIG)
    assert e.value.field == field and str(e.value).startswith(field + ":")


def test_a_context_with_nothing_known_is_refused_but_a_known_user_is_enough(catalog):
    with pytest.raises(InvalidArgument, match="nothing to recommend from"):
        decode_recommend(req(history=["zz", "yy"], user_id="stranger"), catalog, CONFIG)
    assert decode_recommend(req(history=[], user_id="u3"), catalog, CONFIG).history.size == 0
    assert decode_recommend(req(history=["zz"], user_features={"gender": "f"}), catalog, CONFIG).unknown_item_ids


def test_unknown_ids_reported_once_in_order(catalog):
    q = decode_recommend(req(history=["zz", "i1", "yy", "zz"], candidate_item_ids=["i5", "xx"]), catalog, CONFIG)
    assert q.unknown_item_ids == ("zz", "yy", "xx")
    assert len(q.history) == 1
    assert catalog.item_ids[q.candidates].tolist() == ["i5"]


def test_user_id_selects_stored_features_and_request_overrides(catalog, ckpt):
    q = decode_recommend(req(user_id="u3"), catalog, CONFIG)
    row = ckpt.users.lookup(["u3"])[0]
    assert [int(c) for c in q.user] == [int(c[row]) for c in ckpt.user_codes] and not q.unknown_user
    q2 = decode_recommend(req(user_id="nobody", user_features={"gender": "f"}), catalog, CONFIG)
    assert q2.unknown_user and int(q2.user[1]) >= 2 and int(q2.user[0]) == 0


@torch.no_grad()
def brute_force(ckpt, query):
    seq = torch.as_tensor(query.history[None, :])
    user = None if query.user is None else [torch.as_tensor(np.asarray(c)[None]) for c in query.user]
    scores = ckpt.model.score_all(seq, user)[0]
    if not query.include_history:
        scores[query.seen] = float("-inf")
    if query.candidates is not None:
        allowed = torch.full_like(scores, float("-inf"))
        allowed[query.candidates] = 0
        scores = scores + allowed
    top = scores.topk(query.k)
    keep = torch.isfinite(top.values)
    return top.indices[keep].numpy(), top.values[keep].numpy()


def test_rank_matches_brute_force_and_batches_equal_singles(ckpt, catalog):
    reqs = [req(), req(history=["i7"], k=3, include_history=True), req(history=["i9", "i8"], user_id="u5"),
            req(history=["i1", "i2", "i3", "i4"], candidate_item_ids=["i4", "i10", "i11", "i12"], k=2),
            req(history=["i1"], candidate_item_ids=["i1", "nope"], k=2)]
    queries = [decode_recommend(r, catalog, CONFIG) for r in reqs]
    together = rank(Ranker(ckpt.model), queries)
    for q, r in zip(queries, together):
        items, scores = brute_force(ckpt, q)
        assert r.items.tolist() == items.tolist()
        np.testing.assert_allclose(r.scores, scores, rtol=1e-4, atol=1e-5)
        alone = rank(Ranker(ckpt.model), [q])[0]
        assert alone.items.tolist() == r.items.tolist()
    seen = set(queries[0].seen.tolist())
    assert not seen & set(together[0].items.tolist())  # history never recommended by default
    assert set(together[1].items.tolist()) and len(together[1].items) == 3
    assert "i4" not in catalog.item_ids[together[3].items].tolist()  # seen candidate dropped
    assert len(together[4].items) == 0  # the only known candidate was seen


def test_encode_response(catalog, ckpt):
    q = decode_recommend(req(history=["i1", "what"]), catalog, CONFIG)
    r = encode_recommend(q, rank(Ranker(ckpt.model), [q])[0], catalog)
    assert len(r.items) == 5 and list(r.unknown_item_ids) == ["what"] and r.history_used == 1
    assert r.model_version == ckpt.model_version
    assert [i.score for i in r.items] == sorted((i.score for i in r.items), reverse=True)


def test_answer_batch_isolates_bad_entries_and_chunks(ckpt, catalog):
    from attnrec.serving.ranking import answer_batch

    request = pb.RecommendBatchRequest(requests=[req(), req(k=0), req(history=["i9"], k=2), req(), req()])
    response, sizes = answer_batch(request, Ranker(ckpt.model), catalog, CONFIG, chunk_size=3)
    assert [len(r.items) for r in response.responses] == [5, 0, 2, 5, 5]
    assert response.responses[1].error.message.startswith("requests[1].k:")
    assert sizes == [2, 2]  # chunks of three entries; the bad one is not ranked
    alone = encode_recommend(decode_recommend(req(), catalog, CONFIG),
                             rank(Ranker(ckpt.model), [decode_recommend(req(), catalog, CONFIG)])[0], catalog)
    assert [i.item_id for i in response.responses[0].items] == [i.item_id for i in alone.items]
    np.testing.assert_allclose([i.score for i in response.responses[0].items], [i.score for i in alone.items],
                               rtol=1e-5)


@pytest.mark.parametrize("field, request_kwargs", [
    ("history", dict(history=["x" * 300])),
    ("candidate_item_ids", dict(history=["i1"], candidate_item_ids=["é" * 200])),
    ("user_id", dict(history=["i1"], user_id="u" * 5000)),
    ("user_features", dict(history=["i1"], user_features={"age": "9" * 1000})),
])
def test_an_overlong_id_is_refused_naming_the_field_and_never_echoed_whole(catalog, field, request_kwargs):
    with pytest.raises(InvalidArgument) as e:
        decode_recommend(pb.RecommendRequest(k=3, **request_kwargs), catalog, CONFIG)
    assert e.value.field == field and "at most 256" in str(e.value) and len(str(e.value).encode()) < 300


def test_error_details_stay_under_a_kilobyte(catalog):
    ids = [f"unknown-{i}-" + "z" * 240 for i in range(20)]  # no known item: the message lists unknown ids
    with pytest.raises(InvalidArgument) as e:
        decode_recommend(pb.RecommendRequest(k=3, history=ids), catalog, CONFIG)
    assert e.value.field == "history" and "unknown-0-" in str(e.value) and len(str(e.value).encode()) <= 1024
    assert len(str(InvalidArgument("history", "é" * 5000)).encode()) <= 1024


def test_calibrated_rerank_picks_from_the_models_best_and_respects_the_masks(catalog, ckpt):
    assert catalog.calibration_feature == "category"  # the shop's categorical item feature
    history = ["i1", "i2", "i3", "i4"]
    plain = decode_recommend(req(history=history, k=10, rerank="none"), catalog, CONFIG)
    fair = decode_recommend(req(history=history, k=10, rerank="calibrated", rerank_weight=0.5), catalog, CONFIG)
    assert plain.rerank_weight == 0 and fair.rerank_weight == 0.5
    top_100 = rank(Ranker(ckpt.model), [decode_recommend(req(history=history, k=100), catalog,
                                                 ServingConfig(checkpoint="unused", max_k=100))])[0]
    plain_ranked, fair_ranked = rank(Ranker(ckpt.model), [plain, fair])
    assert len(fair_ranked.items) == 10 and len(set(fair_ranked.items.tolist())) == 10
    assert set(fair_ranked.items.tolist()) <= set(top_100.items.tolist())  # chosen from the model's best 100
    assert not set(fair_ranked.items.tolist()) & set(fair.seen.tolist())  # history items stay masked
    assert rank(Ranker(ckpt.model), [fair])[0].items.tolist() == fair_ranked.items.tolist()  # alone = in a batch
    assert rank(Ranker(ckpt.model), [fair])[0].items.tolist() == rank(Ranker(ckpt.model), [fair])[0].items.tolist()
    assert fair_ranked.items.tolist() != plain_ranked.items.tolist()


def test_the_server_default_rerank_applies_when_a_request_leaves_it_empty(catalog):
    calibrating = ServingConfig(checkpoint="unused", rerank="calibrated", rerank_weight=0.2)
    assert decode_recommend(req(), catalog, calibrating).rerank_weight == 0.2
    assert decode_recommend(req(rerank="none"), catalog, calibrating).rerank_weight == 0
    assert decode_recommend(req(), catalog, CONFIG).rerank_weight == 0


@pytest.mark.parametrize("kw, field", [(dict(rerank="fair"), "rerank"), (dict(rerank_weight=1.5), "rerank_weight"),
                                       (dict(rerank="calibrated", rerank_weight=-0.1), "rerank_weight")])
def test_bad_rerank_fields_are_named(catalog, kw, field):
    with pytest.raises(InvalidArgument) as e:
        decode_recommend(req(**kw), catalog, CONFIG)
    assert str(e.value).startswith(field)
