import numpy as np
import pytest

from attnrec.model.checkpoint import load_checkpoint
from attnrec.model.retrieval import Ranker
from attnrec.serving.codec import Catalog, InvalidArgument, decode_recommend
from attnrec.serving.config import ServingConfig
from attnrec.serving.explain_codec import answer_explain, answer_explains
from attnrec.serving.ranking import rank
from attnrec.v1 import recommender_pb2 as pb

CONFIG = ServingConfig(checkpoint="unused")
HISTORY = ["i3", "i8", "i13", "i21"]


@pytest.fixture(scope="module")
def ckpt(checkpoint):
    return load_checkpoint(checkpoint)


def ask(ckpt, **kw):
    return answer_explain(pb.ExplainRequest(history=HISTORY, n_steps=8, **kw), ckpt, Catalog(ckpt), CONFIG)


def test_top_k_explains_the_recommendations_in_rank_order(ckpt):
    catalog = Catalog(ckpt)
    top = rank(Ranker(ckpt.model), [decode_recommend(pb.RecommendRequest(history=HISTORY, k=3), catalog, CONFIG)])[0]
    r = ask(ckpt, top_k=3)
    assert [r.item_id] + [m.item_id for m in r.more] == catalog.item_ids[top.items].tolist()
    assert all(m.contributions and m.HasField("convergence_delta") for m in r.more)


def test_methods_select_the_costly_work(ckpt):
    ig_only = ask(ckpt, methods=["ig"])
    assert ig_only.feature_attributions and ig_only.HasField("convergence_delta") and ig_only.n_steps == 8
    assert all(c.deletion == 0 and c.combined == 0 for c in ig_only.contributions)
    deletion_only = ask(ckpt, methods=["deletion"])
    assert not deletion_only.feature_attributions and not deletion_only.HasField("convergence_delta")
    assert deletion_only.n_steps == 0 and any(c.deletion != 0 for c in deletion_only.contributions)
    assert any(c.attention > 0 for c in deletion_only.contributions)  # attention always comes along


def test_batched_answers_isolate_bad_requests(ckpt):
    good = pb.ExplainRequest(history=HISTORY, n_steps=8)
    answers = answer_explains([good, pb.ExplainRequest(history=HISTORY, methods=["shap"]), good], ckpt,
                              Catalog(ckpt), CONFIG)
    assert isinstance(answers[1], InvalidArgument) and answers[1].field == "methods"
    assert_same_answer(answers[0], answers[2])


def assert_same_answer(a, b):
    """Equal answers, floats up to rounding: two rows of one batch may round their last bits apart."""
    from google.protobuf.json_format import MessageToDict

    def close(x, y):
        if isinstance(x, dict):
            return x.keys() == y.keys() and all(close(x[k], y[k]) for k in x)
        if isinstance(x, list):
            return len(x) == len(y) and all(close(i, j) for i, j in zip(x, y))
        if isinstance(x, float):
            return x == pytest.approx(y, rel=1e-4, abs=1e-5)
        return x == y

    assert close(MessageToDict(a), MessageToDict(b)), (a, b)


def test_a_bound_too_small_answers_found_false_with_the_item_where_it_is(ckpt):
    """With sets of one item at most, some top-1 items cannot be moved: the answer says so,
    names no items, and gives the item's rank as it is."""
    rng, not_found = np.random.default_rng(0), 0
    for _ in range(20):
        history = [f"i{x}" for x in rng.choice(np.arange(1, 150), 12, replace=False)]
        cf = answer_explain(pb.ExplainRequest(history=history, methods=["deletion"], counterfactual=True,
                                              counterfactual_max_size=1), ckpt, Catalog(ckpt), CONFIG).counterfactual
        if not cf.found:
            not_found += 1
            assert not cf.positions and not cf.item_ids and cf.new_rank == 1 and cf.sets_scored > 1
    assert not_found


def test_feature_reasons_come_most_necessary_first_and_carry_their_items(ckpt):
    r = ask(ckpt)
    reasons = list(r.feature_reasons)
    assert reasons and [x.score_drop for x in reasons] == sorted((x.score_drop for x in reasons), reverse=True)
    assert all(x.rank_now == 1 and set(x.item_ids) <= set(HISTORY) for x in reasons)


def test_a_counterfactual_names_entries_of_the_history_as_sent_and_holds_through_recommend(ckpt):
    """Unknown ids stay in the history the client sent; the positions index that list, and
    Recommend without those entries (k = the rank) does not return the explained item."""
    catalog = Catalog(ckpt)
    history = ["i3", "unknown-1", "i8", "i13", "unknown-2", "i21", "i34", "i55"]
    r = answer_explain(pb.ExplainRequest(history=history, n_steps=8, methods=["deletion"], counterfactual=True,
                                         counterfactual_rank=3, top_k=2), ckpt, catalog, CONFIG)
    for answer in (r, *r.more):
        cf = answer.counterfactual
        assert cf.sets_scored > 0
        if not cf.found:
            continue
        assert [history[p] for p in cf.positions] == list(cf.item_ids) and "unknown-1" not in cf.item_ids
        kept = [h for i, h in enumerate(history) if i not in set(cf.positions)]
        again = rank(Ranker(ckpt.model), [decode_recommend(pb.RecommendRequest(history=kept, k=3), catalog, CONFIG)])[0]
        assert catalog.item_index[answer.item_id] not in again.items.tolist() and cf.new_rank > 3
    assert r.counterfactual.found  # the top-1 of a tiny model leaves the top 3 without a few items
    assert r.reason.startswith(f"Recommended because of {r.counterfactual.item_ids[0]}")
    assert r.reason.endswith("this item would not be in your top 3.")
    assert "without" not in ask(ckpt).reason and ask(ckpt).reason.startswith("Recommended because of")
    drawn = answer_explain(pb.ExplainRequest(history=history, n_steps=8, methods=["deletion"], counterfactual=True,
                                             counterfactual_rank=3, include_html=True), ckpt, catalog, CONFIG)
    assert drawn.html.count("&#10007; ") == len(drawn.counterfactual.positions) > 0
    assert f"not in the top 3; first would be {drawn.counterfactual.new_top_item_id}" in drawn.html
    assert not ask(ckpt).HasField("counterfactual")  # only when asked


@pytest.mark.parametrize("kw, field", [(dict(top_k=11), "top_k"), (dict(methods=["lime"]), "methods"),
                                       (dict(n_steps=1000), "n_steps"), (dict(item_id="nope"), "item_id"),
                                       (dict(counterfactual=True, counterfactual_max_size=11),
                                        "counterfactual_max_size"),
                                       (dict(counterfactual_rank=-1), "counterfactual_rank")])
def test_bad_explain_fields_are_named(ckpt, kw, field):
    with pytest.raises(InvalidArgument) as e:
        answer_explain(pb.ExplainRequest(history=HISTORY, **kw), ckpt, Catalog(ckpt), CONFIG)
    assert e.value.field == field


def test_a_fault_in_one_request_fails_only_that_request(ckpt, monkeypatch):
    """A server fault while explaining or drawing one request (here: a drawing that raises for
    one item, and an explanation batch that raises whenever it holds that item) leaves every
    other request of the batch answered, as it would be alone."""
    import attnrec.explain.jobs as jobs
    import attnrec.serving.explain_codec as codec

    catalog = Catalog(ckpt)
    good = [pb.ExplainRequest(history=HISTORY, item_id=f"i{i}", n_steps=8, include_image=True) for i in (30, 31)]
    bad = pb.ExplainRequest(history=HISTORY, item_id="i32", n_steps=8, include_image=True)
    alone = [answer_explain(r, ckpt, catalog, CONFIG) for r in good]
    poisoned = catalog.item_index["i32"]
    real_batch, real_png = jobs.explain_batch, codec.png

    def batch_failing_on_the_poisoned_item(model, histories, users, targets, *args):
        if poisoned in targets:
            raise RuntimeError("simulated fault")
        return real_batch(model, histories, users, targets, *args)

    monkeypatch.setattr(jobs, "explain_batch", batch_failing_on_the_poisoned_item)
    answers = answer_explains([good[0], bad, good[1]], ckpt, catalog, CONFIG)
    assert isinstance(answers[1], RuntimeError) and answers[0] == alone[0] and answers[2] == alone[1]

    monkeypatch.setattr(jobs, "explain_batch", real_batch)
    together = answer_explains([good[0], bad, good[1]], ckpt, catalog, CONFIG)  # one batch, nothing failing
    monkeypatch.setattr(codec, "png", lambda e, labels, title, *marks: (_ for _ in ()).throw(ValueError("no canvas"))
                        if "i32" in title else real_png(e, labels, title, *marks))
    answers = answer_explains([good[0], bad, good[1]], ckpt, catalog, CONFIG)
    assert isinstance(answers[1], ValueError) and answers[0] == together[0] and answers[2] == together[2]


def test_the_recommend_commands_explanation_leads_with_the_sentence(ckpt):
    from attnrec.serving.serve_cli import explanation_text

    why = ask(ckpt)
    lines = explanation_text(why).splitlines()
    assert lines[0] == f"why {why.item_id}: {why.reason}" and why.reason.startswith("Recommended because of")
    assert any(line.startswith("  features whose absence lowers it most: ") for line in lines) == any(
        f.score_drop > 0 for f in why.feature_reasons[:3])
